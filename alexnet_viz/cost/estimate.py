"""What a piece of work will cost before it starts: peak memory, seconds per epoch, and the budget.

Memory of a training step (bytes), each part derived from the model, not typed by hand:
- weights, gradients: 4 bytes a parameter each; optimizer state: SGD 0, momentum 1×, Adam 2× that.
- activations kept for backward: what autograd saves, found by running the network on the `meta`
  device (no memory, no compute) under `saved_tensors_hooks` and adding up the distinct tensors it
  keeps (a ReLU's output that the next conv also keeps counts once); bf16 autocast halves them.
- backward working memory: the gradient of the largest layer output and of its input, alive at once
  (an LRN layer, built from five tensor ops, holds LRN_TEMPS more of its output's size, forward too).
- the batch (the 28×28 floats and the resized copy), the uint8 dataset on the device, and the fixed
  cost of a process that has imported torch (measured: see PROCESS_OVERHEAD).

Time of an epoch: 3 × forward MACs per example (forward, and backward's two products) over this
device's multiply-accumulate rate, plus the elementwise layers over its memory bandwidth, plus a
per-layer cost (autograd, dispatch, the optimizer: a whole step of a tiny network, per layer), plus
the test-set pass, divided by bf16's speed-up where precision.py measured one for this network. The
rates come from a micro-benchmark of about a second, cached in the cache folder
(`ALEXNET_VIZ_CACHE`); taken while other work kept the machine busy, they are measured again by the
next process, keeping each rate's fastest (other work only ever slows a measurement down).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.config import ArchConfig, ConfigError, TrainConfig, get_preset
from alexnet_viz.data import cache_dir, pick_device
from alexnet_viz.architect.summary import human, leaf_layers

# Peak RSS of a fresh process after `import torch` (~530 MB with torch 2.15's CUDA build) and
# loading Fashion-MNIST through torchvision (~250 MB more at its peak), less the 55 MB dataset that
# is counted on its own; `python -m alexnet_viz bench estimate` measures it again as its baseline.
PROCESS_OVERHEAD = 720 * 2**20
CUDA_CONTEXT = 500 * 2**20     # a CUDA context with cuDNN/cuBLAS handles (torch's usual figure)
SAFETY = 0.8                   # of what the machine has free: the rest is for page cache and the others
SERVER_RESERVE = 256 * 2**20   # kept back for the Streamlit server itself
FASHION_TRAIN, FASHION_TEST = 60_000, 10_000
ENV_BUDGET = "ALEXNET_VIZ_MEMORY_BUDGET"
SLOW_RUN_S = 600               # a run longer than this gets advice on making it fast
EVAL_BATCH = 250               # evaluation's batch when memory is plentiful


class OverBudget(ConfigError):
    """Work whose estimate does not fit the memory this machine has free; the message says what to lower."""


@dataclass(frozen=True)
class Estimate:
    peak_memory_bytes: int            # predicted peak of the whole process (training) or the analysis
    seconds_per_epoch: float          # training: one epoch incl. the test pass; analysis: one analysis
    available_bytes: int              # the memory budget it was compared with
    fits: bool                        # peak_memory_bytes <= available_bytes
    breakdown: dict[str, int] = field(compare=False)  # part -> bytes, adding up to the peak
    biggest: str = ""                 # the largest part of the breakdown
    advice: str = ""                  # what to lower when it does not fit; how to go faster when slow
    what: str = "training"            # training | analysis
    device: str = "cpu"
    batch_size: int = 1
    epochs: int = 1                   # the run's epochs (for the whole-run time)

    @property
    def run_seconds(self) -> float:
        return self.seconds_per_epoch * self.epochs

    def message(self) -> str:
        """One line: the cost, and when it does not fit, the biggest consumer and what to lower."""
        where = _device_words(self.device)
        if self.what == "analysis":
            head = f"analysing one image with this network needs about {human(self.peak_memory_bytes, 'B')}"
        else:
            head = (f"about {duration(self.seconds_per_epoch)} per epoch {where} at batch {self.batch_size}, "
                    f"peak {human(self.peak_memory_bytes, 'B')}")
        if self.fits:
            return head
        return (f"{head}, but only {human(self.available_bytes, 'B')} is free for it — the biggest part is "
                f"{self.biggest} ({human(self.breakdown[self.biggest], 'B')}): {self.advice}")

    def to_dict(self) -> dict:
        return {"peak_memory_bytes": self.peak_memory_bytes, "seconds_per_epoch": self.seconds_per_epoch,
                "available_bytes": self.available_bytes, "fits": self.fits, "breakdown": self.breakdown,
                "biggest": self.biggest, "advice": self.advice, "what": self.what, "device": self.device,
                "batch_size": self.batch_size, "message": self.message()}


def require_fits(est: Estimate) -> Estimate:
    """Raise OverBudget with the estimate's message unless it fits."""
    if not est.fits:
        raise OverBudget(est.message())
    return est


