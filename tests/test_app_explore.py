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


def explore(arch=MINI, model=None) -> AppTest:
    """The page on the Architect's network `arch`, looking at `model` (a Source; by default the page's own
    choice: one's best run, else the shipped example)."""
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "explore.py"), default_timeout=120)
    at.session_state["last_valid"] = arch  # the Architect's network, as if chosen there
    if model is not None:
        at.session_state["model_kind"] = model
    return at.run()


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def page_images(at: AppTest) -> list:
    """The page's images, not the share box's QR code."""
    return [im for im in at.image if "Scan to open this view" not in im.captions]


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
    at = explore(model=Source.UNTRAINED)
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
    data = png(Image.new("L", size, 200))
    at = upload(explore(), "odd.png", data)
    clean(at)
    im = open_image(data)    # a very long side is decoded reduced (inspect/images.py): the page says what it has
    assert not at.error and any(c.startswith(f"your image ({im.width}×{im.height})") for c in captions(at))


@pytest.mark.parametrize("kind", ["PDF", "TIFF", "ICO"])
def test_a_refused_file_clears_the_previous_results(kind):
    at = upload(explore(), "good.png", png(Image.new("RGB", (40, 30), (200, 10, 10))))
    assert "your image (40×30)" in captions(at) and at.dataframe   # the results of the good file first
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, kind)
    at = upload(at, f"file.{kind.lower()}", buf.getvalue())
    clean(at)
    assert kind in at.error[0].value and len(page_images(at)) == 0 and not at.dataframe


def test_svg_is_refused_by_name():
    at = upload(explore(), "drawing.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    assert "SVG" in at.error[0].value and len(page_images(at)) == 0


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
    at = explore(model=Source.UNTRAINED)  # no runs of one's own: nothing trained to set beside it
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
    # the attribution maps cover the photo edge to edge: the five at most 320 px on its long side, the one
    # looked at closer at most 640 (never enlarged)
    for fig, most in zip(panels[-2:], (320, 640)):
        k = min(1, most / max(w, h))
        W, H = round(w * k), round(h * k)
        images, heats = ([t for t in fig.data if t.type == kind] for kind in ("image", "heatmap"))
        assert len(images) == len(heats) == (5 if most == 320 else 1)
        for img, heat in zip(images, heats):
            assert np.asarray(img.z).shape[:2] == (H, W)
            assert _extent(heat, 28, "x") == pytest.approx(_extent(img, W, "x"))
            assert _extent(heat, 28, "y") == pytest.approx(_extent(img, H, "y"))


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
    at.run()  # AppTest shows what the last run drew: the layer step reran its part only, this draws the page
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


def test_with_no_run_of_ones_own_explore_opens_on_the_shipped_trained_network():
    from alexnet_viz.inspect.choice import example, final_accuracy
    shipped = example()
    if shipped is None:
        pytest.skip("this checkout has no shipped example run (alexnet_viz/assets/runs/mini28)")
    at = explore(get_preset("d2l"))                         # the Architect's network is another one
    clean(at)
    assert at.radio(key="model_kind").value is Source.EXAMPLE
    acc = f"{final_accuracy(shipped):.3f}"
    assert any("example network that ships trained" in c.value and acc in c.value for c in at.caption)
    assert any(c.startswith("what the example mini28, trained receives: 1×28×28") for c in captions(at))
    want = analyze(from_run(shipped.path), open_image((ROOT / "alexnet_viz" / "assets" / "examples" /
                                                         "photo-cat.jpg").read_bytes())).top
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["data"][0]["x"] == pytest.approx([p for _, p in want[::-1]], abs=1e-5)
    _run(0.5, "finished", True)                             # a run of one's own comes first once it exists
    at = explore(get_preset("d2l"))
    assert at.radio(key="model_kind").value is Source.RUN
    assert at.radio(key="model_kind").options[1] == Source.EXAMPLE.label


def opened(params: dict, arch=MINI) -> AppTest:
    """A fresh session (another browser) opening a link with these query parameters."""
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "explore.py"), default_timeout=120)
    at.session_state["last_valid"] = arch
    at.query_params.update({k: v for k, v in params.items() if k != "sid"})
    return at.run()


def top5(at: AppTest) -> list[float]:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["x"]


def test_a_link_opens_the_same_view_in_a_fresh_session():
    at = explore()
    at.radio(key="source").set_value("Test set").run()
    at.number_input(key="test_idx").set_value(7).run()
    at.select_slider(key="layer").set_value("relu2").run()
    at.selectbox(key="ch-relu2").set_value(at.selectbox(key="ch-relu2").options[3]).run()
    at.number_input(key="unit_row").set_value(2).run()
    at.number_input(key="unit_col").set_value(9).run()
    at.run()  # the whole page again (the unit steps reran their part only)
    at.radio(key="method").set_value("Occlusion").run()
    at.selectbox(key="cam_class").set_value("Sneaker").run()
    clean(at)
    ch = at.selectbox(key="ch-relu2").value
    params = dict(at.query_params)
    assert {k: params.get(k) for k in ("image", "test", "layer", "channel", "row", "col", "method", "cls")} == {
        "image": "test", "test": "7", "layer": "relu2", "channel": str(ch), "row": "2", "col": "9",
        "method": "Occlusion", "cls": "7"}                  # Sneaker is class 7
    assert params["model"] in ("example", "untrained")
    heading = f"One unit: relu2, channel {ch}, row 2, column 9"
    assert heading in [s.value for s in at.subheader]
    other = opened(params)
    clean(other)
    assert heading in [s.value for s in other.subheader]
    assert other.selectbox(key="ch-relu2").value == ch and other.radio(key="method").value == "Occlusion"
    assert other.selectbox(key="cam_class").value == "Sneaker"
    assert top5(other) == top5(at)                          # the same model saw the same image
    assert "where conv4 looked for 'Sneaker'" in " ".join(captions(other))
    assert not other.warning                                # nothing in the link was ignored
    assert {k: v for k, v in other.query_params.items() if k != "sid"} == \
        {k: v for k, v in params.items() if k != "sid"}     # and it writes the same link back


