"""The pages, driven with Streamlit's AppTest (no browser): every widget path a user takes."""
import io
import time

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from alexnet_viz.config import PRESETS

from tests.conftest import ROOT

APPS = ROOT / "tests" / "apps"


def app(name: str) -> AppTest:
    at = AppTest.from_file(str(APPS / f"{name}.py"), default_timeout=120)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def table_shapes(at: AppTest) -> list[str]:
    return list(next(d.value for d in at.dataframe if "output (C×H×W)" in d.value.columns)["output (C×H×W)"])


def summarize_features(preset: str) -> int:
    from alexnet_viz.architect.summary import summarize
    return sum(r.params for r in summarize(PRESETS[preset]).rows if r.type != "Linear")


def edit_table(at: AppTest, which: str, edited: dict | None = None, added=(), deleted=()) -> AppTest:
    """Seed the edit state of the Architect's conv or hidden table, as a user's edits would, and rerun."""
    key = next(e.key for e in at.data_editor if e.key.startswith(which))
    at.session_state[key] = {"edited_rows": edited or {}, "added_rows": list(added), "deleted_rows": list(deleted)}
    return at.run()


def own_rows(table):
    """The Train page's table of runs without the shipped examples, which every list ends with."""
    return table[~table["example"]]


def away_and_back(at: AppTest) -> AppTest:
    """A visit to another page (the nav apps draw only a line while session_state["away"]): two runs
    away, so that Streamlit has dropped the state of the page's widgets, then back."""
    at.session_state["away"] = True
    at.run()
    at.run()
    at.session_state["away"] = False
    return at.run()


def test_the_app_file_starts():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    no_exception(at)
    assert at.title[0].value == "Architect"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_renders(preset):
    at = app("architect")
    at.selectbox(key="preset").set_value(preset).run()
    no_exception(at)
    assert not at.error
    params = at.metric[0].value.replace(",", "")
    from alexnet_viz.architect.summary import summarize
    assert int(params) == summarize(PRESETS[preset]).total_params


def test_changing_a_kernel_changes_the_table():
    at = app("architect")
    before = table_shapes(at)
    assert before[0] == "96×54×54"
    edit_table(at, "convs", {0: {"kernel": 7}})
    no_exception(at)
    after = table_shapes(at)
    assert after[0] == "96×55×55" and after != before


def test_impossible_config_shows_an_error_and_keeps_the_last_network():
    at = app("architect")
    at.number_input(key="input_size").set_value(40).run()
    no_exception(at)
    assert at.error and "pool" in at.error[0].value and "smaller than" in at.error[0].value
    assert table_shapes(at)[0] == "96×54×54"  # the last valid network is still shown


def test_groups_error_names_the_layer():
    at = app("architect")
    edit_table(at, "convs", {1: {"groups": 5}})
    assert at.error and "conv2" in at.error[0].value and "groups=5" in at.error[0].value


def test_add_and_remove_conv_blocks():
    at = app("architect")
    n = len(table_shapes(at))
    edit_table(at, "convs", deleted=[2])
    no_exception(at)
    assert len(table_shapes(at)) == n - 2  # conv3 and relu3 gone
    edit_table(at, "convs", deleted=[2], added=[{"out_channels": 384, "kernel": 3, "stride": 1, "padding": 1,
                                                 "groups": 1, "activation": "relu", "norm": "none", "pool": "none",
                                                 "pool_kernel": 3, "pool_stride": 2}])
    no_exception(at)
    assert len(table_shapes(at)) == n


def test_empty_cell_and_hidden_rows():
    at = app("architect")
    edit_table(at, "hidden", {0: {"width": None}})
    assert at.error and "fc1: width is empty" in at.error[0].value
    edit_table(at, "hidden", deleted=[0, 1])
    no_exception(at)
    layers = next(d.value for d in at.dataframe if "layer" in d.value.columns)
    assert not at.error and list(layers["layer"][-2:]) == ["flatten", "fc1"]  # no hidden layer left
    assert at.metric[0].value == f"{6400 * 10 + 10 + summarize_features('d2l'):,}"


def open_export(at: AppTest) -> AppTest:
    """The Architect's "Export and import" expander opened (lazy: closed, it draws nothing)."""
    at.session_state["arch_export"] = True
    return at.run()


