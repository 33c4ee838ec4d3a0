"""The pages, driven with Streamlit's AppTest (no browser): every widget path a user takes."""
import io
import time

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from alexnet_viz.config import PRESETS

from .conftest import ROOT

APPS = ROOT / "tests" / "apps"


def app(name: str) -> AppTest:
    at = AppTest.from_file(str(APPS / f"{name}.py"), default_timeout=120)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def table_shapes(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["output (C×H×W)"])


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
    from alexnet_viz.summary import summarize
    assert int(params) == summarize(PRESETS[preset]).total_params


def test_changing_a_kernel_changes_the_table():
    at = app("architect")
    before = table_shapes(at)
    assert before[0] == "96×54×54"
    at.number_input(key="c0_kernel").set_value(7).run()
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
    at.number_input(key="c1_groups").set_value(5).run()
    assert at.error and "conv2" in at.error[0].value and "groups=5" in at.error[0].value


def test_add_and_remove_conv_blocks():
    at = app("architect")
    n = len(at.dataframe[0].value)
    at.button(key="rm2").click().run()
    no_exception(at)
    assert len(at.dataframe[0].value) == n - 2  # conv3 and relu3 gone
    add = next(b for b in at.button if b.label == "Add a conv block")
    add.click().run()
    no_exception(at)
    assert len(at.dataframe[0].value) == n


def test_bad_hidden_widths_message():
    at = app("architect")
    at.text_input(key="hidden").set_value("4096, lots").run()
    assert at.error and "hidden widths" in at.error[0].value


def test_import_json_and_bad_json():
    at = app("architect")
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
    dl = at.get("download_button")
    assert len(dl) == 2
    assert [d.proto.label for d in dl] == ["Download config JSON", "Download PyTorch code"]
    code = next(c for c in at.code).value
    assert "nn.Conv2d(in_channels=1, out_channels=32, kernel_size=5, stride=2, padding=2)" in code


def test_train_page_runs_a_capped_cpu_job_and_draws_charts():
    at = app("train")
    no_exception(at)
    assert any("bundled sample" in w.value for w in at.warning)  # offline in tests: said so
    at.radio[0].set_value("A preset").run()
    at.selectbox[0].set_value("mini28").run()
    cap = next(n for n in at.number_input if n.label.startswith("Max batches"))
    cap.set_value(15).run()
    dev = next(s for s in at.selectbox if s.label == "Device")
    dev.set_value("cpu").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    no_exception(at)
    deadline = time.time() + 120
    while time.time() < deadline:
        at.run()
        if at.success or at.error:
            break
        time.sleep(0.5)
    no_exception(at)
    assert at.success and "finished" in at.success[0].value
    assert len(at.get("plotly_chart")) >= 2  # live curves + confusion matrix
    assert at.dataframe and at.dataframe[0].value["state"].tolist()[0] == "finished"
    assert any("Misclassified" in m.value for m in at.markdown)
    assert any(c.value.startswith("Precision on cpu: ") for c in at.caption)  # bf16 or fp32, and why


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_explore_upload_renders_maps_and_predictions():
    at = app("explore")
    no_exception(at)
    img = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    at.file_uploader(key="upload").set_value(("photo.png", png(img), "image/png")).run()
    no_exception(at)
    assert not at.error
    assert len(at.get("plotly_chart")) >= 2 and len(at.image) >= 4
    at.select_slider(key="layer").set_value("conv2").run()
    no_exception(at)


def test_explore_bad_upload_shows_a_message_and_stays_usable():
    at = app("explore")
    at.file_uploader(key="upload").set_value(("notes.png", b"this is text", "image/png")).run()
    no_exception(at)
    assert at.error and "cannot be used" in at.error[0].value
    at.file_uploader(key="upload").set_value(None).run()  # back to the example image
    no_exception(at)
    assert not at.error


def test_explore_pretrained_offline_says_so():
    at = app("explore")
    at.radio[0].set_value("ImageNet AlexNet (torchvision)").run()
    no_exception(at)
    assert at.warning and "weights" in at.warning[0].value


def test_train_page_lists_a_killed_run_as_stopped():
    import json
    import subprocess
    import sys

    from alexnet_viz.config import TrainConfig
    from alexnet_viz.runs import Run
    run = Run.create(PRESETS["lenet5"], TrainConfig(), "synthetic")  # as the CLI makes it: no owner
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    st = json.loads((run.path / "status.json").read_text()) | {"pid": dead.pid, "state": "running"}
    (run.path / "status.json").write_text(json.dumps(st))
    at = app("train")
    next(c for c in at.checkbox if c.label.startswith("Include runs")).check().run()
    no_exception(at)
    table = at.dataframe[0].value
    assert table["state"].tolist() == ["stopped"] and "ended without finishing" in table["note"][0]


def test_edits_survive_a_visit_to_another_page():
    at = app("nav")
    at.number_input(key="c0_kernel").set_value(7).run()
    at.selectbox(key="c2_pool").set_value("max").run()
    before = table_shapes(at)
    at.session_state["away"] = True
    at.run()
    at.run()
    at.session_state["away"] = False
    at.run()
    no_exception(at)
    assert at.number_input(key="c0_kernel").value == 7
    assert table_shapes(at) == before


def test_an_upload_survives_a_visit_to_another_page():
    at = app("nav_explore")
    img = np.zeros((40, 30, 3), np.uint8)
    at.file_uploader(key="upload").set_value(("mine.png", png(img), "image/png")).run()
    no_exception(at)
    at.session_state["away"] = True
    at.run()
    at.session_state["away"] = False
    at.run()
    no_exception(at)
    assert any("earlier upload, mine.png" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Forget it").click().run()
    no_exception(at)
    assert not any("earlier upload" in c.value for c in at.caption)
