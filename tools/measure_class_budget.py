"""Measure a class experiment on this machine: N students join, each seat's runs queue through the app's
own JobManager (a process per run, the warm spare on, the test pass included), all at once.

    ALEXNET_VIZ_DATA=/work/shared/data python tools/measure_class_budget.py --seeds 10

Prints the estimate the Experiments page shows for that many students beside the measured wall time,
and the pooled sentence. Timings on a shared machine are noisy: run it when the machine is otherwise
idle, or at real-time priority (`chrt -f 20`).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from alexnet_viz.jobs.queue import JobManager
from alexnet_viz.training import classroom
from alexnet_viz.training.experiments import Budget


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="relu-vs-sigmoid")
    p.add_argument("--batches", type=int, default=classroom.CLASS_BUDGET.max_batches, help="max batches per epoch")
    p.add_argument("--epochs", type=int, default=classroom.CLASS_BUDGET.epochs)
    p.add_argument("--seeds", type=int, default=10, help="students joining")
    args = p.parse_args()
    os.environ.setdefault("ALEXNET_VIZ_RUNS", tempfile.mkdtemp(prefix="class-measure-"))
    mgr = JobManager()
    ds = mgr.data()
    cls = classroom.start_class(args.experiment, Budget(args.epochs, args.batches, "auto"))
    est = classroom.estimate_class_seconds(cls.experiment, cls.budget, args.seeds, len(ds.train_y), len(ds.test_y),
                                           mgr.budget_bytes)
    t0 = time.perf_counter()
    jobs = []
    for i in range(args.seeds):
        seated, seed = classroom.join_class(cls.code, f"student{i}")
        jobs += classroom.queue_seat(mgr, seated, f"student{i}", seed)
    while any(j.active for j in jobs):
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    mgr.close()
    cls = classroom.load_class(cls.code)
    rows, sentence = classroom.pooled_summary(classroom.class_runs(cls), cls)
    print(json.dumps({"experiment": cls.experiment, "budget": vars(cls.budget), "seeds": args.seeds,
                      "runs": len(jobs), "data": ds.source, "states": sorted({j.state for j in jobs}),
                      "estimated_s": round(est, 1), "measured_s": round(wall, 1),
                      "per_run_s": round(wall / len(jobs), 2),
                      "pooled": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                      "sentence": sentence}))


if __name__ == "__main__":
    main()