def test_a_link_to_a_run_opens_it_with_its_snapshot_in_another_session():
    run = _run(0.7, "finished", True)
    at = explore()
    assert at.radio(key="model_kind").value is Source.RUN
    params = dict(at.query_params)
    assert params["model"] == "run" and params["run"] == run.path.name
    other = opened(params)   # another session: not its own run, but the link names it
    clean(other)
    assert other.radio(key="model_kind").value is Source.RUN and other.selectbox(key="run").value.path == str(run.path)
    assert top5(other) == top5(at)


def test_an_uploaded_image_never_goes_into_a_link_and_the_link_asks_for_one():
    image = png(Image.fromarray((np.random.default_rng(5).random((30, 40)) * 255).astype(np.uint8)))
    at = upload(explore(), "secret.png", image)
    clean(at)
    params = dict(at.query_params)
    assert params["image"] == "upload" and "test" not in params and "example" not in params
    assert not any("secret" in v or len(v) > 100 for v in params.values())
    other = opened(params)
    clean(other)
    assert other.radio(key="source").value == "Upload"
    assert any("uploaded image, which stays with whoever uploaded it" in i.value for i in other.info)


def test_a_hostile_or_mistaken_link_is_named_in_one_notice_and_the_page_works():
    other = opened({"layer": "no-such-layer", "channel": "99999", "row": "-3", "run": "nosuch-run",
                    "model": "<script>", "test": "12", "image": "test"})
    clean(other)
    notes = " ".join(w.value for w in other.warning)
    for name in ("channel", "row", "model", "run", "layer"):
        assert name in notes, name
    assert other.number_input(key="test_idx").value == 12 and other.select_slider(key="layer").value == "relu1"


def test_the_lessons_show_me_link_opens_the_shipped_network_before_training():
    from alexnet_viz.inspect.choice import example
    from alexnet_viz.lessons.chapter import STEPS, Context
    if example() is None:
        pytest.skip("this checkout has no shipped example run (alexnet_viz/assets/runs/mini28)")
    view = next(s for s in STEPS if s.key == "filters").view(Context(example=example()))
    assert view.page == "explore"
    other = opened(view.query)
    clean(other)
    assert other.radio(key="model_kind").value is Source.EXAMPLE
    assert other.select_slider(key="snapshot-mini28").value == "before training"
    assert other.select_slider(key="layer").value == "conv1" and not other.warning
    assert any(c.startswith("what the example mini28, trained (before training) receives") for c in captions(other))


def test_a_layer_step_reruns_only_its_part_and_the_link_follows_it():
    """A slider step redraws the layers, the unit and what depends on them, and the share popover, not the
    image, predictions and attributions (a full run of the page took most of a layer change's time)."""
    at = explore()
    clean(at)
    at.select_slider(key="layer").set_value("relu2").run()
    clean(at)
    assert at.select_slider(key="layer").value == "relu2"
    assert any(s.value.startswith("One unit: relu2, channel") for s in at.subheader)
    with pytest.raises(KeyError):                           # the model choice above was not redrawn
        at.radio(key="model_kind")
    assert dict(at.query_params)["layer"] == "relu2"        # the URL follows at once ...
    assert any("layer=relu2" in c.value for c in at.code)   # ... and so does the link in "Share this view"
    at.number_input(key="unit_row").set_value(1).run()
    assert dict(at.query_params)["row"] == "1" and any("row=1" in c.value for c in at.code)
    at.run()                                                # anything else: the whole page, as before
    clean(at)
    assert at.radio(key="model_kind") and at.radio(key="method")
    assert dict(at.query_params)["layer"] == "relu2" and dict(at.query_params)["row"] == "1"


def _fragment_app():
    """A slider inside a fragment, whose callback reruns only the fragment; 'keep' leaves the fragment off
    the page, as Explore does after a refused image."""
    import streamlit as st

    from alexnet_viz.ui.common import rerun_parts

    st.session_state["full"] = st.session_state.get("full", 0) + 1

    @st.fragment(key="part")
    def part():
        st.slider("step", 0, 5, key="step", on_change=rerun_parts, args=("part",))
        st.write(f"step {st.session_state['step']}")

    if not st.toggle("leave the part out", key="out"):
        part()
    else:
        st.slider("step", 0, 5, key="step", on_change=rerun_parts, args=("part",))  # the same widget, no fragment


def test_a_step_whose_part_left_the_page_reruns_the_whole_page_not_an_error():
    """Seen in a browser: an image refused after a good one, then a late change of a unit widget whose part
    of the page the refused image's run had left out: "No fragment found for target 'explore-unit'"."""
    at = AppTest.from_function(_fragment_app).run()
    at.slider(key="step").set_value(2).run()
    assert not at.exception and at.session_state["full"] == 1  # the fragment alone reran
    at.run()  # the whole page again (AppTest's tree after a fragment run holds the fragment only)
    at.toggle(key="out").set_value(True).run()
    assert at.session_state["full"] == 3
    at.slider(key="step").set_value(4).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["full"] == 4 and at.slider(key="step").value == 4  # the whole page, with the step
