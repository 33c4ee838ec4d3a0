import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# No test may reach the network or write outside tmp folders.
os.environ["ALEXNET_VIZ_OFFLINE"] = "1"
os.environ.pop("ALEXNET_VIZ_DATA", None)


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
