"""Hostile inputs, each built here: one clear message and nothing lost, never a trace or a generic error.

A config JSON nested 100,000 deep or holding a 5,000-digit integer (the CLI and the Architect's
import), a network name with a lone surrogate, an epoch record without "epoch" in metrics.jsonl and a
test_preds.npy whose header claims 200 GB (the Train page)."""
import io
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from alexnet_viz.__main__ import main
from alexnet_viz.config import PRESETS, ArchConfig, ConfigError, TrainConfig
from alexnet_viz.runs.files import BadFile, read_npy
from alexnet_viz.runs.store import Run, list_runs

from tests.conftest import ROOT

DEEP = "[" * 100_000 + "]" * 100_000
BIG_INT = '{"name": "big", "in_channels": ' + "9" * 5000 + "}"
SURROGATE = PRESETS["mini28"].to_json().replace('"name": "mini28"', '"name": "\\ud800net"')

HOSTILE_JSON = {
    "nested 100,000 deep": (DEEP, "nested too deeply"),
    "a 5,000-digit integer": (BIG_INT, "a number with 5,000 digits"),
    "a lone surrogate in the name": (SURROGATE, "config.name holds '\\ud800', half of a character"),
    "a lone surrogate in a field name": ('{"\\udc00": 1}', "a field name holds '\\udc00'"),
    "NaN": ('{"dropout": NaN}', "NaN is not a number"),
    "a float beyond float": ('{"dropout": 1e999}', "too large to be a setting"),
}


@pytest.mark.parametrize("case", HOSTILE_JSON)
def test_hostile_config_json_is_one_config_error(case):
    text, words = HOSTILE_JSON[case]
    with pytest.raises(ConfigError, match="^not a network JSON: ") as e:
        ArchConfig.from_json(text)
    assert words in str(e.value) and "\n" not in str(e.value)
    str(e.value).encode("utf-8")  # the message itself can be shown: no lone surrogate in it


def test_ordinary_numbers_and_names_still_read():
    d = PRESETS["d2l"]
    assert ArchConfig.from_json(d.to_json()) == d
    text = d.to_json().replace('"name": "d2l"', '"name": "r\\u00e9seau \\ud83e\\udde0"')  # an escaped emoji pair
    assert ArchConfig.from_json(text).name == "réseau 🧠"


@pytest.mark.parametrize("case", ["nested 100,000 deep", "a 5,000-digit integer", "a lone surrogate in the name"])
def test_the_cli_says_one_line_without_a_trace(tmp_path, capsys, case):
    path = tmp_path / "net.json"
    path.write_text(HOSTILE_JSON[case][0])
    assert main(["summary", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not a network JSON: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_name_with_a_lone_surrogate_is_refused_from_a_dict_too():
    d = PRESETS["mini28"].to_dict() | {"name": "\ud800net"}
    with pytest.raises(ConfigError, match="config.name holds"):
        ArchConfig.from_dict(d)


def architect_after_import(payload: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "architect.py"), default_timeout=300)
    at.session_state["arch_export"] = True  # the "Export and import" expander open
    at.run()
    at.file_uploader(key="import_json").set_value(("net.json", payload.encode("utf-8"), "application/json")).run()
    return at


@pytest.mark.parametrize("case", ["nested 100,000 deep", "a 5,000-digit integer", "a lone surrogate in the name"])
def test_the_architect_import_shows_one_clear_message(case):
    text, words = HOSTILE_JSON[case]
    at = architect_after_import(text)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert not any("Something went wrong" in e for e in errors), errors
    assert len(errors) == 1 and errors[0].startswith("That file cannot be imported: ") and words in errors[0]
    assert at.title[0].value == "Architect" and at.dataframe  # the page and its network are still there


# --- the Train page's run files ----------------------------------------------------------------------
def _finished_run(owner: str) -> Run:
    run = Run.create(PRESETS["mini28"], TrainConfig(epochs=2), "synthetic", owner=owner)
    good = {"kind": "epoch", "epoch": 1, "train_loss": 0.9, "train_acc": 0.7, "test_acc": 0.72,
            "examples_per_sec": 900.0, "elapsed": 60.0}
    run.append_metric(good)
    run.append_metric({k: v for k, v in good.items() if k != "epoch"} | {"test_acc": 0.8})  # no "epoch"
    run.set_status("finished", epochs_done=2)
    return run


def _header_claiming(n_items: int, dtype: str = "<i2") -> bytes:
    """A .npy header claiming n_items of dtype, followed by a few bytes only."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": (n_items,)})
    return buf.getvalue() + b"\0" * 64


def test_an_epoch_record_without_epoch_is_skipped_and_named():
    run = _finished_run("")
    assert [m["epoch"] for m in run.metrics() if m["kind"] == "epoch"] == [1]
    assert run.skipped["metrics.jsonl"] == ["line 2: an epoch record without epoch"]
    (info,) = list_runs(examples=False)
    assert info.state == "finished" and len(info.epochs) == 1
    assert "skipped line 2: an epoch record without epoch" in info.message


def test_an_npy_header_claiming_200_gb_is_refused_by_the_files_size(tmp_path):
    path = tmp_path / "test_preds.npy"
    path.write_bytes(_header_claiming(100_000_000_000))  # 10^11 int16 = 200 GB, in a 192-byte file
    with pytest.raises(BadFile, match=r"header claims 190734.9 MB of int16 but the file holds 0.0 MB — it is damaged"):
        read_npy(path, 2**20)
    np.save(path, np.arange(7, dtype=np.int16))
    assert read_npy(path, 2**20).tolist() == list(range(7))
    path.write_bytes(path.read_bytes()[:-2])  # one item short: refused, not read past the end
    with pytest.raises(BadFile, match="damaged"):
        read_npy(path, 2**20)


def test_the_train_page_shows_a_run_with_a_bad_record_and_a_200_gb_header():
    run = _finished_run("hostile")
    (run.path / "test_preds.npy").write_bytes(_header_claiming(100_000_000_000))
    assert run.test_preds() is None
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "train.py"), default_timeout=300)
    at.query_params["sid"] = "hostile"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]
    table = at.dataframe[0].value
    table = table[~table["example"]].reset_index(drop=True)  # this session's run, not the shipped ones
    assert table["state"].tolist() == ["finished"] and "an epoch record without epoch" in table["note"][0]
    assert any("No test-set predictions" in c.value for c in at.caption)  # said, not a MemoryError
    json.dumps(table["note"][0])
