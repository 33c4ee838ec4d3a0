"""The runs folder as the server reads it: heartbeats, reused pids, and what a hostile folder cannot do."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet_viz.config import TrainConfig
from alexnet_viz.runs import STALE_S, Run, list_runs

from .conftest import ROOT
from .test_training import TINY

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
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    tail = out.stdout.strip().splitlines()[-4:]
    assert any("real-browser tests NOT run" in line for line in tail), out.stdout
    assert any("apt-get install -y chromium" in line for line in tail)
    (tmp_path / "test_browser.py").write_text("def test_browser():\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "NOT run" not in out.stdout and "2 passed" in out.stdout
