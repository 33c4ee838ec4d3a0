"""Issue 8, item 6: every hole a hostile or careless user found in the CLI, the engine and the export."""
import ast
import errno
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from alexnet_viz.training import engine
from alexnet_viz.__main__ import main
from alexnet_viz.config import PRESETS, ArchConfig, ConfigError, TrainConfig
from alexnet_viz.model import to_pytorch_code
from alexnet_viz.runs.store import Run

from tests.conftest import ROOT
from tests.test_training import TINY, synthetic


def cli(capsys, *args) -> tuple[int, str]:
    """(exit status, stderr) of the CLI run in this process; argparse's own exits count too."""
    try:
        rc = main(list(args))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--epochs", "-1"], ["--epochs", "-3"], ["--batch-size", "-5"],
                                  ["--batch-size", "0"], ["--max-batches", "-1"], ["--lr", "-0.1"],
                                  ["--lr", "nan"]])
def test_bad_numbers_are_refused_when_the_command_line_is_parsed(capsys, tmp_path, args):
    rc, err = cli(capsys, "train", "--preset", "lenet5", "--run-dir", str(tmp_path / "runs"), *args)
    assert rc == 2 and f"argument {args[0]}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_predict_topk_must_be_positive(capsys, tmp_path):
    rc, err = cli(capsys, "predict", str(ROOT / "alexnet_viz" / "assets" / "examples" / "photo-cat.jpg"), "--untrained",
                  "--preset", "lenet5", "--topk", "-1")
    assert rc == 2 and "argument --topk: must be at least 1" in err


@pytest.mark.parametrize("change", [dict(epochs=0), dict(epochs=-3), dict(batch_size=-5), dict(batch_size=0),
                                    dict(max_batches=-1), dict(lr=float("nan")), dict(lr=1e9),
                                    dict(optimizer="rmsprop"), dict(device="tpu"), dict(epochs=2.5)])
def test_train_config_checks_cannot_be_skipped_by_replace(change):
    with pytest.raises(ConfigError):
        replace(TrainConfig(), **change)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so --device cuda is valid")
@pytest.mark.parametrize("device,words", [("cuda", "no CUDA GPU here; available: cpu"), ("mps", "no Apple MPS"),
                                          ("tpu", "device 'tpu' is not one of")])
def test_devices_are_checked_before_a_run_folder_is_made(capsys, tmp_path, device, words):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple MPS device")
    rc, err = cli(capsys, "train", "--preset", "lenet5", "--device", device, "--run-dir", str(tmp_path / "runs"))
    assert rc == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_non_utf8_config_is_a_one_line_error(capsys, tmp_path):
    bad = tmp_path / "net.json"
    bad.write_bytes(b'{"name": "caf\xe9"}')
    rc, err = cli(capsys, "summary", "--config", str(bad))
    assert rc == 2 and "is not UTF-8 text" in err and err.count("\n") == 1


def test_a_name_longer_than_the_limit_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="at most 80 characters"):
        ArchConfig.from_json(replace(PRESETS["lenet5"], name="n" * 300).to_json())
    run = Run.create(replace(TINY, name="n" * 300), TrainConfig(), "synthetic", tmp_path)  # built in code
    assert len(run.path.name) < 100


def test_predict_refuses_a_file_over_the_limit_by_its_size_before_reading(capsys, tmp_path, monkeypatch):
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.truncate(3 * 2**30)  # sparse: 3 GB on paper, nothing on disk
    monkeypatch.setattr("alexnet_viz.inspect.images.open", lambda *a, **k: pytest.fail("read before the size check"),
                        raising=False)
    rc, err = cli(capsys, "predict", str(big), "--untrained", "--preset", "lenet5")
    assert rc == 1 and "3072 MB; the limit is 50 MB" in err


