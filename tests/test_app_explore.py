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


def background_done(at: AppTest, timeout: float = 120) -> AppTest:
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
    assert "your image (40×30)" in captions(at) and at.dataframe   # the results of the good file first
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
    # independently: test image #0 of the bundled sample through the page's model, ranked here
    from alexnet_viz.data import CLASSES, load_fashion_mnist
    ds = load_fashion_mnist()
    truth = CLASSES[int(ds.test_y[0])]
    assert at.radio(key="model_kind").value is Source.EXAMPLE    # the network that ships trained
    from alexnet_viz.runs.examples import example_run
    p = analyze(from_run(example_run().path), Image.fromarray(ds.test_x[0].numpy())).logits.softmax(0)
    rank = int((p > p[CLASSES.index(truth)]).sum()) + 1
    assert len(said) == 1 and said[0].startswith("Right:" if rank == 1 else "Wrong:") and truth in said[0]
    if rank > 1:
        assert f"the first guess is {CLASSES[int(p.argmax())]}" in said[0]
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


@pytest.mark.parametrize("size", [(476, 336), (336, 476), (960, 672)])
def test_the_units_box_and_the_attributions_land_where_they_belong_on_the_users_photo(size, monkeypatch):
    """The page end to end, on a non-square upload squashed into mini28's 28×28 input. 476×336 is
    shown as it is (under 480 px): 17×12 photo pixels per input pixel, one right box; 960×672 is shown
    at 480×336. pool2's unit (1, 3) reads input rows 0..12, columns 8..20 (by hand, test_image_mapping)."""
    from alexnet_viz.ui import explore as page, explore_unit
    from tests.test_image_mapping import _extent, photo_span, red_bbox
    drawn, panels = [], []  # what the page draws, caught on its way to the screen
    overlay, attributions = explore_unit.field_overlay, page.attribution_panels
    monkeypatch.setattr(explore_unit, "field_overlay", lambda *a: drawn.append(overlay(*a)) or drawn[-1])
    monkeypatch.setattr(page, "attribution_panels", lambda *a: panels.append(attributions(*a)) or panels[-1])
    w, h = size
    at = upload(explore(), "photo.png", png(Image.new("RGB", size, (128, 128, 128))))
    at.select_slider(key="layer").set_value("pool2").run()
    at.number_input(key="unit_row").set_value(1).run()
    at.number_input(key="unit_col").set_value(3).run()
    clean(at)
    assert any("pool2 unit (row 1, column 3): input rows 0–12, columns 8–20" in md.value for md in at.markdown)
    on_photo, on_input = drawn[-2:]                           # this run's two pictures
    k = min(1, 480 / max(w, h))                               # the page shows the photo at most 480 px wide
    W, H = round(w * k), round(h * k)
    assert on_photo.shape == (H, W, 3)
    x0, y0, x1, y1 = red_bbox(on_photo)
    sx, sy = W / 28, H / 28
    (xin, xout), (yin, yout) = photo_span(8 * sx, 21 * sx), photo_span(0, 13 * sy)
    assert xout[0] <= x0 <= xin[0] and xin[1] <= x1 <= xout[1], (x0, x1, xin, xout)
    assert yout[0] <= y0 <= yin[0] and yin[1] <= y1 <= yout[1], (y0, y1, yin, yout)
    if size != (960, 672):  # a whole number of photo pixels per input pixel: one right answer
        assert (x0, y0, x1, y1) == (8 * sx, 0, 21 * sx - 1, 13 * sy - 1)
    assert on_input.shape[:2] == (28, 28) and red_bbox(on_input) == (8, 0, 20, 12)
    # the attribution maps cover the photo (shown at most 320 px on its long side) edge to edge
    fig = panels[-1]
    k = 320 / max(w, h)
    for img, heat in zip(*([t for t in fig.data if t.type == kind] for kind in ("image", "heatmap"))):
        assert np.asarray(img.z).shape[:2] == (round(h * k), round(w * k))
        assert _extent(heat, 28, "x") == pytest.approx(_extent(img, round(w * k), "x"))
        assert _extent(heat, 28, "y") == pytest.approx(_extent(img, round(h * k), "y"))
