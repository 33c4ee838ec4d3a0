"""The internals' overhead: training step time with and without the engine's Probe (internals.py).

Same model, same batches, same optimizer step (train.train_step); blocks of steps with and without
the probe alternate, so a machine whose load changes slows both alike. The probe samples at the
interval it chooses itself (its cost within 5% of a plain step); the table gives the measured
overhead, the interval it settled on, and one sample's median cost. Synthetic uint8 images: step time does not depend
on what the pixels show. d2l runs at 224×224 for a few batches only (batch 16 on a CPU, 128 on CUDA).
"""
from __future__ import annotations

import time

import torch

from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.data import Dataset, pick_device
from alexnet_viz.training.internals import Probe
from alexnet_viz.training.engine import setup, train_step

from alexnet_viz.bench import print_table


def _synthetic(n: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset(x, y, x[:64], y[:64], source="synthetic", is_sample=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(preset: str, batch: int, blocks: int, per_block: int) -> dict:
    """Seconds a step without and with the probe: the median over alternating blocks of `per_block`
    steps (a block that another process slowed does not decide)."""
    t = TrainConfig(batch_size=batch, device="auto")
    model, opt, data, prec = setup(get_preset(preset), t, _synthetic(batch * 4))
    amp = prec.dtype
    gen = torch.Generator().manual_seed(0)
    batches = [b for _, b in zip(range(4), data.train_batches(batch, gen))]
    warm = Probe(model, every=1)  # warm-up: the first step, and a probe's one-time costs
    warm.before(1)
    train_step(model, opt, *batches[0], amp)
    warm.after(1, 0.0)
    probe, recs = Probe(model), []
    plain, probed = [], []   # seconds a step, one figure a block
    step = 0
    for k in range(2 * blocks):
        with_probe = k % 2 == 1
        _sync(data.device)
        t0 = time.perf_counter()
        for i in range(per_block):
            x, y = batches[i % len(batches)]
            if with_probe:
                step += 1
                probe.before(step)
            train_step(model, opt, x, y, amp)
            if with_probe and (r := probe.after(step, 0.0)) is not None:
                recs.append(r)
        _sync(data.device)
        (probed if with_probe else plain).append((time.perf_counter() - t0) / per_block)
    costs = sorted(r.cost_s for r in recs)
    def median(v):
        return sorted(v)[len(v) // 2]
    return {"plain": median(plain), "probed": median(probed), "every": recs[-1].every,
            "samples": len(recs), "cost": costs[len(costs) // 2], "device": data.device}


def main(quick: bool = False) -> None:
    device = pick_device("auto")
    big = 128 if device.type == "cuda" else 16
    rows = []
    for preset, batch, blocks, per in (("mini28", 128, 3 if quick else 7, 10 if quick else 20),
                                      ("d2l", big, 2 if quick else 5, 3 if quick else 5)):
        m = measure(preset, batch, blocks, per)
        rows.append([preset, str(m["device"]), batch, 2 * blocks * per, f"{m['plain'] * 1e3:,.1f}",
                     f"{m['probed'] * 1e3:,.1f}", f"{m['probed'] / m['plain'] - 1:+.1%}", m["every"],
                     f"{m['cost'] * 1e3:,.1f}", f"{m['cost'] / m['plain']:.0%}"])
    print_table(f"internals: ms per training step without and with the probe ({torch.get_num_threads()} threads; "
                f"target overhead ≤ 5%" + ("; --quick: a block of 3-10 steps holds 0-1 samples, too few to judge it"
                                           if quick else "") + ")",
                ["preset", "device", "batch", "steps", "plain ms", "with internals ms", "overhead", "every N",
                 "one sample ms (median)", "sample / step"], rows)
