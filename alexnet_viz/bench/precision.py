"""Does `--precision auto` pick the faster of fp32 and bf16 at the batch that runs?

For mini28 at each batch: the engine's own training steps (the dataset on the device, channels_last,
SGD) in fp32 and in bf16 autocast, timed in alternating rounds and each kept at its best round (load
from other work only slows a round down), beside what `auto` measured and chose there, from an
empty cache, and how long choosing took. Target: auto's examples/s within 10% of the faster one's.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

import torch

from alexnet_viz.bench import print_table
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.data import load_fashion_mnist
from alexnet_viz.training import precision
from alexnet_viz.training.engine import setup, train_step


def _best_rates(arch, t: TrainConfig, ds, rounds: int, steps: int) -> dict[str, float]:
    """Examples/s of the best of `rounds` rounds of `steps` training steps, fp32 and bf16 alternating."""
    model, opt, data, _ = setup(arch, replace(t, precision="fp32"), ds)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from data.train_batches(t.batch_size, gen)
    it = batches()
    best = {"fp32": 0.0, "bf16": 0.0}
    amps = {"fp32": None, "bf16": torch.bfloat16}
    for name in best:  # warm-up
        train_step(model, opt, *next(it), amps[name])
    for r in range(rounds):
        for name in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            xs = [next(it) for _ in range(steps)]  # batches made before the clock starts: both alike
            t0 = time.perf_counter()
            for x, y in xs:
                train_step(model, opt, x, y, amps[name])
            best[name] = max(best[name], steps * t.batch_size / (time.perf_counter() - t0))
    return best


def main(quick: bool = False) -> None:
    arch, ds = get_preset("mini28"), load_fashion_mnist()
    load0 = os.getloadavg()[0]
    rows = []
    old = os.environ.get("ALEXNET_VIZ_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ALEXNET_VIZ_CACHE"] = cache  # auto measures afresh, as on a new machine
        try:
            for batch in (16, 128):
                t = TrainConfig(batch_size=batch, device="cpu")
                t0 = time.perf_counter()
                choice = precision.choose("cpu", arch, "auto", batch)
                took = time.perf_counter() - t0
                _, auto_speedup = precision.known_speed("cpu", arch, "bf16", batch)
                steps = max(4, (512 if quick else 2048) // batch)
                best = _best_rates(arch, t, ds, 3 if quick else 6, steps)
                faster = max(best.values())
                rows.append([batch, f"{best['fp32']:,.0f}", f"{best['bf16']:,.0f}",
                             f"{best['bf16'] / best['fp32']:.2f}×", f"{auto_speedup:.2f}×", choice.name,
                             f"{took:.1f} s", f"{best[choice.name] / faster:.0%}"])
        finally:
            if old is None:
                os.environ.pop("ALEXNET_VIZ_CACHE", None)
            else:
                os.environ["ALEXNET_VIZ_CACHE"] = old
    print_table(f"precision: mini28 training examples/s on {precision.cpu_name()}, {torch.get_num_threads()} "
                f"threads, best of alternating rounds (target: auto's ≥ 90% of the faster)",
                ["batch", "fp32 ex/s", "bf16 ex/s", "bf16 speed-up", "auto measured", "auto chose",
                 "choosing took", "auto / faster"], rows)
    print(f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores shared: read the ratios)")