def test_import_json_and_bad_json():
    at = open_export(app("architect"))
    cfg = PRESETS["lenet5"].to_json().encode()
    at.file_uploader(key="import_json").set_value(("lenet.json", cfg, "application/json")).run()
    no_exception(at)
    assert table_shapes(at)[0] == "6×28×28"
    at.file_uploader(key="import_json").set_value(("junk.json", b"{oops", "application/json")).run()
    no_exception(at)
    assert any("cannot be imported" in e.value for e in at.error)


def test_export_is_the_current_config():
    at = app("architect")
    at.selectbox(key="preset").set_value("mini28").run()
    assert [d.proto.label for d in at.get("download_button")] == ["Download drawing (SVG)", "Download drawing (PNG)"]
    assert not at.get("file_uploader")  # the closed export expander draws nothing (lazy)
    dl = open_export(at).get("download_button")
    assert [d.proto.label for d in dl] == ["Download drawing (SVG)", "Download drawing (PNG)",
                                           "Download config JSON", "Download PyTorch code"]
    assert not [c for c in at.code if c.language == "python"]  # a closed expander draws no code (lazy)
    from alexnet_viz.model import to_pytorch_code
    code = to_pytorch_code(PRESETS["mini28"])  # what the expander and the download show
    assert "nn.Conv2d(in_channels=1, out_channels=32, kernel_size=5, stride=2, padding=2)" in code


def test_train_page_runs_a_capped_cpu_job_and_draws_charts():
    at = app("train")
    no_exception(at)
    assert any("bundled sample" in w.value for w in at.warning)  # offline in tests: said so
    at.radio(key="tr_source").set_value("A preset").run()
    at.selectbox(key="tr_preset").set_value("mini28").run()
    at.number_input(key="tr_epochs").set_value(1).run()  # one epoch, whatever the page starts from
    at.number_input(key="tr_cap").set_value(15).run()
    at.selectbox(key="tr_device").set_value("cpu").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    no_exception(at)
    deadline = time.time() + 120
    while time.time() < deadline:
        at.run()
        if at.success or at.error:
            break
        time.sleep(1.0)  # each poll reruns the page, beside the run
    no_exception(at)
    assert at.success and "finished" in at.success[0].value
    assert at.dataframe and at.dataframe[0].value["state"].tolist()[0] == "finished"
    assert any(c.value.startswith("Precision on cpu: ") for c in at.caption)  # bf16 or fp32, and why
    # what the charts show is the run on disk, counted here
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.runs.store import Run, list_runs
    (info,) = list_runs(examples=False)  # the run just trained, not the shipped examples
    run = Run(info.path)
    steps = [m for m in run.metrics() if m["kind"] == "step"]
    (epoch,) = [m for m in run.metrics() if m["kind"] == "epoch"]
    curves = [f for f in charts(at) if [t.get("name") for t in f["data"]][:3] == ["train loss", "train acc", "test acc"]]
    assert curves, "no training curves"
    assert steps[-1]["step"] == 15  # reports come every few seconds (how many depends on the machine); the last is batch 15
    for f in curves:  # the live chart and the picked run's: the losses it reported, its test accuracy
        assert f["data"][0]["y"] == pytest.approx([m["loss"] for m in steps])
        assert f["data"][2]["y"] == pytest.approx([epoch["test_acc"]])
    (cm,) = [f for f in charts(at) if f["layout"]["title"]["text"] == "Confusion matrix (test set)"]
    preds, labels = run.test_preds(), load_fashion_mnist().test_y.numpy()
    want = np.zeros((10, 10), int)
    np.add.at(want, (labels, preds), 1)                     # rows: true class; columns: predicted
    assert np.array_equal(array(cm["data"][0]["text"]), want)
    assert np.trace(want) / len(labels) == pytest.approx(epoch["test_acc"], abs=1e-6)  # the engine's own figure (a float32)
    wrong = int((preds != labels).sum())
    assert any(m.value == f"**Misclassified test images**: {wrong:,} of {len(labels):,}" for m in at.markdown)
    gallery = [c for im in at.image for c in im.captions if c.startswith("true ")]
    from alexnet_viz.data import CLASSES
    first = np.flatnonzero(preds != labels)[:24]
    assert gallery == [f"true {CLASSES[labels[i]]} · said {CLASSES[preds[i]]}" for i in first]


