"""The Explore page with AppTest: clicking a unit shows its receptive field, its arithmetic and the
top images; the page's fixes (awkward images, refused files, one image source, the default run)."""
import io
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from alexnet_viz.inspect.analysis import analyze, from_run, untrained
from alexnet_viz.inspect.choice import Source
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.inspect.images import open_image
from alexnet_viz.inspect.receptive import unit_box
from alexnet_viz.runs.store import Run

from tests.conftest import ROOT

MINI = get_preset("mini28")


def explore(arch=MINI) -> AppTest:
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "explore.py"), default_timeout=120)
    at.session_state["last_valid"] = arch  # the Architect's network, as if chosen there
    return at.run()


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def captions(at: AppTest) -> list[str]:
    """Every image's caption on the page (st.image captions are not st.caption elements)."""
    return [c for im in at.image for c in im.captions]


def background_done(at: AppTest, timeout: float = 300) -> AppTest:
    """Rerun until the page waits on no background job (top-9 pass, feature visualization), as the
    page's own polling would: AppTest does not run timed fragments."""
    end = time.monotonic() + timeout
    while any("in the background" in (getattr(p.proto, "text", "") or "") for p in at.get("progress")):
        assert time.monotonic() < end, "the background work did not finish"
        time.sleep(0.2)
        at.run()
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    if at.radio(key="source").value != "Upload":
        at.radio(key="source").set_value("Upload").run()
    return at.file_uploader(key="upload").set_value((name, data, "image/png")).run()


def test_setting_a_unit_shows_its_box_arithmetic_and_top_images():
    at = explore()
    clean(at)
    at.select_slider(key="layer").set_value("relu2").run()
    ch = at.selectbox(key="ch-relu2").value
    at.number_input(key="unit_row").set_value(0).run()
    at.number_input(key="unit_col").set_value(5).run()
    background_done(at)
    clean(at)
    # the box, as the package computes it, is what the page says
    m = untrained(MINI)
    e = unit_box(m.model, "relu2", 0, 5).exact
    text = " ".join(md.value for md in at.markdown)
    assert f"input rows {e.top}–{e.bottom}, columns {e.left}–{e.right}" in text and "zero padding" in text
    # the arithmetic on screen adds up, and ends at the unit's real value
    rows = at.dataframe[-1].value
    vals = [float(v) for v in rows["value"]]
    terms = [v for t, v in zip(rows["term"], vals) if not t.startswith(("=", "→"))]
    pre = vals[list(rows["term"]).index("= conv2")]
    assert sum(terms) == pytest.approx(pre, abs=5e-4)
    im = open_image((ROOT / "alexnet_viz" / "assets" / "examples" / "photo-cat.jpg").read_bytes())
    real = analyze(m, im).maps
    assert pre == pytest.approx(float(real["conv2"][ch, 0, 5]), abs=1e-4)
    assert vals[-1] == pytest.approx(float(real["relu2"][ch, 0, 5]), abs=1e-4)
    # the top images: nine of them, strongest first
    tops = [c for c in captions(at) if c.startswith("#")]
    assert len(tops) == 9
    strengths = [float(t.rsplit(": ", 1)[1]) for t in tops]
    assert strengths == sorted(strengths, reverse=True)
    assert any("Strongest of all" in c.value for c in at.caption)


@pytest.mark.parametrize("size", [(20000, 1), (1, 20000), (1, 1)])
def test_wide_tall_and_one_pixel_images_render(size):
    at = upload(explore(), "odd.png", png(Image.new("L", size, 200)))
    clean(at)
    assert not at.error and any(c.startswith(f"your image ({size[0]}×{size[1]})") for c in captions(at))


@pytest.mark.parametrize("kind", ["PDF", "TIFF", "ICO"])
def test_a_refused_file_clears_the_previous_results(kind):
    at = upload(explore(), "good.png", png(Image.new("RGB", (40, 30), (200, 10, 10))))
    assert len(at.image) >= 3
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, kind)
    at = upload(at, f"file.{kind.lower()}", buf.getvalue())
    clean(at)
    assert kind in at.error[0].value and len(at.image) == 0 and not at.dataframe


