"""The runs folder as the server reads and writes it: heartbeats, reused pids, what a hostile folder
cannot do, and writes that are all or nothing."""
import errno
import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from alexnet_viz.config import TrainConfig
from alexnet_viz.runs import files
from alexnet_viz.runs.store import STALE_S, Run, RunError, list_runs

from tests.conftest import ROOT
from tests.test_training import TINY

HAS_PROC = Path(f"/proc/{os.getpid()}/stat").exists()


def running_run(tmp_path, **status) -> Run:
    run = Run.create(TINY, TrainConfig(), "synthetic", tmp_path)  # "running", with this (live) process's pid
    if status:
        st = json.loads((run.path / "status.json").read_text()) | status
        (run.path / "status.json").write_text(json.dumps(st))
    return run


@pytest.mark.skipif(not HAS_PROC, reason="process start times are read from /proc (Linux)")
def test_a_reused_pid_does_not_keep_a_dead_run_running(tmp_path):
    run = running_run(tmp_path)
    assert run.status()["state"] == "running"
    run = running_run(tmp_path, pid_start="1")  # our pid, but a process started at another time
    st = run.status()
    assert st["state"] == "stopped" and "belongs to another program" in st["message"]


def test_a_silent_heartbeat_shows_the_run_as_stopped(tmp_path):
    run = running_run(tmp_path)
    with run.heartbeat():
        assert (run.path / "heartbeat").exists() and run.status()["state"] == "running"
    old = time.time() - STALE_S - 5
    os.utime(run.path / "heartbeat", (old, old))
    st = run.status()
    assert st["state"] == "stopped" and "no sign of life" in st["message"]
    (info,) = list_runs(tmp_path)
    assert info.state == "stopped"


def test_the_end_of_a_test_run_says_when_the_browser_tests_did_not_run(tmp_path):
    """The conftest's summary hook, on a suite whose browser module skips as it does without Chromium."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_browser.py").write_text(
        "import pytest\npytest.skip('Chromium not found at /usr/bin/chromium', allow_module_level=True)\n")
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    # not as one of this run's xdist workers (the copied conftest would import torch for its thread share)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    tail = out.stdout.strip().splitlines()[-4:]
    assert any("real-browser tests NOT run" in line for line in tail), out.stdout
    assert any("apt-get install -y chromium" in line for line in tail)
    (tmp_path / "test_browser.py").write_text("def test_browser():\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert "NOT run" not in out.stdout and "2 passed" in out.stdout


# --- a corpus of hostile run folders -----------------------------------------------------------------
def bounded(fn, seconds: float = 30):
    """fn() in a thread: a read that blocks (a FIFO) or runs away (/dev/zero) fails the test, never hangs it."""
    box = {}

    def go():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test below
            box["error"] = e
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', 'the read')} still running after {seconds} s (blocked?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def finished_run(root: Path, name: str) -> Run:
    run = Run.create(replace(TINY, name=name), TrainConfig(epochs=1), "synthetic", root)
    run.append_metric({"kind": "epoch", "epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_acc": 0.75,
                       "examples_per_sec": 100.0, "elapsed": 1.0})
    run.set_status("finished", "trained 1 epoch(s)", epochs_done=1.0)
    return run


def replace_file(run: Run, name: str, make) -> None:
    path = run.path / name
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)
    make(path)


def big_sparse(size: int):
    def make(path: Path):
        with open(path, "wb") as f:
            f.truncate(size)
    return make


HOSTILE = {  # name: (file, how it is made)
    "fifo-metrics": ("metrics.jsonl", os.mkfifo),
    "dir-metrics": ("metrics.jsonl", os.mkdir),
    "zero-status": ("status.json", lambda p: p.symlink_to("/dev/zero")),
    "zero-config": ("config.json", lambda p: p.symlink_to("/dev/zero")),
    "fifo-config": ("config.json", os.mkfifo),
    "binary-status": ("status.json", lambda p: p.write_bytes(bytes(range(256)) * 4)),
    "binary-config": ("config.json", lambda p: p.write_bytes(b"\xff\xfe{\x00\x81")),
    "list-config": ("config.json", lambda p: p.write_text("[1, 2, 3]")),
    "string-arch": ("config.json", lambda p: p.write_text('{"arch": "alexnet", "owner": ""}')),
    "string-tags": ("config.json", lambda p: p.write_text('{"arch": {}, "owner": "", "tags": "x"}')),
    "deep-config": ("config.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000)),
    "huge-config": ("config.json", big_sparse(3 << 30)),
    "text-epochs": ("status.json", lambda p: p.write_text('{"state": "finished", "epochs_done": "lots"}')),
    "list-status": ("status.json", lambda p: p.write_text("[]")),
    "text-acc": ("metrics.jsonl", lambda p: p.write_text('{"kind": "epoch", "epoch": 1, "test_acc": "high"}\n')),
    "list-metric": ("metrics.jsonl", lambda p: p.write_text("[1]\n")),
}


@pytest.fixture
def hostile_runs(tmp_path):
    root = tmp_path / "runs"
    good = finished_run(root, "good")
    for name, (file, make) in HOSTILE.items():
        replace_file(finished_run(root, name), file, make)
    big = finished_run(root, "huge-metrics")  # a legitimate head, then 100 MB of zeros: read from its end
    with open(big.path / "metrics.jsonl", "ab") as f:
        f.truncate(100 << 20)
    return root, good


def test_hostile_run_folders_are_listed_as_damaged_and_nothing_blocks(hostile_runs):
    root, good = hostile_runs
    runs = bounded(lambda: list_runs(root), 60)
    by = {r.name.split("-", 2)[-1]: r for r in runs}
    assert len(runs) == len(HOSTILE) + 2
    assert by["good"].state == "finished" and by["good"].test_acc == 0.75
    assert by["huge-metrics"].state == "finished"  # only the newest part is read; the zeros are no records
    for name in HOSTILE:
        assert by[name].state == "damaged", (name, by[name])
        assert by[name].message, name
    assert "named pipe" in by["fifo-metrics"].message and "folder" in by["dir-metrics"].message
    assert "symbolic link" in by["zero-status"].message and "UTF-8" in by["binary-config"].message
    assert "MB" in by["huge-config"].message and "epochs_done" in by["text-epochs"].message
    assert "test_acc" in by["text-acc"].message


def test_a_hostile_runs_files_cannot_block_weights_or_predictions(tmp_path):
    run = finished_run(tmp_path, "pipes")
    os.mkfifo(run.path / "weights.pt")
    os.mkfifo(run.path / "test_preds.npy")
    with pytest.raises(RunError, match="not a regular file"):
        bounded(run.checkpoint, 30)
    assert bounded(run.test_preds, 30) is None
    (run.path / "test_preds.npy").unlink()
    np.save(run.path / "test_preds.npy", np.array([[1.5, 2.0]]))  # not one class per image
    assert run.test_preds() is None


def test_the_train_page_lists_hostile_folders_and_keeps_working(monkeypatch, tmp_path):
    from tests.test_app import app, no_exception
    root = Path(os.environ["ALEXNET_VIZ_RUNS"])
    finished_run(root, "good")
    for name in ("fifo-metrics", "zero-status", "binary-config", "text-acc"):
        file, make = HOSTILE[name]
        replace_file(finished_run(root, name), file, make)
    at = app("train")
    next(c for c in at.checkbox if c.label.startswith("Include runs")).check().run(timeout=60)
    no_exception(at)
    table = at.dataframe[0].value
    from alexnet_viz.runs.examples import example_runs
    shipped = {r.path.name for r in example_runs()}  # listed after these, and tested in test_examples.py
    states = dict((n.split("-", 2)[-1], s) for n, s in zip(table["run"], table["state"]) if n not in shipped)
    assert states == {"good": "finished", "fifo-metrics": "damaged", "zero-status": "damaged",
                      "binary-config": "damaged", "text-acc": "damaged"}


def test_a_1000_class_run_shows_on_the_train_page(monkeypatch):
    """Predictions beyond Fashion-MNIST's 10 classes are named by their output number, not an IndexError."""
    from tests.test_app import app, no_exception
    root = Path(os.environ["ALEXNET_VIZ_RUNS"])
    run = finished_run(root, "wide")
    n_test = 2_000  # the bundled sample's test set, which the page loads offline
    preds = (np.arange(n_test) * 37 % 1000).astype(np.int16)
    np.save(run.path / "test_preds.npy", preds)
    at = app("train")
    next(c for c in at.checkbox if c.label.startswith("Include runs")).check().run(timeout=60)
    no_exception(at)
    assert any("beyond the 10 Fashion-MNIST classes" in c.value for c in at.caption)
    assert any("Misclassified" in m.value for m in at.markdown)