def test_predict_refuses_a_fifo(capsys, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    rc, err = cli(capsys, "predict", str(fifo), "--untrained", "--preset", "lenet5")
    assert rc == 1 and "not a regular file" in err


def test_a_wrong_data_folder_is_an_error_in_the_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_DATA", str(tmp_path / "nothing-here"))
    rc, err = cli(capsys, "train", "--preset", "lenet5", "--device", "cpu", "--run-dir", str(tmp_path / "runs"))
    assert rc == 2 and "holds no Fashion-MNIST" in err and "bundled sample" not in err
    assert not (tmp_path / "runs").exists()


def test_check_loss_calls_nan_inf_and_explosions_divergence():
    for loss in (float("nan"), float("inf"), 598_710.0):
        with pytest.raises(engine.Diverged, match="diverged — lower the learning rate"):
            engine.check_loss(loss, 2.3, 10, 0.4)
    engine.check_loss(2.0, 2.3, 10, 0.4)  # a normal loss passes
    engine.check_loss(30.0, 2.3, 10, 0.4)  # and so does a bad but finite early spike


def _nan_after(n):
    real, calls = engine.train_step, []

    def step(model, opt, x, y, amp):
        out, loss = real(model, opt, x, y, amp)
        calls.append(1)
        return out, (loss * float("nan") if len(calls) > n else loss)
    return step


def test_a_nan_loss_ends_the_run_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)
    monkeypatch.setattr(engine, "train_step", _nan_after(3))
    t = TrainConfig(epochs=2, batch_size=32, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)
    recs = list(engine.train(TINY, t, synthetic(), run=run))
    assert recs[-1].status == "error" and recs[-1].message.startswith("diverged — lower the learning rate")
    assert not any(r.kind == "epoch" for r in recs)
    assert run.status()["message"].startswith("diverged")


def test_a_diverged_cli_run_exits_1(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "train_step", _nan_after(1))
    rc, err = cli(capsys, "train", "--preset", "lenet5", "--epochs", "1", "--max-batches", "4", "--device", "cpu",
                  "--run-dir", str(tmp_path))
    assert rc == 1 and "diverged — lower the learning rate" in err


@pytest.mark.parametrize("how", ["oserror", "torch"])
def test_disk_full_says_so_and_leaves_no_temp_files(tmp_path, monkeypatch, how):
    import alexnet_viz.runs.store as runs

    def full(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        if how == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
    monkeypatch.setattr(runs.torch, "save", full)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: SimpleNamespace(total=1, used=1, free=0))
    t = TrainConfig(epochs=1, batch_size=64, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)
    recs = list(engine.train(TINY, t, synthetic(), run=run))
    assert recs[-1].status == "error" and recs[-1].message.startswith("disk full")
    assert "enforce fail" not in recs[-1].message
    assert not list(tmp_path.rglob("*.tmp"))


HOSTILE = ['x"""\nimport os; open("PWNED", "w")\n"""', "a \\N b", "it's \"quoted\"", "two\nlines",
           "x'''; open('PWNED','w'); '''", "\\", "back\\slash \\x00 \\u2028"]


def test_the_export_escapes_hostile_names_compiles_and_runs_no_payload(tmp_path):
    files = []
    for i, name in enumerate(HOSTILE):
        code = to_pytorch_code(replace(TINY, name=name))
        compile(code, f"export{i}.py", "exec")  # a SyntaxError here fails the test
        assert ast.get_docstring(ast.parse(code)).startswith(name + ":")
        path = tmp_path / f"export{i}.py"
        path.write_text(code)
        files.append(str(path))
    run = "import runpy, sys\nfor f in sys.argv[1:]:\n    runpy.run_path(f, run_name='__main__')"
    p = subprocess.run([sys.executable, "-c", run, *files], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("parameters") == len(HOSTILE) and not (tmp_path / "PWNED").exists()


def test_a_wrong_data_folder_is_shown_on_the_train_page(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest
    from alexnet_viz.ui.common import manager
    monkeypatch.setenv("ALEXNET_VIZ_DATA", str(tmp_path / "nothing-here"))
    manager.clear()  # a fresh job manager: it has not loaded any data yet
    try:
        at = AppTest.from_file(str(ROOT / "tests" / "apps" / "train.py"), default_timeout=120).run()
        assert not at.exception
        assert any("nothing-here holds no Fashion-MNIST" in e.value for e in at.error)
        assert not [e.value for e in at.error if "Something went wrong" in e.value]
    finally:
        manager.clear()