def test_svg_is_refused_by_name():
    at = upload(explore(), "drawing.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    assert "SVG" in at.error[0].value and len(at.image) == 0


def test_the_image_source_is_one_choice_and_the_cam_class_resets():
    at = upload(explore(), "mine.png", png(Image.new("RGB", (40, 30), (200, 10, 10))))
    at.selectbox(key="cam_class").set_value("Coat").run()
    at.radio(key="source").set_value("Test set").run()   # the upload is kept but not used
    clean(at)
    assert any(c.startswith("your image (28×28)") for c in captions(at))
    assert at.selectbox(key="cam_class").value == "predicted class"   # a new image: the class starts over
    said = [s.value for s in at.success] + [e.value for e in at.error]
    assert len(said) == 1 and said[0].startswith(("Right:", "Wrong:")) and "true label" in said[0]
    at.radio(key="source").set_value("Upload").run()
    assert any(c.startswith("your image (40×30)") for c in captions(at))


def test_honest_about_what_a_clothing_model_knows():
    at = explore()
    assert any("knows only the 10 Fashion-MNIST clothing classes" in c.value for c in at.caption)


def test_imagenet_offline_message_has_no_machine_path(tmp_path):
    at = explore()
    at.radio(key="model_kind").set_value("ImageNet AlexNet (torchvision)").run()
    clean(at)
    msg = at.warning[0].value
    assert "not here" in msg and "To add them" in msg and str(tmp_path) not in msg


def _run(acc: float | None, state: str, weights: bool) -> Run:
    run = Run.create(MINI, TrainConfig(epochs=1), "synthetic")
    if weights:
        torch.manual_seed(0)
        run.save_checkpoint(untrained(MINI).model, None, 1.0, None)
    if acc is not None:
        run.append_metric({"kind": "epoch", "epoch": 1.0, "test_acc": acc, "train_loss": 1.0, "train_acc": acc})
    run.set_status(state)
    return run


def test_default_model_is_the_best_finished_run_and_no_weights_is_said_plainly():
    good = _run(0.81, "finished", True)
    _run(0.62, "finished", True)
    _run(None, "running", False)   # newest, still training, nothing saved
    at = explore()
    clean(at)
    assert at.radio(key="model_kind").value is Source.RUN
    assert at.selectbox(key="run").value.path == str(good.path)
    options = at.selectbox(key="run").options
    assert "no weights saved yet" in options[-1] and "test acc 0.810" in options[0]
    at.selectbox(key="run").select_index(len(options) - 1).run()
    clean(at)
    assert "no weights saved yet" in at.warning[0].value and "do not fit" not in at.warning[0].value


def test_trained_and_untrained_side_by_side_show_each_models_own_results():
    run = Run.create(MINI, TrainConfig(epochs=1), "synthetic")
    torch.manual_seed(0)
    trained = untrained(MINI, seed=1).model          # other weights than the untrained network's seed 0
    run.save_checkpoint(trained, None, 1.0, None)
    run.append_metric({"kind": "epoch", "epoch": 1.0, "test_acc": 0.5, "train_loss": 1.0, "train_acc": 0.5})
    run.set_status("finished")
    image = png(Image.fromarray((np.random.default_rng(3).random((40, 30)) * 255).astype(np.uint8)))
    at = upload(explore(), "mine.png", image)
    at.radio(key="compare_kind").set_value("The same network, untrained").run()
    clean(at)
    im = open_image(image)
    left, right = from_run(run.path), untrained(MINI)
    for i, m in enumerate((left, right)):  # each column: its model's name, its own top-5, its maps and its Grad-CAM
        a = analyze(m, im, cam_layer="conv4")
        assert any(md.value == f"**{m.label}**" for md in at.markdown)
        charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"top-{i}-{m.label}")]
        assert len(charts) == 1, f"no top-5 chart for {m.label}"
        assert charts[0]["data"][0]["x"] == pytest.approx([p for _, p in a.top[::-1]], abs=1e-5)
        assert f"Grad-CAM at conv4 for '{m.classes[a.cam_class]}'" in captions(at)
    assert left.label != right.label and analyze(left, im).top != analyze(right, im).top
    assert sum(c.endswith("strongest 64 channels") for c in captions(at)) == 2


