"""Training throughput: our pipeline vs d2l's `train_ch6` pipeline, and the share of the machine's peak.

Ours: the uint8 dataset on the device, batches made there, channels_last, and the precision that
precision.py chose for this machine (bf16 autocast where it measured faster). d2l's: DataLoader +
PIL Resize + ToTensor with 4 workers, fp32, the same network, batch, optimizer step and init.
The two are timed in alternating rounds in one process, so load from other work on the machine
hits both alike; the ratio is the figure to read. The peak is a big torch matmul timed in the
same run, in fp32 and bf16; a step's work is 3× the forward MACs × 2 FLOP (forward + backward).
"""
import os
import time

import torch

from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.data import load_fashion_mnist, pick_device
from alexnet_viz.model import build_model
from alexnet_viz.architect.summary import summarize
from alexnet_viz.training.engine import init_weights, make_optimizer, setup, train_step

from alexnet_viz.bench import print_table


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of the best of `reps` n×n matmuls in dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


class Timed:
    """A stream of batches and the step that eats them; `run(n)` times n steps."""

    def __init__(self, batches, model, opt, amp):
        self.it, self.model, self.opt, self.amp = iter(batches), model, opt, amp
        self.examples, self.seconds = 0, 0.0
        self.run(1, count=False)  # warm-up: kernels chosen, workers started

    def run(self, n: int, count: bool = True) -> None:
        x, y = next(self.it)
        _sync(x.device)
        t = time.perf_counter()
        for i in range(n):
            if i:
                x, y = next(self.it)  # fetching the batch is part of the pipeline's cost
            train_step(self.model, self.opt, x, y, self.amp)
        _sync(x.device)
        if count:
            self.examples += n * len(y)
            self.seconds += time.perf_counter() - t

    @property
    def rate(self) -> float:
        return self.examples / self.seconds


def _forever(make):
    while True:
        yield from make()


def d2l_pipeline(preset: str, t: TrainConfig, device: torch.device) -> Timed:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST
    cfg = get_preset(preset)
    tf = transforms.Compose([transforms.Resize(cfg.input_size), transforms.ToTensor()])
    ds = FashionMNIST(os.environ.get("ALEXNET_VIZ_DATA"), train=True, transform=tf, download=False)
    loader = DataLoader(ds, batch_size=t.batch_size, shuffle=True, num_workers=4, persistent_workers=True)
    torch.manual_seed(t.seed)
    model = build_model(cfg)
    init_weights(model)
    model = model.to(device)
    return Timed(((x.to(device), y.to(device)) for x, y in _forever(lambda: loader)), model,
                 make_optimizer(model, t), None)


def ours(preset: str, t: TrainConfig, ds) -> tuple[Timed, str, str]:
    model, opt, data, prec = setup(get_preset(preset), t, ds)
    gen = torch.Generator().manual_seed(0)
    return Timed(_forever(lambda: data.train_batches(t.batch_size, gen)), model, opt, prec.dtype), prec.name, prec.reason


def main(quick: bool = False) -> None:
    if not os.environ.get("ALEXNET_VIZ_DATA"):
        print("\n## train: skipped — set ALEXNET_VIZ_DATA to a folder holding FashionMNIST/raw "
              "(the d2l baseline reads it through torchvision)")
        return
    device = pick_device("auto")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    peak = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    ds = load_fashion_mnist()
    rows, reasons = [], []
    for preset, n, rounds in (("d2l", 1 if quick else (10 if device.type == "cuda" else 2), 2 if quick else 3),
                              ("mini28", 5 if quick else 25, 2 if quick else 4)):
        t = TrainConfig(batch_size=128, device=device.type)
        a, prec, why = ours(preset, t, ds)
        b = d2l_pipeline(preset, t, device)
        for _ in range(rounds):  # alternating rounds: both see the same load
            a.run(n)
            b.run(n)
        flop = 6 * summarize(get_preset(preset)).total_macs  # per image: forward + backward ≈ 3 × 2 × MACs
        rows.append((preset, prec, rounds * n, a.rate, b.rate, flop))
        reasons.append(f"{preset}: {why}")
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # the peak again after the training rounds: the higher of the two is the machine's, whatever the load did
    peak = {k: max(v, matmul_peak(torch.float32 if k == "fp32" else torch.bfloat16, device)) for k, v in peak.items()}
    rows = [[p, prec, n, f"{a:,.1f}", f"{b:,.1f}", f"{a / b:.2f}×",
             f"{a * flop / 1e9:,.0f} = {a * flop / 1e9 / peak[prec]:.0%} of {prec}",
             f"{b * flop / 1e9 / peak['fp32']:.0%} of fp32"] for p, prec, n, a, b, flop in rows]
    print_table(f"train: examples/sec, batch 128, {device}, {torch.get_num_threads()} threads, ours and d2l's "
                f"pipeline in alternating rounds (target at d2l: ≥ 1.5× on this CPU, ≥ 8× on GPU)",
                ["preset", "ours in", "batches", "ours ex/s", "d2l pipeline ex/s", "ratio", "ours GFLOP/s",
                 "d2l pipeline"], rows)
    print(f"matmul peak measured before and after (2048², best of 5): fp32 {peak['fp32']:,.0f} GFLOP/s, "
          f"bf16 {peak['bf16']:,.0f} GFLOP/s; load average {load0:.1f} before, {load1:.1f} after")
    for r in reasons:
        print(f"precision {r}")
