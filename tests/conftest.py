import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# No test may reach the network or write outside tmp folders.
os.environ["ALEXNET_VIZ_OFFLINE"] = "1"
os.environ.pop("ALEXNET_VIZ_DATA", None)
# No warm spare training process (tests/test_jobs.py turns it on where it is tested): on 2 cores its
# torch import competes with the run it waits beside.
os.environ["ALEXNET_VIZ_SPARE_WORKER"] = "0"


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
