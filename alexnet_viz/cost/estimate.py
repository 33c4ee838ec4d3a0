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
rates are this device's profile (cost/profile.py); the budget an estimate is compared with is
cost/budget.py's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.config import ArchConfig, TrainConfig, batches_per_epoch, get_preset, preset_of
from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.cost.budget import memory_budget
from alexnet_viz.cost.profile import KINDS, RATE_OF_KIND, DeviceProfiles, conv_rate, device_profile
from alexnet_viz.data import pick_device
from alexnet_viz.model import build_model
from alexnet_viz.training.precision import known_speed
from alexnet_viz.units import duration, human

# Peak RSS of a fresh process after `import torch` (~530 MB with torch 2.15's CUDA build) and
# loading Fashion-MNIST through torchvision (~250 MB more at its peak), less the 55 MB dataset that
# is counted on its own; `python -m alexnet_viz bench estimate` measures it again as its baseline.
PROCESS_OVERHEAD = 720 * 2**20
CUDA_CONTEXT = 500 * 2**20     # a CUDA context with cuDNN/cuBLAS handles (torch's usual figure)
FASHION_TRAIN, FASHION_TEST = 60_000, 10_000
SLOW_RUN_S = 600               # a run longer than this gets advice on making it fast
EVAL_BATCH = 250               # evaluation's batch when memory is plentiful


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


def _device_words(device: str) -> str:
    return {"cpu": "on this CPU", "cuda": "on this GPU", "mps": "on this Mac's GPU"}.get(device, f"on {device}")


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


_SMOOTH = (nn.Sigmoid, nn.Tanh, nn.GELU)
_WINDOW = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
LRN_TEMPS = 4  # x², its padded copy, the window sums, their power: measured on alexnet2012 (~4.8 at batch 32)


def _kind(m: nn.Module) -> str:
    return ("smooth" if isinstance(m, _SMOOTH) else "window" if isinstance(m, _WINDOW)
            else "lrn" if isinstance(m, nn.LocalResponseNorm) else "stream")


@lru_cache(maxsize=64)
def footprint(arch: ArchConfig) -> Footprint:
    """Costs nothing: the network is built and run on the meta device."""
    model = build_model(arch, device="meta")
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


def _seconds_per_example(fp: Footprint, prof: dict, train: bool, speedup: float = 1.0) -> float:
    """Seconds of one example's forward (train=False) or forward + backward (train=True); bf16's
    speed-up applies to all but LRN, which autocast runs in fp32."""
    k = 1.0 if train else 1 / 3  # the rates were measured on forward + backward (3× the forward MACs)
    compute = (sum(macs * 3 / conv_rate(width, prof) for macs, width in fp.convs)
               + fp.linear_macs * 3 / prof["linear_macs_per_s"])
    # each elementwise layer: forward reads its input and writes its output, backward ~1.5× that
    memory = {kind: b * 2.5 / prof[RATE_OF_KIND[kind]] for kind, b in zip(KINDS, fp.elementwise)}
    lrn = memory.pop("lrn")
    return k * ((compute + sum(memory.values())) / speedup + lrn)


# --- the estimates -------------------------------------------------------------------------------
def _dataset_bytes(n_train: int, n_test: int) -> int:
    return (n_train + n_test) * (28 * 28 + 8)  # uint8 images, int64 labels


def _largest_layer_words(arch: ArchConfig, fp: Footprint) -> str:
    return f"{fp.largest_name}'s output is {human(fp.largest, 'B')} per image"


def estimate_training(arch: ArchConfig, t: TrainConfig, n_train: int = FASHION_TRAIN,
                      device: str | torch.device | None = None, n_test: int = FASHION_TEST,
                      profiles: DeviceProfiles | None = None) -> Estimate:
    """Peak memory of a training run of `arch` with `t`, its seconds per epoch, and whether it fits;
    the device's speed from `profiles` (this process's unless given)."""
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
    steps = batches_per_epoch(n_train, B, t.max_batches)
    prof = device_profile(dev, profiles=profiles)
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
        slow = seconds * t.epochs > SLOW_RUN_S
        advice = speed_advice(arch, t, step_s, eval_s, steps, dev, n_train, n_test, profiles) if slow else ""
    return Estimate(int(peak), float(seconds), int(budget), fits, parts, biggest, advice, "training",
                    dev.type, B, t.epochs)


def speed_advice(arch: ArchConfig, t: TrainConfig, step_s: float, eval_s: float, steps: int, dev: torch.device,
                 n_train: int = FASHION_TRAIN, n_test: int = FASHION_TEST,
                 profiles: DeviceProfiles | None = None) -> str:
    """What would bring a slow run (`steps` batches of `step_s` seconds an epoch, and a test pass of
    `eval_s`) under SLOW_RUN_S: mini28 on the same data, or a cap on batches per epoch that keeps
    the whole run, test passes included, within 80% of it."""
    total = (steps * step_s + eval_s) * t.epochs
    tips = []
    if preset_of(arch) != "mini28":
        m = estimate_training(get_preset("mini28"), TrainConfig(epochs=1, batch_size=128, amp=t.amp), n_train, dev,
                              n_test, profiles)
        tips.append(f"the mini28 network trains an epoch in about {duration(m.seconds_per_epoch)}")
    tips += _cap_tip(t.epochs, step_s, eval_s, steps)
    return (f"the whole run takes about {duration(total)} {_device_words(dev.type)}: "
            + ("; ".join(tips) if tips else "fewer epochs would make it shorter"))


def _cap_tip(epochs: int, step_s: float, eval_s: float, steps: int) -> list[str]:
    """A cap on batches per epoch that keeps the run, test passes included, within 80% of SLOW_RUN_S;
    with one epoch when the test passes of all of them alone would take longer. [] when no cap helps."""
    for n in dict.fromkeys((max(epochs, 1), 1)):
        cap = int((0.8 * SLOW_RUN_S / n - eval_s) / max(step_s, 1e-9))
        if 1 <= cap < steps:  # a cap at or above the epoch's batches would change nothing
            also = f", with {n} epoch{'s' if n > 1 else ''}," if n != epochs else ""
            return [f"a cap of {cap} batch{'es' if cap > 1 else ''} per epoch{also} keeps it under "
                    f"{SLOW_RUN_S // 60} minutes"]
    return []


def _precision(dev: torch.device, arch: ArchConfig, t: TrainConfig) -> tuple[bool, float]:
    """(bf16?, its measured speed-up over the profile's fp32 rates) where precision.py has already
    chosen and measured (an estimate never waits for a measurement)."""
    c, speed = known_speed(dev, arch, t.precision if t.amp else "fp32", t.batch_size)
    return c is not None and c.dtype is not None, speed


def estimate_analysis(arch: ArchConfig, device: str | torch.device | None = None,
                      profiles: DeviceProfiles | None = None) -> Estimate:
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
    seconds = 3 * _seconds_per_example(fp, device_profile(dev, profiles=profiles), train=False)
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


__all__ = ["Estimate", "Footprint", "estimate_training", "estimate_analysis", "eval_batch_size", "footprint",
           "speed_advice"]
