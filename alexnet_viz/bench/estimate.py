"""The cost estimator against reality: predicted vs measured peak memory and seconds per epoch.

Every preset at batch 32/128/512 on this device. Each measurement runs in a fresh process (so its
peak RSS is its own): load the data, set up the run, take a few real training steps and one
evaluation batch, report `ru_maxrss` and the median step time (after two warm-up steps; at least a
second of steps for small nets); the epoch is that step time × steps per epoch plus the test pass
(timed over a few evaluation batches and scaled). Work the estimator says does not fit is refused,
as the app would refuse it, and shown so. The baseline (a fresh process with torch imported and the
data loaded, no model) is measured in the same run. The predicted time uses this device's rates
measured again in the same process right after the steps, each rate's fastest kept as the app keeps
them: it predicts a quiet machine, so run this on one (or under `chrt -f 20` where other work runs).
Targets: memory within ±30%, time within ±50%.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alexnet_viz.config import PRESETS, TrainConfig, default_training
from alexnet_viz.units import human

from alexnet_viz.bench import print_table

ROOT = Path(__file__).resolve().parent.parent


def child(preset: str, batch: int, steps: int) -> None:
    """In a fresh process: a few real steps; prints one JSON line."""
    import resource
    import statistics
    import time
    from dataclasses import replace

    import torch

    from alexnet_viz.cost.estimate import eval_batch_size
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.training.engine import setup, train_step
    ds = load_fashion_mnist()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if preset == "-":
        print(json.dumps({"rss": base}))
        return
    arch = PRESETS[preset]
    t = replace(default_training(preset), batch_size=batch)
    model, opt, data, prec = setup(arch, t, ds)
    amp = prec.dtype
    times = []
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i, (x, y) in enumerate(data.train_batches(batch, gen)):
        # at least `steps` timed steps after two warm-up ones, more for small nets: a second of them
        if i >= 2 + steps and (time.perf_counter() - start > 1.0 or i >= 60):
            break
        t0 = time.perf_counter()
        _, loss = train_step(model, opt, x, y, amp)
        loss.item()
        times.append(time.perf_counter() - t0)
    ebs = eval_batch_size(arch, data.device, amp is not None, batch)
    model.eval()
    eval_times = []
    with torch.no_grad():
        for i, (x, _) in enumerate(data.test_batches(ebs)):
            if i >= 2:
                break
            t0 = time.perf_counter()
            model(x).argmax(1)
            eval_times.append(time.perf_counter() - t0)
    step_s = statistics.median(times[2:])  # the first steps warm the allocator and oneDNN
    # the prediction from this device's rates measured here and now: the same load as the steps above
    from alexnet_viz.cost.estimate import estimate_training
    from alexnet_viz.cost.profile import device_profile
    device_profile(data.device, refresh=True)
    pred_s = estimate_training(arch, t, n_train=len(data.train_y), device=data.device,
                              n_test=len(data.test_y)).seconds_per_epoch
    per_epoch = data.steps_per_epoch(batch)
    eval_s = min(eval_times) * len(data.test_y) / ebs
    print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "base": base,
                      "step_s": step_s, "epoch_s": step_s * per_epoch + eval_s, "pred_s": pred_s,
                      "n_train": len(data.train_y)}))


def _spawn(preset: str, batch: int, steps: int) -> dict:
    code = f"from bench.estimate import child; child({preset!r}, {batch}, {steps})"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode:
        tail = (p.stderr.strip().splitlines() or ["killed"])[-1]
        return {"error": f"exit {p.returncode}: {tail[:80]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(quick: bool = False, only: tuple[str, ...] = ()) -> None:
    from alexnet_viz.cost.budget import memory_budget
    from alexnet_viz.cost.estimate import estimate_training
    from alexnet_viz.cost.profile import device_profile
    from alexnet_viz.data import load_fashion_mnist
    ds = load_fashion_mnist()
    n_train, n_test = len(ds.train_y), len(ds.test_y)
    base = _spawn("-", 0, 0)
    device_profile("cpu", refresh=True)  # this device's rates now, under the same load as the measurements
    batches = (32, 128) if quick else (32, 128, 512)
    small_first = ("mini28", "lenet5", "torchvision", "d2l", "alexnet2012")
    presets = ("mini28", "lenet5", "d2l") if quick else tuple(p for p in small_first if p in PRESETS)
    presets = tuple(p for p in presets if p in only) if only else presets
    steps = 2 if quick else 3
    rows = []
    for preset in presets:
        for b in batches:
            t = TrainConfig(**{**default_training(preset).to_dict(), "batch_size": b})
            est = estimate_training(PRESETS[preset], t, n_train=n_train, device="cpu", n_test=n_test)
            row = [preset, b, human(est.peak_memory_bytes, "B"), f"{est.seconds_per_epoch:,.0f}"]
            if not est.fits:
                rows.append(row + ["refused", "", "", "", f"does not fit: needs {human(est.peak_memory_bytes, 'B')}, "
                                   f"{human(est.available_bytes, 'B')} free"])
                continue
            m = _spawn(preset, b, steps)
            if "error" in m:
                rows.append(row + ["", "", "", "", m["error"]])
                continue
            row[3] = f"{m['pred_s']:,.0f}"
            rows.append(row + [human(m["rss"], "B"), f"{m['epoch_s']:,.0f}",
                               f"{est.peak_memory_bytes / m['rss']:.2f}", f"{m['pred_s'] / m['epoch_s']:.2f}", ""])
            print("  ".join(str(c) for c in rows[-1]), flush=True)  # a long run shows its progress
    print_table(f"estimate: predicted vs measured on this CPU ({n_train:,} training images; baseline: a fresh "
                f"process with torch and the data loaded = {human(base['rss'], 'B')} RSS; budget now "
                f"{human(memory_budget('cpu'), 'B')}; targets: memory ratio 0.7–1.3, time 0.5–1.5)",
                ["preset", "batch", "peak predicted", "s/epoch predicted", "peak measured", "s/epoch measured",
                 "memory ratio", "time ratio", "note"], rows)