def charts(at: AppTest) -> list[dict]:
    """Every Plotly figure on the page, as the JSON the browser receives."""
    import json
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(v) -> np.ndarray:
    """A Plotly JSON array: a plain list, or numpy's bytes in base64 ({"dtype", "bdata", "shape"})."""
    if isinstance(v, dict) and "bdata" in v:
        import base64
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(n) for n in str(v.get("shape", len(a))).split(",")])
    return np.asarray(v)


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_explore_upload_renders_maps_and_predictions():
    from alexnet_viz.inspect.analysis import analyze, from_run
    from alexnet_viz.inspect.choice import Source
    from alexnet_viz.inspect.images import open_image
    from alexnet_viz.runs.examples import example_run
    at = app("explore")
    no_exception(at)
    img = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value(("photo.png", png(img), "image/png")).run()
    no_exception(at)
    assert not at.error
    # independently: the page's default model (the network that ships trained) on the same file
    assert at.radio(key="model_kind").value is Source.EXAMPLE
    a = analyze(from_run(example_run().path), open_image(png(img)))
    (top,) = [f for f in charts(at) if f["layout"]["title"]["text"] == "Top predictions"]
    assert top["data"][0]["x"] == pytest.approx([p for _, p in a.top[::-1]], abs=1e-5)
    assert [y.removesuffix(" ✓ true label") for y in top["data"][0]["y"]] == [c for c, _ in a.top[::-1]]
    captions = [c for im in at.image for c in im.captions]
    assert "your image (80×64)" in captions and "what the example mini28, trained receives: 1×28×28" in captions
    for layer in ("relu1", "conv2"):
        if layer != "relu1":
            at.select_slider(key="layer").set_value(layer).run()
            no_exception(at)
        C, H, W = a.maps[layer].shape
        assert f"{layer}: {C}×{H}×{W} — {C} of {C} channels, strongest (highest mean) first" in \
            [c for im in at.image for c in im.captions]
        ch = at.selectbox(key=f"ch-{layer}").value
        t = a.maps[layer][ch]
        assert any(c.value.startswith(f"channel {ch}: mean {t.mean():.3f}, max {t.max():.3f}, "
                                      f"zeros {(t == 0).float().mean():.0%}.") for c in at.caption)


def test_explore_bad_upload_shows_a_message_and_stays_usable():
    at = app("explore")
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value(("notes.png", b"this is text", "image/png")).run()
    no_exception(at)
    assert at.error and "cannot be used" in at.error[0].value
    at.radio(key="source").set_value("Example").run()  # back to the example image
    no_exception(at)
    assert not at.error


def test_explore_pretrained_offline_says_so():
    at = app("explore")
    at.radio(key="model_kind").set_value("ImageNet AlexNet (torchvision)").run()
    no_exception(at)
    assert at.warning and "weights" in at.warning[0].value


def test_train_page_lists_a_killed_run_as_stopped():
    import json
    import subprocess
    import sys

    from alexnet_viz.config import TrainConfig
    from alexnet_viz.runs.store import Run
    run = Run.create(PRESETS["lenet5"], TrainConfig(), "synthetic")  # as the CLI makes it: no owner
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    st = json.loads((run.path / "status.json").read_text()) | {"pid": dead.pid, "state": "running"}
    (run.path / "status.json").write_text(json.dumps(st))
    at = app("train")
    next(c for c in at.checkbox if c.label.startswith("Include runs")).check().run()
    no_exception(at)
    table = own_rows(at.dataframe[0].value)
    assert table["state"].tolist() == ["stopped"] and "ended without finishing" in table["note"].tolist()[0]


def test_edits_survive_a_visit_to_another_page():
    at = app("nav")
    edit_table(at, "convs", {0: {"kernel": 7}, 2: {"pool": "max"}})
    before = table_shapes(at)
    away_and_back(at)
    no_exception(at)
    assert at.data_editor[0].value["kernel"][0] == 7  # the table starts from the edited network
    assert table_shapes(at) == before