# --- the one atomic write ----------------------------------------------------------------------------
class _FlushFails(io.BufferedWriter):
    """A file whose buffered bytes cannot reach the disk: what a full disk does on the last flush."""

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_an_atomic_write_whose_last_flush_fails_raises_and_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "test_preds.npy"
    target.write_bytes(b"the old predictions")
    monkeypatch.setattr(files, "open", lambda p, mode: _FlushFails(io.FileIO(p, mode.replace("b", ""))),
                        raising=False)
    with pytest.raises(OSError) as e:  # np.save's bytes sit in the buffer until close: the error comes from there
        files.write_atomic(target, lambda f: np.save(f, np.arange(10, dtype=np.int16)))
    assert e.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"the old predictions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_preds.npy"]  # no temp file


def test_an_atomic_write_takes_bytes_text_or_a_writer(tmp_path):
    files.write_atomic(tmp_path / "a.bin", b"\x00\x01")
    files.write_atomic(tmp_path / "b.json", '{"état": 1}')
    files.write_atomic(tmp_path / "c.npy", lambda f: np.save(f, np.arange(3)))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"état": 1}
    assert np.load(tmp_path / "c.npy").tolist() == [0, 1, 2]
    with pytest.raises(ZeroDivisionError):
        files.write_atomic(tmp_path / "a.bin", lambda f: f.write(b"half") and 1 / 0)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.npy"]


def test_one_students_list_passes_over_the_others_runs_on_their_config_alone(tmp_path, monkeypatch):
    """In a class the pages list one student's runs on every script run: the others' metrics are not read
    (a run named by a link is listed whoever made it)."""
    mine = Run.create(TINY, TrainConfig(), "synthetic", tmp_path, owner="me")
    cli = Run.create(TINY, TrainConfig(), "synthetic", tmp_path, owner="")
    theirs = [Run.create(TINY, TrainConfig(), "synthetic", tmp_path, owner=f"student{i}") for i in range(3)]
    read = []
    metrics = Run.metrics
    monkeypatch.setattr(Run, "metrics", lambda self, *a: read.append(self.path) or metrics(self, *a))
    listed = list_runs(tmp_path, owners={"me", ""}, paths=[str(theirs[1].path)])
    assert {r.path for r in listed} == {str(mine.path), str(cli.path), str(theirs[1].path)}
    assert set(read) == {mine.path, cli.path, theirs[1].path}
    assert len(list_runs(tmp_path)) == 5  # everyone's, when no owner is asked for
