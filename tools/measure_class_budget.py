"""Measure what a class experiment costs on this machine: N seeds × the experiment's variants, queued
through the app's own JobManager (a process per run, the warm spare on, the test pass included).

    ALEXNET_VIZ_DATA=/work/shared/data python tools/measure_class_budget.py --batches 20 --seeds 2

Prints the estimate the Experiments page shows beside the measured wall time. Timings on a shared
machine are noisy: run it when the machine is otherwise idle.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from alexnet_viz.jobs.queue import JobManager
from alexnet_viz.training.experiments import EXPERIMENTS, Budget, planned_runs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="relu-vs-sigmoid")
    p.add_argument("--batches", type=int, default=20, help="max batches per epoch (the class budget)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("ALEXNET_VIZ_RUNS", tempfile.mkdtemp(prefix="class-measure-"))
    budget = Budget(args.epochs, args.batches, "cpu")
    plan = planned_runs([args.experiment], budget, list(range(args.seeds)))
    mgr = JobManager()
    ds = mgr.data()
    from alexnet_viz.training.classroom import estimate_class_seconds
    est = estimate_class_seconds(args.experiment, budget, args.seeds, len(ds.train_y), len(ds.test_y))
    t0 = time.perf_counter()
    jobs = [mgr.submit("measure", a, t, tags=tags) for a, t, tags in plan]
    while any(j.active for j in jobs):
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    accs = [j.epochs[-1]["test_acc"] for j in jobs if j.epochs]
    mgr.close()
    print(json.dumps({"experiment": args.experiment, "batches": args.batches, "epochs": args.epochs,
                      "seeds": args.seeds, "runs": len(jobs), "data": ds.source,
                      "states": sorted({j.state for j in jobs}), "estimated_s": round(est, 1),
                      "measured_s": round(wall, 1), "per_run_s": round(wall / len(jobs), 2),
                      "test_acc": [round(a, 3) for a in accs]}))


if __name__ == "__main__":
    main()