def duration(s: float) -> str:
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _device_words(device: str) -> str:
    return {"cpu": "on this CPU", "cuda": "on this GPU", "mps": "on this Mac's GPU"}.get(device, f"on {device}")


# --- the memory budget ---------------------------------------------------------------------------
def parse_bytes(text: str) -> int:
    """'2G', '512M', '1.5GB', '3000000' -> bytes (powers of 1024); raises ConfigError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text or "")
    if not m:
        raise ConfigError(f"{ENV_BUDGET}={text!r} is not a size: write bytes or a size like 512M or 2G")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2].upper() or " "))


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_free() -> int | None:
    """What this process's cgroup still allows (v2, then v1); None when unlimited."""
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim = _read_int(limit)  # "max" (v2 unlimited) does not parse: None
        if lim is not None and lim < 2**60:
            return max(lim - (_read_int(used) or 0), 0)
    return None


def _cpu_free() -> int:
    free = [v for v in (_meminfo_available(), _cgroup_free()) if v is not None]
    if not free:  # not Linux: torch's own view is all there is; be conservative
        free = [4 * 2**30]
    return min(free)


def memory_budget(device: str | torch.device | None = None) -> int:
    """Bytes that new work on `device` may use now; `ALEXNET_VIZ_MEMORY_BUDGET` (e.g. 2G) overrides."""
    env = os.environ.get(ENV_BUDGET)
    if env:
        return parse_bytes(env)
    dev = torch.device(device) if device is not None else pick_device("auto")
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * 0.9)
    if dev.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return max(int(_cpu_free() * SAFETY) - SERVER_RESERVE, 0)


