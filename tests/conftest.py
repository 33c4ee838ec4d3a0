import functools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# No test may reach the network or write outside tmp folders.
os.environ["ALEXNET_VIZ_OFFLINE"] = "1"
os.environ.pop("ALEXNET_VIZ_DATA", None)
# A job manager does not measure the device when it starts (~1 s, in every test that makes one): its
# training processes' fork server then starts with the first job, once per test process.
os.environ["ALEXNET_VIZ_WARM_START"] = "0"
# Under pytest-xdist (pyproject's `-n 2`) each test process gets its share of the cores for torch: two
# processes of two threads each on 2 cores spin against each other (a Grad-CAM test took 35 s, not 2 s).
# The processes a test starts (training runs, the CLI, the server) get the same share through
# OMP_NUM_THREADS: beside the other test process, a mini28 CLI run of 40 batches took 13.5-15.2 s and
# 15-16.5 CPU s with two threads, 9.5-11.8 s and 8.9-10.2 CPU s with one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    torch.set_num_threads(_share)
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

# Every AppTest scans the installed packages for Streamlit components (v2) when it first runs: 0.2 s of
# metadata parsing each, in a suite that makes hundreds. Nothing installed changes during the run.
import streamlit.components.v2.manifest_scanner as _manifests  # noqa: E402

_manifests.scan_component_manifests = functools.cache(_manifests.scan_component_manifests)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ALEXNET_VIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ALEXNET_VIZ_DATA", raising=False)


@pytest.fixture
def real_data(monkeypatch):
    """The real Fashion-MNIST from ../shared/data, or a skip that says why."""
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real Fashion-MNIST not found at {SHARED_DATA} (it is present in CI)")
    monkeypatch.setenv("ALEXNET_VIZ_DATA", str(SHARED_DATA))
    return SHARED_DATA


# --- the real-browser tests (tests/test_browser*.py, which skip without Chromium or playwright) ------
# One Streamlit server and one Chromium for all of them (one per test process: pyproject runs the suite
# on two, with pytest-xdist, each test going to whichever is free): each costs seconds to start. Every test opens its own browser contexts, so its sessions are its own; a session
# sees only the runs it started (its id is their owner), so the runs folder they share holds no
# surprise for another test. The server runs one training job at a time, so a test must not leave a
# run going (each waits for its run's end, or stops it).

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`streamlit run app.py` on a free port, offline, with its own runs, cache and torch folders:
    (url, runs folder)."""
    port = _free_port()
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "ALEXNET_VIZ_RUNS": str(runs), "ALEXNET_VIZ_OFFLINE": "1",
           "ALEXNET_VIZ_CACHE": str(tmp_path_factory.mktemp("cache")),
           "TORCH_HOME": str(tmp_path_factory.mktemp("torch"))}
    env.pop("ALEXNET_VIZ_DATA", None)
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                          "--server.address", "127.0.0.1", "--server.headless", "true",
                          "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        p.kill()
        pytest.fail("streamlit did not answer its health check in 60 s")
    yield url, runs
    p.terminate()
    p.wait(10)
    log.close()


@pytest.fixture(scope="session")
def browser():
    """Chromium, headless, driven by playwright (imported here: the browser modules skip without it)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        yield b
        b.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the END of the run, where nobody misses it, when the real-browser tests did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "test_browser.py" in str(getattr(r, "nodeid", "") or getattr(r, "location", ("",))[0])]
    if not skipped:
        return
    rep = skipped[0].longrepr
    reason = str(rep[-1] if isinstance(rep, tuple) else rep).removeprefix("Skipped: ")
    fix = "pip install playwright" if "playwright" in reason else "apt-get install -y chromium"
    terminalreporter.section("real-browser tests NOT run", sep="=", yellow=True, bold=True)
    terminalreporter.write_line(f"tests/test_browser.py was skipped: {reason}")
    terminalreporter.write_line(f"The app was not tested in a real browser. To run those tests: {fix}")


def pytest_collection_modifyitems(config, items):
    """Tests marked `early` first. The suite runs on two processes; the real-data mini28 epoch (48 s on
    one core) collected last left the other process idle for its last 52 s (measured: 5:15, one core
    busy at the end)."""
    items.sort(key=lambda item: item.get_closest_marker("early") is None)
