"""Job start-up: from Start to the run's first step on the chart, through the job manager the app uses.

Each job is a capped mini28 run on the CPU (the bundled sample offline, else Fashion-MNIST). The
app's way (each run's process forked from a fork server that imported torch when the manager started)
against a fresh interpreter per run (the "spawn" start method, which imports torch each time),
alternating, in the same run. The first step is reported at the first batch, so the figure is the wait
a user sees before the chart moves.
"""
from __future__ import annotations

import statistics
import time

from alexnet_viz.bench import print_table
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.jobs.queue import JobManager

SETTLE_S = 6.0  # at the start: the fork server imports torch (2-4 s on 2 cores) before the first job


def _first_step(mgr: JobManager) -> float:
    """Seconds from submit to the job's first Step record; the job then runs to its end."""
    t0 = time.perf_counter()
    job = mgr.submit("bench", get_preset("mini28"), TrainConfig(epochs=1, max_batches=8, device="cpu"))
    first = None
    while job.state in ("queued", "running"):
        if first is None and job.steps:
            first = time.perf_counter() - t0
        time.sleep(0.005)
    if job.state != "finished":
        raise SystemExit(f"bench startup: a job ended '{job.state}': {job.message}")
    return first if first is not None else time.perf_counter() - t0


def main(quick: bool = False) -> None:
    n = 2 if quick else 5
    warm, cold = JobManager(warm=True), JobManager(warm=False, start_method="spawn")
    try:
        for mgr in (warm, cold):
            mgr.data()
        time.sleep(SETTLE_S)  # as on a server that has been up a few seconds
        _first_step(cold)     # the estimator's first call (cached afterwards) is not start-up
        times = {"warm": [], "cold": []}
        for _ in range(n):
            for name, mgr in (("warm", warm), ("cold", cold)):
                times[name].append(_first_step(mgr))
                time.sleep(1.0)  # the last run's process ends
    finally:
        warm.close()
        cold.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print_table(f"Job start-up: Start to the first step (mini28, CPU, median of {n})",
                ["process", "median s", "slowest s", "target"],
                [["forked from the fork server (the app's)", f"{med['warm']:.2f}", f"{max(times['warm']):.2f}", "≤ 1 s"],
                 ["fresh interpreter per run, spawn (baseline)", f"{med['cold']:.2f}", f"{max(times['cold']):.2f}", ""]])
    print(f"speed-up: {med['cold'] / med['warm']:.1f}×")