# --- what the network holds ----------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """Per-image figures of a network, found on the meta device."""
    params: int                 # learnable parameters
    saved_train: int            # bytes autograd keeps for backward, training mode, per image
    saved_eval: int             # the same in eval mode (Grad-CAM), per image
    outputs: int                # bytes of every layer's output, per image (all feature maps)
    largest: int                # bytes of the largest layer output, per image
    largest_name: str
    pair: int                   # most bytes a layer's forward holds at once (its input, output, temporaries)
    work: int                   # most bytes a layer's backward holds at once, per image
    work_bf16: int              # the same in bf16 autocast (gradients in bf16; LRN still in fp32)
    pair_bf16: int              # `pair` in bf16 autocast
    conv_macs: int              # per image
    convs: tuple                # (MACs per image, width) of each conv; width = √(out channels × in/groups × k²)
    linear_macs: int
    elementwise: tuple          # bytes read and written by the other layers, per image, by KINDS
    layers: int


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one forward pass (meta device)."""
    params = {id(p) for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params:
            seen.setdefault(id(base), base.untyped_storage().nbytes())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
        loss = F.cross_entropy(out, torch.zeros(len(x), dtype=torch.long, device=x.device))
    del loss, out
    return sum(seen.values())


# the layers that are neither conv nor linear, by how fast they go through memory (each measured)
KINDS = ("stream", "smooth", "window", "lrn")
_SMOOTH = (nn.Sigmoid, nn.Tanh, nn.GELU)
_WINDOW = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
LRN_TEMPS = 4  # x², its padded copy, the window sums, their power: measured on alexnet2012 (~4.8 at batch 32)


def _kind(m: nn.Module) -> str:
    return ("smooth" if isinstance(m, _SMOOTH) else "window" if isinstance(m, _WINDOW)
            else "lrn" if isinstance(m, nn.LocalResponseNorm) else "stream")


@lru_cache(maxsize=64)
def footprint(arch: ArchConfig) -> Footprint:
    """Costs nothing: the network is built and run on the meta device."""
    model = build_meta(arch)
    B = 2  # BatchNorm in training mode wants more than one value per channel
    x = torch.empty(B, arch.in_channels, arch.input_size, arch.input_size, device="meta", requires_grad=False)
    saved_train = _saved_bytes(model.train(), x) // B
    saved_eval = _saved_bytes(model.eval(), x) // B
    outputs, largest, name, pair, work, work16, pair16, conv, lin, n = 0, 0, "input", 0, 0, 0, 0, 0, 0, 0
    elem = dict.fromkeys(KINDS, 0)
    convs = []
    prev = x[0].numel() * 4
    with torch.no_grad():
        y = x
        for lname, m in leaf_layers(model):
            y = m(y)
            b = y[0].numel() * 4
            outputs += b
            temps = LRN_TEMPS * b if _kind(m) == "lrn" else 0
            pair, work = max(pair, prev + b + temps), max(work, 2 * b + temps)
            work16, pair16 = max(work16, b + temps), max(pair16, (prev + b) // 2 + temps)
            if b > largest:
                largest, name = b, lname
            if isinstance(m, nn.Conv2d):
                k = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
                conv += y[0].numel() * k
                convs.append((y[0].numel() * k, math.sqrt(k * m.out_channels)))
            elif isinstance(m, nn.Linear):
                lin += m.in_features * m.out_features
            elif not isinstance(m, nn.Flatten):
                elem[_kind(m)] += prev + b  # a pooling layer reads 4× what it writes
            prev, n = b, n + 1
    params = sum(p.numel() for p in model.parameters())
    return Footprint(params, saved_train, saved_eval, outputs, largest, name, pair, work, work16, pair16, conv, tuple(convs), lin,
                     tuple(elem[k] for k in KINDS), n)


def build_meta(arch: ArchConfig) -> nn.Module:
    from alexnet_viz.model import build_model
    return build_model(arch, device="meta")


# --- this device's speed -------------------------------------------------------------------------
_PROFILES: dict[str, dict] = {}


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
_BYTES = {"stream": "bytes_per_s", "smooth": "smooth_bytes_per_s", "window": "window_bytes_per_s",
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


def device_profile(device: str | torch.device | None = None, refresh: bool = False) -> dict:
    """This device's rates, cached in the cache folder. Measured again (and each part's fastest kept)
    while the stored rates were taken on a busy machine, or when `refresh` asks for it."""
    dev = torch.device(device) if device is not None else pick_device("auto")
    key = f"{dev.type}-{torch.get_num_threads()}t-{torch.__version__}"
    if dev.type == "cuda":
        key += "-" + torch.cuda.get_device_name(dev).replace(" ", "_")
    if key in _PROFILES and not refresh:
        return _PROFILES[key]
    path = cache_dir() / "device_profile.json"
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            stored = {}
    except (OSError, ValueError):
        stored = {}
    prof = stored.get(key) if _valid(stored.get(key)) else None
    if prof is None or refresh or prof.get("load", 1.0) > QUIET:
        new = measure_device(dev)
        prof = _fastest(prof, new) if prof is not None else new
        stored[key] = prof
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache folder: measure again next process
    _PROFILES[key] = prof
    return prof


def _conv_rate(width: float, prof: dict) -> float:
    """A conv's multiply-accumulate rate: narrow convs (few channels, small kernels) keep the vector
    units less busy; between the two measured widths the rate goes log-linearly."""
    lo, hi = prof["narrow_conv_macs_per_s"], prof["conv_macs_per_s"]
    f = min(max(math.log(width / NARROW) / math.log(WIDE / NARROW), 0.0), 1.0)
    return math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))


def _seconds_per_example(fp: Footprint, prof: dict, train: bool, speedup: float = 1.0) -> float:
    """Seconds of one example's forward (train=False) or forward + backward (train=True); bf16's
    speed-up applies to all but LRN, which autocast runs in fp32."""
    k = 1.0 if train else 1 / 3  # the rates were measured on forward + backward (3× the forward MACs)
    compute = (sum(macs * 3 / _conv_rate(width, prof) for macs, width in fp.convs)
               + fp.linear_macs * 3 / prof["linear_macs_per_s"])
    # each elementwise layer: forward reads its input and writes its output, backward ~1.5× that
    memory = {kind: b * 2.5 / prof[_BYTES[kind]] for kind, b in zip(KINDS, fp.elementwise)}
    lrn = memory.pop("lrn")
    return k * ((compute + sum(memory.values())) / speedup + lrn)


# --- the estimates -------------------------------------------------------------------------------
def _dataset_bytes(n_train: int, n_test: int) -> int:
    return (n_train + n_test) * (28 * 28 + 8)  # uint8 images, int64 labels


def _largest_layer_words(arch: ArchConfig, fp: Footprint) -> str:
    return f"{fp.largest_name}'s output is {human(fp.largest, 'B')} per image"


def estimate_training(arch: ArchConfig, t: TrainConfig, n_train: int = FASHION_TRAIN,
                      device: str | torch.device | None = None, n_test: int = FASHION_TEST) -> Estimate:
    """Peak memory of a training run of `arch` with `t`, its seconds per epoch, and whether it fits."""
    dev = torch.device(device) if device is not None else pick_device(t.device)
    fp = footprint(arch)
    bf16, speedup = _precision(dev, arch, t)  # bf16's speed-up covers the network's forward + backward
    half = 0.5 if bf16 else 1.0
    B = t.batch_size
    state = {"sgd": 0, "momentum": 1, "adam": 2}.get(t.optimizer, 2)
    pixels = arch.in_channels * arch.input_size ** 2
    work = fp.work_bf16 if half < 1 else fp.work
    per_image = int(fp.saved_train * half) + work + 4 * (pixels + 28 * 28)
    ebs = eval_batch_size(arch, dev, half < 1, B)
    eval_extra = max(ebs * _eval_per_image(arch, fp, half < 1) - per_image * B, 0)
    parts = {
        "weights": fp.params * 4 + (fp.params * 2 if half < 1 else 0),  # + the bf16 copies autocast makes
        "gradients": fp.params * 4,
        "optimizer state": fp.params * 4 * state,
        "activations kept for backward": int(fp.saved_train * half) * B,
        "backward working memory": work * B,
        "the batch": 4 * (pixels + 28 * 28) * B,
        "evaluation batch (beyond a training step)": eval_extra,
        "dataset on the device": _dataset_bytes(n_train, n_test),
        "process overhead": CUDA_CONTEXT if dev.type == "cuda" else PROCESS_OVERHEAD,
    }
    peak = sum(parts.values())
    budget = memory_budget(dev)
    steps = -(-n_train // B)
    if t.max_batches:
        steps = min(steps, t.max_batches)
    prof = device_profile(dev)
    step_s = (B * _seconds_per_example(fp, prof, True, speedup) + fp.layers * prof["layer_s"] / speedup
              + fp.params * 4 * (3 + 2 * state) / prof["bytes_per_s"]          # optimizer step
              + B * 4 * pixels * 4 / prof["bytes_per_s"])                      # normalize + resize the batch
    eval_s = n_test * _seconds_per_example(fp, prof, False, speedup)
    seconds = steps * step_s + eval_s
    biggest = max(parts, key=parts.get)
    fits = peak <= budget
    if not fits:
        fixed = peak - per_image * B - eval_extra
        most = int((budget - fixed) // per_image) if budget > fixed else 0
        if biggest in ("activations kept for backward", "backward working memory", "the batch"):
            cap = f"at most {most} fits" if most >= 1 else "even batch 1 does not fit"
            advice = (f"lower the batch size ({cap}) or the input size and early channels — "
                      f"{_largest_layer_words(arch, fp)}")
        elif biggest in ("weights", "gradients", "optimizer state"):
            opt = " or use SGD instead of Adam (no optimizer state)" if state else ""
            advice = (f"lower the hidden widths or the channels ({fp.params:,} parameters, 4 bytes each, "
                      f"kept {3 + state} times){opt}")
        else:
            advice = "this machine has too little free memory for any run now — try again when others have finished"
    else:
        advice = speed_advice(arch, t, steps * step_s + eval_s, dev) if seconds * t.epochs > SLOW_RUN_S else ""
    return Estimate(int(peak), float(seconds), int(budget), fits, parts, biggest, advice, "training",
                    dev.type, B, t.epochs)


def speed_advice(arch: ArchConfig, t: TrainConfig, seconds_per_epoch: float, dev: torch.device) -> str:
    """What would bring a slow run under SLOW_RUN_S: mini28, or a cap on batches per epoch."""
    total = seconds_per_epoch * t.epochs
    tips = []
    if arch.name.split(" ")[0] != "mini28":
        m = estimate_training(get_preset("mini28"), TrainConfig(epochs=1, batch_size=128, amp=t.amp), device=dev)
        tips.append(f"the mini28 network trains an epoch in about {duration(m.seconds_per_epoch)}")
    per_batch = seconds_per_epoch / max(-(-FASHION_TRAIN // t.batch_size), 1)
    cap = int(SLOW_RUN_S / max(t.epochs, 1) / max(per_batch, 1e-9) * 0.8)
    if cap >= 1:
        tips.append(f"a cap of {cap} batch{'es' if cap > 1 else ''} per epoch keeps it under {SLOW_RUN_S // 60} minutes")
    return (f"the whole run takes about {duration(total)} {_device_words(dev.type)}: "
            + ("; ".join(tips) if tips else "fewer epochs would make it shorter"))


def _precision(dev: torch.device, arch: ArchConfig, t: TrainConfig) -> tuple[bool, float]:
    """(bf16?, its measured speed-up over the profile's fp32 rates) where precision.py has already
    chosen and measured (an estimate never waits for a measurement)."""
    from alexnet_viz.training.precision import known_speed
    c, speed = known_speed(dev, arch, t.precision if t.amp else "fp32", t.batch_size)
    return c is not None and c.dtype is not None, speed


def estimate_analysis(arch: ArchConfig, device: str | torch.device | None = None) -> Estimate:
    """Peak memory of one Explore analysis: every feature map kept, Grad-CAM's backward, the weights."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    fp = footprint(arch)
    parts = {
        "weights": fp.params * 4,
        "feature maps of every layer": fp.outputs,
        "Grad-CAM's forward and backward": fp.saved_eval + fp.work + fp.pair,
    }
    peak = sum(parts.values())
    budget = memory_budget(dev)
    biggest = max(parts, key=parts.get)
    if biggest == "weights":
        advice = f"lower the hidden widths or the channels ({fp.params:,} parameters)"
    else:
        advice = f"lower the input size or the channels of the first convs — {_largest_layer_words(arch, fp)}"
    seconds = 3 * _seconds_per_example(fp, device_profile(dev), train=False)
    return Estimate(int(peak), float(seconds), int(budget), peak <= budget, parts, biggest, advice,
                    "analysis", dev.type, 1, 1)


def _eval_per_image(arch: ArchConfig, fp: Footprint, amp: bool) -> int:
    """Bytes alive per image in a no-grad forward: a layer's input and output, and the batch."""
    return max((fp.pair_bf16 if amp else fp.pair) + 4 * (arch.in_channels * arch.input_size ** 2 + 28 * 28), 1)


def eval_batch_size(arch: ArchConfig, device: str | torch.device, amp: bool = False,
                    train_batch: int | None = None) -> int:
    """Evaluation's batch: as large as EVAL_BATCH (1000 for tiny inputs) while its memory stays within
    a quarter of the budget and, for a run, within what the training step itself used."""
    fp = footprint(arch)
    per_image = _eval_per_image(arch, fp, amp)
    limit = memory_budget(device) // 4
    if train_batch:  # never much more than the training step itself needed
        limit = min(limit, max((fp.saved_train + fp.work) * train_batch, 64 * 2**20))
    top = 1000 if arch.input_size <= 64 else EVAL_BATCH
    return max(1, min(top, limit // per_image))


__all__ = ["Estimate", "OverBudget", "estimate_training", "estimate_analysis", "memory_budget", "require_fits",
           "eval_batch_size", "parse_bytes", "device_profile", "footprint", "duration"]