def test_an_upload_survives_a_visit_to_another_page():
    at = app("nav_explore")
    at.radio(key="source").set_value("Upload").run()
    img = np.zeros((40, 30, 3), np.uint8)
    at.file_uploader(key="upload").set_value(("mine.png", png(img), "image/png")).run()
    no_exception(at)
    away_and_back(at)
    no_exception(at)
    assert any("earlier upload, mine.png" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Forget it").click().run()
    no_exception(at)
    assert not any("earlier upload" in c.value for c in at.caption)


def test_train_settings_survive_another_page_and_a_reload():
    at = app("nav_train")
    at.radio(key="tr_source").set_value("A preset").run()
    at.selectbox(key="tr_preset").set_value("lenet5").run()
    assert at.number_input(key="tr_lr").value == 0.9  # lenet5's own training defaults came with it
    at.number_input(key="tr_epochs").set_value(3).run()
    at.number_input(key="tr_cap").set_value(7).run()
    away_and_back(at)
    no_exception(at)
    assert (at.number_input(key="tr_epochs").value, at.number_input(key="tr_cap").value) == (3, 7)
    assert at.selectbox(key="tr_preset").value == "lenet5"
    # a reload is a new session: it takes the settings of the newest run this browser (sid) started
    from alexnet_viz.config import TrainConfig
    from alexnet_viz.runs.store import Run
    Run.create(PRESETS["lenet5"], TrainConfig(epochs=4, lr=0.25, max_batches=9), "synthetic", owner="sid1")
    at = AppTest.from_file(str(APPS / "train.py"), default_timeout=120)
    at.query_params["sid"] = "sid1"
    at.run()
    no_exception(at)
    assert at.selectbox(key="tr_preset").value == "lenet5"
    assert [at.number_input(key=k).value for k in ("tr_epochs", "tr_lr", "tr_cap")] == [4, 0.25, 9]


def trained_run(owner: str, epochs_done: float):
    """A tiny run on the bundled sample, finished (1 epoch) or stopped before its first batch."""
    import threading

    from alexnet_viz.config import ArchConfig, ConvSpec, TrainConfig
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.runs.store import Run
    from alexnet_viz.training.engine import train
    tiny = ArchConfig(name="tiny", input_size=12, convs=(ConvSpec(4, 3, 1, 1, pool_kernel=2, pool_stride=2),),
                      hidden=(16,), dropout=0.0)
    t = TrainConfig(epochs=1, batch_size=64, max_batches=2, device="cpu", lr=0.1 if epochs_done else 0.2)
    run = Run.create(tiny, t, "sample", owner=owner)
    stop = threading.Event()
    if not epochs_done:
        stop.set()
    list(train(tiny, t, load_fashion_mnist(), stop=stop, run=run))
    return run


def test_train_page_picks_a_finished_run_resumes_it_in_place_and_asks_before_deleting():
    finished = trained_run("sid2", 1)
    time.sleep(1.1)  # run folders are named by the second
    stopped = trained_run("sid2", 0)
    at = AppTest.from_file(str(APPS / "train.py"), default_timeout=120)
    at.query_params["sid"] = "sid2"
    at.run()
    no_exception(at)
    table = own_rows(at.dataframe[0].value)
    assert table["state"].tolist() == ["stopped", "finished"]
    assert table["settings that differ"].tolist() == ["lr 0.2", "lr 0.1"]  # not just "<time>-tiny"
    pick = next(s for s in at.selectbox if s.label == "Look at one run")
    assert pick.value == str(finished.path)  # not the newer stopped run
    assert any("Misclassified" in m.value for m in at.markdown)  # its confusion matrix and gallery
    next(b for b in at.button if b.label == "Resume (+1 epoch)").click().run()
    no_exception(at)
    deadline = time.time() + 60
    while time.time() < deadline and not at.success:
        time.sleep(1.0)
        at.run()
    assert at.success and "finished" in at.success[0].value and finished.path.name in at.success[0].value
    epochs = [m["epoch"] for m in finished.metrics() if m["kind"] == "epoch"]
    assert epochs == [1, 2] and len(own_rows(at.dataframe[0].value)) == 2  # the same folder, no new run
    next(b for b in at.button if b.label == "Delete this run").click().run()
    assert any("cannot be undone" in w.value for w in at.warning) and finished.path.exists()
    next(b for b in at.button if b.label == "Keep it").click().run()
    assert finished.path.exists()
    next(b for b in at.button if b.label == "Delete this run").click().run()
    next(b for b in at.button if b.label == "Yes, delete it").click().run()
    no_exception(at)
    assert not finished.path.exists() and stopped.path.exists()


def test_a_stopped_run_shows_no_eta():
    at = app("train")
    at.radio(key="tr_source").set_value("A preset").run()
    at.number_input(key="tr_cap").set_value(400).run()
    at.number_input(key="tr_epochs").set_value(5).run()
    at.selectbox(key="tr_device").set_value("cpu").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    deadline = time.time() + 60
    while time.time() < deadline and not any("ETA" in p.proto.text for p in at.get("progress")):
        time.sleep(0.3)
        at.run()
    assert any("ETA" in p.proto.text for p in at.get("progress"))  # while it runs
    next(b for b in at.button if b.label == "Stop").click().run()
    while time.time() < deadline and not at.success:
        time.sleep(1.0)
        at.run()
    no_exception(at)
    assert at.success and "stopped" in at.success[0].value
    assert at.get("progress") and not any("ETA" in p.proto.text for p in at.get("progress"))


def test_experiments_page_queues_a_capped_set_and_says_what_it_shows():
    at = app("experiments")
    no_exception(at)
    assert at.selectbox(key="ex_name").value == "relu-vs-sigmoid"
    at.number_input(key="ex_cap").set_value(3).run()
    at.selectbox(key="ex_device").set_value("cpu").run()
    assert any("4 runs, 12 training batches" in c.value for c in at.caption)  # 2 variants × 2 seeds × 3 batches
    next(b for b in at.button if b.label == "Queue 4 runs").click().run()
    deadline = time.time() + 300
    while time.time() < deadline and not any("4 of 4 runs done" in p.proto.text for p in at.get("progress")):
        time.sleep(1.5)  # each poll reruns the page: often, it takes the CPU the runs need
        at.run()
    assert any("4 of 4 runs done" in p.proto.text for p in at.get("progress"))
    no_exception(at)
    assert "not finished" not in at.info[0].value
    table = at.dataframe[0].value
    assert table["variant"].tolist() == ["ReLU", "sigmoid"] and table["seeds"].tolist() == [2, 2]
    sentence = at.info[0].value
    best = table.sort_values("test acc", ascending=False).iloc[0]
    assert sentence.startswith(best["variant"]) and f"{best['test acc']:.3f}" in sentence
    # the table and the one chart show the four runs on disk: each variant's mean, each run's curve
    from alexnet_viz.runs.store import list_runs
    finals: dict[str, list[list[float]]] = {"ReLU": [], "sigmoid": []}
    for r in list_runs(examples=False):
        finals[r.tags["experiments"]["relu-vs-sigmoid"]].append([e["test_acc"] for e in r.epochs])
    assert table["test acc"].tolist() == pytest.approx([np.mean([c[-1] for c in finals[v]]) for v in ("ReLU", "sigmoid")])
    (fig,) = charts(at)
    for variant, runs in finals.items():
        shown = [t["y"] for t in fig["data"] if t["name"] == variant and t.get("xaxis", "x") == "x"]  # test acc panel
        assert sorted(shown) == [pytest.approx(r) for r in sorted(runs)] and len(shown) == 2
    # the two-run diff: two runs of the set differ in their activations (and seed, if it was picked)
    assert at.selectbox(key="diff_a").value != at.selectbox(key="diff_b").value


def test_d2l_recipe_is_announced_with_the_books_figures():
    at = app("train")
    at.radio(key="tr_source").set_value("A preset").run()
    at.selectbox(key="tr_preset").set_value("d2l").run()
    no_exception(at)
    assert any("d2l's recipe" in c.value and "0.883" in c.value for c in at.caption)
    at.number_input(key="tr_epochs").set_value(2).run()
    assert not any("d2l's recipe" in c.value for c in at.caption)
