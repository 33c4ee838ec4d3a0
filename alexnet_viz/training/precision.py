"""bf16 or fp32: chosen by measuring this machine, once per network shape class, cached on disk.

Whether bf16 autocast pays on a CPU depends on the CPU, not on a rule: on a Zen 4 EPYC with
AVX-512 BF16 (no AMX) it made d2l's AlexNet 1.2× faster, on an AVX2-only EPYC 10× slower. So on a
CPU a short micro-benchmark times forward+backward steps of the network itself (a small batch) in
fp32 and in bf16 autocast, both channels_last as the engine trains, and bf16 is used only when it
is at least `PAYS` times faster. The answer is cached in `<cache dir>/precision.json`, keyed by CPU
model and features, torch version, thread count and shape class (input size and widest conv,
each rounded up to a power of two), so each machine measures each class once.

On CUDA, bf16 is used wherever the card supports it, without measuring (tensor cores run it at
twice the fp32 rate or more); Apple MPS stays in fp32.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from alexnet_viz.config import ArchConfig
from alexnet_viz.data import cache_dir
from alexnet_viz.runs.files import write_atomic

PAYS = 1.1              # bf16 must be this many times faster than fp32 to be chosen
MEASURE_S = 0.5         # about how long each precision is timed (interleaved), after a warm-up step
MODES = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Choice:
    dtype: torch.dtype | None  # torch.bfloat16, or None for full precision
    reason: str                # what decided it, for the page and the CLI

    @property
    def name(self) -> str:
        return "bf16" if self.dtype is not None else "fp32"


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def shape_class(arch: ArchConfig) -> str:
    """Networks whose speed behaves alike: input side and widest conv, rounded up to powers of two."""
    widest = max((c.out_channels for c in arch.convs), default=arch.in_channels)
    return f"{_pow2(arch.input_size)}px-{_pow2(widest)}ch"


@lru_cache(maxsize=1)  # /proc/cpuinfo does not change while we run
def cpu_name() -> str:
    """The CPU model and the features that decide bf16 speed."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    feats = [f for f, ok in (("avx512_bf16", getattr(torch.cpu, "_is_avx512_bf16_supported", None)),
                             ("amx", getattr(torch.cpu, "_is_amx_tile_supported", None))) if ok and ok()]
    return " ".join([model, *feats])


def _cache_file() -> Path:
    return cache_dir() / "precision.json"


def _cache_key(arch: ArchConfig) -> str:
    return f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {shape_class(arch)}"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict) -> None:
    """Merged into the file and renamed into place; a cache that cannot be written is only slower."""
    try:
        path = _cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(_read_cache() | {key: entry}, indent=1))
    except OSError:
        pass


def measure(arch: ArchConfig, batch: int | None = None) -> dict:
    """How much faster a forward+backward step of arch runs on the CPU in bf16 autocast than in fp32
    (the median ratio of rounds that time one step of each), and the best step times."""
    from alexnet_viz.model import build_model  # here, not at the top: build_model is only needed to measure
    torch.manual_seed(0)
    model = build_model(arch).to(memory_format=torch.channels_last)
    batch = batch or 16  # a batch of 4 understated bf16 on d2l (1.14×, against 1.4× or more at batch 128)
    x = torch.randn(batch, arch.in_channels, arch.input_size, arch.input_size).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, arch.num_classes, (batch,))

    def step(dtype) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    for dtype in (None, torch.bfloat16):  # warm-up: kernels chosen, memory touched
        step(dtype)
    # side by side, round after round; the median of the per-round ratios shrugs off bursts of load
    # from other work, which a best-of or a mean does not (a burst can fall on either precision)
    fp32, bf16 = [], []
    t_end = time.perf_counter() + 2 * MEASURE_S
    while len(fp32) < 5 or (time.perf_counter() < t_end and len(fp32) < 21):
        fp32.append(step(None))
        bf16.append(step(torch.bfloat16))
    ratios = sorted(a / b for a, b in zip(fp32, bf16))
    return {"fp32_s": min(fp32), "bf16_s": min(bf16), "batch": batch, "rounds": len(ratios),
            "speedup": ratios[len(ratios) // 2], "date": time.strftime("%Y-%m-%d")}


def known(device: torch.device | str, arch: ArchConfig, want: str = "auto") -> Choice | None:
    """The choice `choose` would make, where it needs no new measurement; else None (e.g. for estimates)."""
    return known_speed(device, arch, want)[0]


def known_speed(device: torch.device | str, arch: ArchConfig, want: str = "auto") -> tuple[Choice | None, float]:
    """`known`'s choice, and how many times the speed of fp32 a training step of arch runs at with it,
    where this CPU has measured it (bf16 forced on a CPU without fast bf16 is < 1); else 1."""
    device = torch.device(device)
    if want not in MODES:
        raise ValueError(f"precision {want!r} is not one of {', '.join(MODES)}")
    if want == "fp32":
        return Choice(None, "fp32: chosen by the user"), 1.0
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Choice(torch.bfloat16, f"bf16: supported by this GPU ({torch.cuda.get_device_name(device)}); "
                                          f"not measured, GPUs run it at least as fast as fp32"), 1.0
        return Choice(None, "fp32: this GPU has no bf16"), 1.0
    if device.type != "cpu":
        return Choice(None, f"fp32: bf16 autocast is not used on {device.type}"), 1.0
    entry = _read_cache().get(_cache_key(arch))
    measured = isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float)) and entry["speedup"] > 0
    speed = float(entry["speedup"]) if measured else 1.0
    if want == "bf16":
        return Choice(torch.bfloat16, "bf16: chosen by the user"), speed
    if not measured:
        return None, 1.0
    c = _decide(entry)
    return c, speed if c.dtype is not None else 1.0


def _decide(entry: dict) -> Choice:
    s, when = entry["speedup"], entry.get("date", "?")
    if s >= PAYS:
        return Choice(torch.bfloat16, f"bf16: {s:.1f}× faster than fp32 on this CPU (measured {when})")
    return Choice(None, f"fp32: bf16 was {s:.2f}× the speed of fp32 on this CPU, under the {PAYS}× that "
                        f"pays (measured {when})")


def choose(device: torch.device | str, arch: ArchConfig, want: str = "auto") -> Choice:
    """The autocast dtype for training arch on device. want: auto (measured) | bf16 | fp32 (forced)."""
    c = known(device, arch, want)
    if c is None:  # a CPU that has not timed this shape class yet
        entry = measure(arch)
        _write_cache(_cache_key(arch), entry)
        c = _decide(entry)
    return c
