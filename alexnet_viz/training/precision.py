"""bf16 or fp32: chosen by measuring this machine, once per network shape class and batch class, cached on disk.

Whether bf16 autocast pays on a CPU depends on the CPU, not on a rule: on a Zen 4 EPYC with
AVX-512 BF16 (no AMX) it made d2l's AlexNet 1.2× faster, on an AVX2-only EPYC 10× slower. It also
depends on the batch: on a Xeon with AMX, mini28 measured 1.10× at batch 16 but trained 1.7× faster
at batch 128. So on a CPU a short micro-benchmark times training steps (forward, backward and an SGD
step) of the network itself at the run's own batch size, in fp32 and in bf16 autocast, both
channels_last as the engine trains, and bf16 is used only when it is at least `PAYS` times faster.
The two are timed in interleaved rounds and each precision's best step is kept: load from other
work only ever slows a step down, so the fastest of several is the machine's own speed (one sample,
or a ratio of single samples, said 0.65× under load where the truth was 1.1×).

The answer is cached in `<cache dir>/precision.json`, keyed by CPU model and features, torch
version, thread count, shape class (input size and widest conv, each rounded up to a power of two)
and batch class (the batch rounded up to a power of two), so each machine measures each once.

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
from typing import Callable

import torch
import torch.nn.functional as F

from alexnet_viz.config import ArchConfig
from alexnet_viz.data import cache_dir
from alexnet_viz.model import build_model
from alexnet_viz.runs.files import write_atomic

PAYS = 1.05             # bf16 must be this many times faster than fp32 to be chosen: kept, fp32 is
                        # within 5% of bf16's speed, leaving room for the measurement's error inside 10%
                        # (at 1.1, mini28 at batch 16 measured 1.10× and kept fp32 at 91% of bf16)
MEASURE_S = 1.0         # about how long each precision is timed (interleaved), after a warm-up step
MIN_ROUNDS = 4          # rounds at least, however slow a step (a best of 4 against bursts of load)
MAX_ROUNDS = 25
MODES = ("auto", "bf16", "fp32")
DEFAULT_BATCH = 128     # the batch class measured where a caller names none (the engine always names one)


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


def batch_class(batch: int) -> str:
    """Batches whose bf16 speed-up behaves alike: the batch rounded up to a power of two."""
    return f"batch {_pow2(max(int(batch), 1))}"


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


def _cache_key(arch: ArchConfig, batch: int) -> str:
    return (f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {shape_class(arch)}"
            f" | {batch_class(batch)}")


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


def time_interleaved(steps: dict[str, Callable[[], object]], budget_s: float, clock: Callable[[], float] = time.perf_counter,
                     min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS) -> dict[str, list[float]]:
    """Seconds of each step, timed side by side round after round (each once per round, the order
    alternating so neither always follows the other) for about budget_s in all, after one warm-up each."""
    names = list(steps)
    for n in names:  # warm-up: kernels chosen, memory touched
        steps[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    t_end = clock() + budget_s
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and clock() < t_end):
        for n in (names if rounds % 2 == 0 else names[::-1]):
            t = clock()
            steps[n]()
            times[n].append(clock() - t)
        rounds += 1
    return times


def measure(arch: ArchConfig, batch: int = DEFAULT_BATCH, clock: Callable[[], float] = time.perf_counter) -> dict:
    """How much faster a training step of arch (forward, backward, SGD step) at this batch runs on the
    CPU in bf16 autocast than in fp32: the ratio of each precision's fastest step in interleaved rounds."""
    torch.manual_seed(0)
    model = build_model(arch).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)  # the step's cost, not its learning
    batch = max(int(batch), 1)
    x = torch.randn(batch, arch.in_channels, arch.input_size, arch.input_size).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, arch.num_classes, (batch,))

    def step(dtype) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    times = time_interleaved({"fp32": step(None), "bf16": step(torch.bfloat16)}, 2 * MEASURE_S, clock)
    fp32, bf16 = min(times["fp32"]), min(times["bf16"])
    return {"fp32_s": fp32, "bf16_s": bf16, "batch": batch, "rounds": len(times["fp32"]),
            "speedup": fp32 / bf16 if bf16 > 0 else 0.0, "date": time.strftime("%Y-%m-%d")}


def known(device: torch.device | str, arch: ArchConfig, want: str = "auto", batch: int = DEFAULT_BATCH) -> Choice | None:
    """The choice `choose` would make, where it needs no new measurement; else None (e.g. for estimates)."""
    return known_speed(device, arch, want, batch)[0]


def known_speed(device: torch.device | str, arch: ArchConfig, want: str = "auto",
                batch: int = DEFAULT_BATCH) -> tuple[Choice | None, float]:
    """`known`'s choice, and how many times the speed of fp32 a training step of arch at this batch
    runs at with it, where this CPU has measured it (bf16 forced on a CPU without fast bf16 is < 1); else 1."""
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
    entry = _read_cache().get(_cache_key(arch, batch))
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
    at = f" at batch {entry['batch']}" if isinstance(entry.get("batch"), int) else ""
    if s >= PAYS:
        return Choice(torch.bfloat16, f"bf16: {s:.2f}× faster than fp32 on this CPU{at} (measured {when})")
    return Choice(None, f"fp32: bf16 was {s:.2f}× the speed of fp32 on this CPU{at}, under the {PAYS}× that "
                        f"pays (measured {when})")


def choose(device: torch.device | str, arch: ArchConfig, want: str = "auto", batch: int = DEFAULT_BATCH) -> Choice:
    """The autocast dtype for training arch on device at this batch size (per process).
    want: auto (measured, once per shape and batch class) | bf16 | fp32 (forced)."""
    c = known(device, arch, want, batch)
    if c is None:  # a CPU that has not timed this shape class at this batch class yet
        entry = measure(arch, batch)
        _write_cache(_cache_key(arch, batch), entry)
        c = _decide(entry)
    return c