def test_an_untrained_network_is_not_offered_beside_itself():
    at = explore()  # no runs: the untrained network is the model, and there is nothing to set beside it
    clean(at)
    assert not [r for r in at.radio if r.key == "compare_kind"]
    assert any("Train a run of this network" in c.value for c in at.caption)
    _run(0.5, "finished", True)
    at = explore()
    at.radio(key="model_kind").set_value("Untrained (the Architect's network)").run()
    assert at.radio(key="compare_kind").options == ["Nothing", "A run trained here"]
    at.radio(key="compare_kind").set_value("A run trained here").run()
    clean(at)
    tops = [c.proto.id for c in at.get("plotly_chart") if "-top-0-" in c.proto.id or "-top-1-" in c.proto.id]
    assert len(tops) == 2 and tops[0].endswith("untrained mini28 (seed 0)") and "-top-1-run " in tops[1]


def shown(w) -> str:
    """What the browser shows in a selectbox or slider: the value the page set (when the options changed,
    settle() sets it), else the option the browser keeps."""
    if not w.proto.set_value:
        return w.value
    raw = w.proto.raw_value
    return raw if isinstance(raw, str) else raw[0]   # a select slider sends a list


def test_after_switching_models_the_grad_cam_box_and_caption_name_the_layer_used():
    _run(0.5, "finished", True)                       # a mini28 run (its last conv: conv4)
    at = explore(get_preset("d2l"))                   # the Architect's network: d2l (five convs)
    clean(at)
    assert at.radio(key="model_kind").value is Source.RUN
    box = at.selectbox(key="cam_layer")
    assert box.value == "conv4" and box.options == ["conv1", "conv2", "conv3", "conv4"]
    at.select_slider(key="layer").set_value("relu3").run()
    at.radio(key="model_kind").set_value(Source.UNTRAINED).run()
    clean(at)
    box = at.selectbox(key="cam_layer")
    assert box.options[-1] == "conv5"
    assert box.value == "conv5" and shown(box) == "conv5"            # the new model's own last conv ...
    assert "where conv5 looked for" in " ".join(captions(at))          # ... and the one the map was made at
    assert at.select_slider(key="layer").value == "relu3" and shown(at.select_slider(key="layer")) == "relu3"
    box.set_value("conv2").run()                      # the user's choice holds, and is what is drawn
    clean(at)
    assert at.selectbox(key="cam_layer").value == "conv2" and "where conv2 looked for" in " ".join(captions(at))
    at.radio(key="model_kind").set_value(Source.RUN).run()   # back: a layer that mini28 has
    clean(at)
    assert at.selectbox(key="cam_layer").value == "conv4" and "where conv4 looked for" in " ".join(captions(at))


def test_with_no_run_of_ones_own_explore_opens_on_the_shipped_trained_network(monkeypatch, tmp_path):
    shipped = Run.create(MINI, TrainConfig(epochs=1), "synthetic", root=tmp_path / "shipped")
    torch.manual_seed(0)
    shipped.save_checkpoint(untrained(MINI, seed=7).model, None, 1.0, None)
    shipped.append_metric({"kind": "epoch", "epoch": 1.0, "test_acc": 0.912, "train_loss": 0.3, "train_acc": 0.9})
    shipped.set_status("finished")
    from alexnet_viz.inspect import choice
    monkeypatch.setattr(choice, "example_run", lambda: shipped)  # this run stands for the shipped mini28
    at = explore(get_preset("d2l"))
    clean(at)
    assert at.radio(key="model_kind").value is Source.EXAMPLE
    assert any("example network that ships trained" in c.value and "0.912" in c.value for c in at.caption)
    assert any(c.startswith("what the example mini28, trained receives: 1×28×28") for c in captions(at))
    want = analyze(from_run(shipped.path), open_image((ROOT / "alexnet_viz" / "assets" / "examples" /
                                                         "photo-cat.jpg").read_bytes())).top
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["data"][0]["x"] == pytest.approx([p for _, p in want[::-1]], abs=1e-5)
    _run(0.5, "finished", True)                             # a run of one's own comes first once it exists
    at = explore(get_preset("d2l"))
    assert at.radio(key="model_kind").value is Source.RUN
    assert at.radio(key="model_kind").options[1] == Source.EXAMPLE.label
