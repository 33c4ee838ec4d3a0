"""This device's speed: the rates of a training step's parts, measured in about a second and cached.

A profile is a dict of rates (multiply-accumulates per second of a wide and a narrow conv and of a
linear layer, bytes per second of each kind of elementwise layer) and the fixed cost of a layer
(autograd, dispatch, the optimizer). Other work on a shared machine only ever slows a measurement
down, so every rate is the fastest of several runs, and a profile taken while the load average
was above QUIET (per core) is measured again by the next process, keeping each rate's fastest.
`DeviceProfiles` holds the profiles a process has read or measured, backed by one JSON file in the
cache folder (`ALEXNET_VIZ_CACHE`); `PROFILES` is the one the estimates use unless given another.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.data import cache_dir, pick_device
from alexnet_viz.runs.files import write_atomic

# the layers that are neither conv nor linear, by how fast they go through memory (each measured)
KINDS = ("stream", "smooth", "window", "lrn")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _best(fn, dev: torch.device, n: int = 3, budget_s: float = 0.1) -> float:
    """Fastest of at least n runs (more while under budget_s): other processes on a shared machine
    only ever slow a run down, so the fastest is the closest to what the device can do."""
    fn()
    _sync(dev)
    best, start, k = math.inf, time.perf_counter(), 0
    while k < n or (time.perf_counter() - start < budget_s and k < 50):
        t = time.perf_counter()
        fn()
        _sync(dev)
        best, k = min(best, time.perf_counter() - t), k + 1
    return best


QUIET = 0.5  # load average per core under which a measurement is taken as the device's own speed


def _load_per_core() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return 0.0


def measure_device(dev: torch.device) -> dict:
    """Rates of this device for a training step's parts; about a second on 2 CPU cores."""
    g = torch.Generator(device="cpu").manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1).to(dev, memory_format=torch.channels_last)
    x = torch.randn(16, 64, 28, 28, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    narrow = nn.Conv2d(1, 8, 5, padding=2).to(dev, memory_format=torch.channels_last)  # LeNet's first conv
    xn = torch.randn(128, 1, 28, 28, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    lin = nn.Linear(1024, 1024).to(dev)
    v = torch.randn(128, 1024, generator=g).to(dev).requires_grad_(True)
    e = torch.randn(16, 64, 64, 64, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    e.requires_grad_(True)  # channels last, as the engine trains
    # a whole training step of a 5-layer network too small to compute anything: what each layer costs
    # beyond its arithmetic (autograd, the optimizer, the dispatch of every op), forward to step
    tiny = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).to(dev)
    opt = torch.optim.Adam(tiny.parameters())
    tx, ty = torch.randn(2, 1, 6, 6, generator=g).to(dev), torch.tensor([0, 1], device=dev)

    def tiny_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(tiny(tx), ty).backward()
        opt.step()
    load = _load_per_core() if dev.type == "cpu" else 0.0
    conv_s = _best(lambda: conv(x).sum().backward(), dev)
    narrow_s = _best(lambda: narrow(xn).sum().backward(), dev)  # no input gradient: 2× the forward MACs
    lin_s = _best(lambda: lin(v).sum().backward(), dev)
    # each kind of elementwise layer, forward and backward, in bytes of its input + output × 2.5
    per_kind = {"stream": nn.ReLU(), "smooth": nn.Sigmoid(), "window": nn.MaxPool2d(3, 2), "lrn": nn.LocalResponseNorm(5)}
    elem = {}
    for k, f in per_kind.items():
        t = e[:4] if k == "lrn" else e  # LRN is ~25× slower than ReLU per byte: a quarter of the tensor
        io = t.numel() + f(t).numel()
        elem[k] = 2.5 * 4 * io / _best(lambda f=f, t=t: f(t).sum().backward(), dev)
    layer_s = _best(tiny_step, dev, 10, 0.05) / len(tiny)
    conv_macs = 3 * 16 * 64 * 28 * 28 * 64 * 9
    lin_macs = 3 * 128 * 1024 * 1024
    return {"conv_macs_per_s": conv_macs / conv_s, "narrow_conv_macs_per_s": 2 * 128 * 28 * 28 * 8 * 25 / narrow_s,
            "linear_macs_per_s": lin_macs / lin_s,
            "bytes_per_s": elem["stream"], "smooth_bytes_per_s": elem["smooth"],
            "window_bytes_per_s": elem["window"], "lrn_bytes_per_s": elem["lrn"], "layer_s": layer_s,
            "load": max(load, _load_per_core() if dev.type == "cpu" else 0.0),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "measured": time.time()}


RATES = ("conv_macs_per_s", "narrow_conv_macs_per_s", "linear_macs_per_s", "bytes_per_s", "smooth_bytes_per_s",
         "window_bytes_per_s", "lrn_bytes_per_s")                                        # higher is faster
RATE_OF_KIND = {"stream": "bytes_per_s", "smooth": "smooth_bytes_per_s", "window": "window_bytes_per_s",
          "lrn": "lrn_bytes_per_s"}
WIDE, NARROW = math.sqrt(64 * 64 * 9), math.sqrt(8 * 25)  # the widths of the two measured convs
TIMES = ("layer_s",)                                             # lower is faster


def _valid(prof) -> bool:
    return isinstance(prof, dict) and all(isinstance(prof.get(k), (int, float)) and prof[k] > 0
                                          for k in RATES + TIMES)


def _fastest(a: dict, b: dict) -> dict:
    """Other work on the machine only ever slows a measurement down: keep each part's fastest."""
    out = dict(b)
    out.update({k: max(a[k], b[k]) for k in RATES})
    out.update({k: min(a[k], b[k]) for k in TIMES})
    out["load"] = min(a.get("load", 0.0), b.get("load", 0.0))
    return out


def _read_profiles(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def profile_key(dev: torch.device) -> str:
    """What a profile is valid for: the device, torch's threads and version, the GPU's name."""
    key = f"{dev.type}-{torch.get_num_threads()}t-{torch.__version__}"
    if dev.type == "cuda":
        key += "-" + torch.cuda.get_device_name(dev).replace(" ", "_")
    return key


class DeviceProfiles:
    """The device profiles one process knows, read from (and written to) `path` once each; a new
    DeviceProfiles is what a new process would see."""

    def __init__(self, path: Path | None = None):
        self._path = path  # None: the cache folder's device_profile.json, looked up when first needed
        self._known: dict[str, dict] = {}
        # Streamlit starts a rerun's script while the one it replaces is still running (fast reruns): without
        # the lock, a page opened and clicked at once measured the device three times over, 0.5-1 s each.
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else cache_dir() / "device_profile.json"

    def get(self, device: str | torch.device | None = None, refresh: bool = False) -> dict:
        """This device's rates. Measured again (and each part's fastest kept) while the stored rates
        were taken on a busy machine, or when `refresh` asks for it."""
        dev = torch.device(device) if device is not None else pick_device("auto")
        key = profile_key(dev)
        if key in self._known and not refresh:
            return self._known[key]
        with self._lock:
            if key in self._known and not refresh:  # measured by the caller this one waited for
                return self._known[key]
            return self._measure(dev, key, refresh)

    def _measure(self, dev: torch.device, key: str, refresh: bool) -> dict:
        stored = _read_profiles(self.path)
        prof = stored.get(key) if _valid(stored.get(key)) else None
        if prof is None or refresh or prof.get("load", 1.0) > QUIET:
            new = measure_device(dev)
            prof = _fastest(prof, new) if prof is not None else new
            stored[key] = prof
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, json.dumps(stored))
            except OSError:
                pass  # a read-only cache folder: measure again next process
        self._known[key] = prof
        return prof

    def remember(self, device: str | torch.device, prof: dict) -> None:
        """Take `prof` as this device's rates for this process (a test's fixed machine, a benchmark's)."""
        self._known[profile_key(torch.device(device))] = prof


PROFILES = DeviceProfiles()  # this process's


def device_profile(device: str | torch.device | None = None, refresh: bool = False,
                   profiles: DeviceProfiles | None = None) -> dict:
    """This device's rates from `profiles` (this process's PROFILES unless given)."""
    return (profiles or PROFILES).get(device, refresh)


def conv_rate(width: float, prof: dict) -> float:
    """A conv's multiply-accumulate rate: narrow convs (few channels, small kernels) keep the vector
    units less busy; between the two measured widths the rate goes log-linearly."""
    lo, hi = prof["narrow_conv_macs_per_s"], prof["conv_macs_per_s"]
    f = min(max(math.log(width / NARROW) / math.log(WIDE / NARROW), 0.0), 1.0)
    return math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))
