"""The SVG drawing: box sizes follow the shapes, kernels and groups are drawn, the failing layer is red."""
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from alexnet_viz.config import PRESETS, ConfigError, get_preset, validate, with_conv
from alexnet_viz.architect.drawing import FONT, network_svg, to_png
from alexnet_viz.architect.summary import summarize

NS = {"s": "http://www.w3.org/2000/svg"}


def layers(svg: str) -> list[dict]:
    root = ET.fromstring(svg)
    out = []
    for g in root.iterfind("s:g", NS):
        if "layer" not in g.get("class", "").split():
            continue
        fronts = g.findall("s:rect[@class='front']", NS)
        out.append({"name": g.get("data-layer"), "kind": g.get("data-kind"), "failed": "failed" in g.get("class"),
                    "shape": tuple(int(v) for v in g.get("data-shape").split("x") if v),
                    "towers": int(g.get("data-towers")), "height": float(fronts[0].get("height")),
                    "thickness": float(fronts[0].get("width")), "n_fronts": len(fronts),
                    "fill": fronts[0].get("fill"), "text": [t.text for t in g.iterfind("s:text", NS)]})
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_boxes_follow_the_shapes(name):
    cfg = PRESETS[name]
    drawn = layers(network_svg(cfg))
    real = {r.name: r.output_shape for r in summarize(cfg).rows}   # independent answer: the summary
    assert drawn[0]["shape"] == (cfg.in_channels, cfg.input_size, cfg.input_size)
    for d in drawn[1:]:
        assert d["shape"] == real[d["name"]], d["name"]
        assert f"{d['shape'][0]:,}" in d["text"][1] if len(d["shape"]) == 1 else \
            "×".join(map(str, d["shape"])) in d["text"]
    maps = [d for d in drawn if len(d["shape"]) == 3]
    vecs = [d for d in drawn if len(d["shape"]) == 1]
    for a in maps:
        for b in maps:
            if a["shape"][1] > b["shape"][1]:
                assert a["height"] > b["height"], (a["name"], b["name"])   # bigger maps are taller
            if a["shape"][1] >= 5 * b["shape"][1]:
                assert a["height"] > 2 * b["height"]                      # 54 vs 5: visibly different
            ca, cb = a["shape"][0] // a["towers"], b["shape"][0] // b["towers"]
            if ca > cb:
                assert a["thickness"] > b["thickness"]                    # more channels are thicker
    for a in vecs:
        for b in vecs:
            if a["shape"][0] > b["shape"][0]:
                assert a["height"] > b["height"]
    assert max(d["height"] for d in drawn) < 300                          # 4096-wide layers still fit
    root = ET.fromstring(network_svg(cfg))
    assert float(root.get("font-size")) >= 14 and FONT >= 14


def test_kernels_and_two_gpu_towers():
    svg = network_svg(get_preset("alexnet2012"))
    drawn = {d["name"]: d for d in layers(svg)}
    assert "11×11, stride 4" in drawn["conv1"]["text"] and "5×5, stride 1" in drawn["conv2"]["text"]
    assert [drawn[n]["n_fronts"] for n in ("conv1", "conv2", "pool2", "conv3", "conv4", "conv5")] == [1, 2, 2, 1, 2, 2]
    kernels = ET.fromstring(svg).findall("s:g[@class='kernel']", NS)
    assert [k.get("data-layer") for k in kernels] == ["conv1", "conv2", "conv3", "conv4", "conv5"]


@pytest.mark.parametrize("change, failing", [
    (lambda c: with_conv(with_conv(c, 2, pool="max"), 3, pool="max"), "pool5"),
    (lambda c: with_conv(c, 1, groups=5), "conv2"),
    (lambda c: replace(c, in_channels=2), "input"),
    (lambda c: replace(c, hidden=(4096, 0)), "fc2"),
])
def test_the_failing_layer_is_drawn_red_with_its_message(change, failing):
    cfg = change(get_preset("d2l"))
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    svg = network_svg(cfg)
    drawn = layers(svg)
    assert drawn[-1]["name"] == failing and drawn[-1]["failed"] and drawn[-1]["fill"] == "#fcbba1"
    assert not any(d["failed"] for d in drawn[:-1])
    message = " ".join(t.text for t in ET.fromstring(svg).iterfind("s:text[@class='message']", NS))
    assert message == str(e.value)
    if failing == "pool5":  # the layers before it are drawn with their real shapes
        ok = summarize(with_conv(cfg, 4, pool="none"))
        real = {r.name: r.output_shape for r in ok.rows}
        assert all(d["shape"] == real[d["name"]] for d in drawn[1:-1])


def test_png_export():
    pytest.importorskip("cairosvg", reason="cairosvg is not installed (pip install cairosvg)")
    png = to_png(network_svg(get_preset("lenet5")), scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width == int(ET.fromstring(network_svg(get_preset("lenet5"))).get("width"))


def test_many_groups_stay_a_few_towers_and_the_biggest_network_stays_drawable():
    from alexnet_viz.config import ArchConfig, ConvSpec
    cfg = ArchConfig(name="wide", in_channels=3, input_size=512, convs=(
        ConvSpec(2048, 3, 1, 1, pool="none"), ConvSpec(2048, 3, 4, 1, groups=2048)), hidden=(), dropout=0.0)
    validate(cfg)
    root = ET.fromstring(network_svg(cfg))
    drawn = {d["name"]: d for d in layers(network_svg(cfg))}
    assert drawn["conv2"]["n_fronts"] == 4 and "2048 groups" in drawn["conv2"]["text"]
    assert float(root.get("height")) < 800


def test_the_failing_layer_comes_from_the_trace_not_the_message_text(monkeypatch):
    """The drawing reads Trace.where (data); a message reworded to name no layer draws the same red layer."""
    from alexnet_viz.architect import drawing
    from alexnet_viz.config import trace
    cfg = replace(get_preset("d2l"), input_size=40)   # pool5 sees 1×1 (by hand: 8, 3, 3, 1, 1, 1, 1)
    real = trace(cfg)
    reworded = replace(real, error=ConfigError("the window does not fit here"))
    assert reworded.where == "pool5" and reworded.error.where is None
    monkeypatch.setattr(drawing, "trace", lambda c: reworded)
    drawn = layers(network_svg(cfg))
    assert [d["name"] for d in drawn] == ["input", "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5",
                                          "pool5"]
    assert drawn[-1]["failed"] and not any(d["failed"] for d in drawn[:-1])
    assert "the window does not fit here" in network_svg(cfg)
