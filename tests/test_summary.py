"""Per-layer sentences and receptive fields: checked against the summary's numbers and against gradients."""
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_viz.config import PRESETS, ArchConfig, ConfigError, ConvSpec
from alexnet_viz.model import build_model
from alexnet_viz.architect.summary import adaptive_windows, describe_layers, shape_str, summarize


@pytest.mark.parametrize("name", PRESETS)
def test_every_row_has_a_sentence_with_its_own_numbers(name):
    s = summarize(PRESETS[name])
    text = describe_layers(s)
    assert len(text) == len(s.rows)
    prev = (s.cfg.in_channels, s.cfg.input_size, s.cfg.input_size)
    for r, t in zip(s.rows, text):
        assert t.startswith(f"{r.name}: ")
        if r.params:
            assert f"{r.params:,} weights" in t
        else:
            assert "no weights" in t or r.type == "Flatten"
        if r.type == "Conv2d":
            b = s.cfg.convs[int(r.name[4:]) - 1]
            assert f"{b.out_channels} filters of {b.kernel}×{b.kernel}×{prev[0] // b.groups}" in t
            assert f"stride {b.stride}" in t and shape_str(prev) in t and shape_str(r.output_shape) in t
            m = re.search(r"— [\d,]+ weights, ([\d.]+) ([kMG]?) ?multiply", t)
            scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
            assert float(m.group(1)) * scale == pytest.approx(r.macs, rel=5e-3)
        if r.type == "Linear":
            assert f"all {prev[0]:,} numbers" in t and f"{r.output_shape[0]:,}" in t
        if r.type in ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"):
            assert f"{shape_str(prev)}" in t and shape_str(r.output_shape) in t
        prev = r.output_shape


def test_the_briefs_example_sentence():
    conv2 = describe_layers(summarize(PRESETS["d2l"]))[3]
    assert conv2.startswith("conv2: 256 filters of 5×5×96 slide with stride 1 over the 96×26×26 maps of pool1")
    assert conv2.endswith("— 614,656 weights, 415 M multiply-accumulates")


def test_grouped_conv_and_dropout_sentences():
    text = dict(t.split(": ", 1) for t in describe_layers(summarize(PRESETS["alexnet2012"])))
    assert "5×5×48 in 2 groups" in text["conv2"] and "48 of the 96 maps" in text["conv2"]
    assert "probability 0.5" in text["drop1"] and "by 2" in text["drop1"]
    assert "5 neighbouring channels" in text["lrn1"]


@pytest.mark.parametrize("side_in, side_out", [(13, 6), (5, 3), (1, 12), (7, 7), (64, 5), (3, 8)])
def test_adaptive_windows_are_pytorchs(side_in, side_out):
    """Independent answer: which inputs each output of nn.AdaptiveAvgPool1d actually reads."""
    x = torch.zeros(1, 1, side_in, requires_grad=True)
    pool = torch.nn.AdaptiveAvgPool1d(side_out)
    for i, (b, e) in enumerate(adaptive_windows(side_in, side_out)):
        (g,) = torch.autograd.grad(pool(x)[0, 0, i], x)
        used = g[0, 0].nonzero().flatten().tolist()
        assert (used[0], used[-1] + 1) == (b, e)


def measured_rfs(cfg: ArchConfig) -> set[int]:
    """Input columns each output column of the adaptive pool depends on, by gradients (float64)."""
    model = build_model(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # positive weights: every pixel in the window moves the output
            p.copy_(torch.rand_like(p) / p[0].numel() + 1e-3)
    body = torch.nn.Sequential(model.features, model.avgpool)
    x = torch.rand(1, cfg.in_channels, cfg.input_size, cfg.input_size, dtype=torch.float64, requires_grad=True)
    y = body(x)
    out = set()
    for j in range(y.shape[-1]):
        (g,) = torch.autograd.grad(y[..., j].sum(), x, retain_graph=True)
        cols = g.abs().sum((0, 1, 2)).nonzero().flatten()
        out.add(int(cols[-1] - cols[0] + 1))
    return out


# padding 0 and sigmoid/avg layers: every window lies inside the image and every pixel in it has a
# non-zero gradient, so the measured extent is the whole receptive field
block = st.builds(ConvSpec, out_channels=st.integers(1, 3), kernel=st.integers(1, 5), stride=st.integers(1, 3),
                  padding=st.just(0), activation=st.just("sigmoid"), pool=st.sampled_from(["avg", "none"]),
                  pool_kernel=st.integers(1, 3), pool_stride=st.integers(1, 3))
nets = st.builds(ArchConfig, input_size=st.integers(8, 60), convs=st.lists(block, min_size=1, max_size=3).map(tuple),
                 adaptive_pool=st.integers(1, 9), hidden=st.just(()), dropout=st.just(0.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nets)
def test_adaptive_pool_receptive_field_equals_the_measured_one(cfg):
    try:
        row = next(r for r in summarize(cfg).rows if r.name == "avgpool")
    except ConfigError:
        return
    rfs = measured_rfs(cfg)
    assert row.rf == max(rfs)
    assert row.rf_min == (min(rfs) if len(rfs) > 1 else None)


@pytest.mark.parametrize("input_size, pool", [(64, 6), (64, 12)])
def test_adaptive_pool_on_a_tiny_map_keeps_the_receptive_field(input_size, pool):
    """torchvision at 64 px reaches the pool as 1×1: each window is that one pixel (was 35 and -157)."""
    from dataclasses import replace
    rows = {r.name: r for r in summarize(replace(PRESETS["torchvision"], input_size=input_size,
                                                 adaptive_pool=pool)).rows}
    assert rows["pool5"].output_shape[-1] == 1
    assert rows["avgpool"].rf == rows["pool5"].rf and rows["avgpool"].rf_min is None


def test_cli_explains_each_layer(capsys):
    from alexnet_viz.__main__ import main
    assert main(["summary", "--preset", "lenet5", "--explain"]) == 0
    assert capsys.readouterr().out.splitlines() == describe_layers(summarize(PRESETS["lenet5"]))
