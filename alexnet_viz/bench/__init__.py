"""Benchmarks: each prints our figure beside a baseline measured in the same run.

Run with `python -m alexnet_viz bench [summary|train|explore|estimate|internals|precision|photos|startup|classroom] [--quick]`.
"""
from __future__ import annotations

import importlib
import time


def timeit(fn, repeat: int, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}")
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
        if k == 0:
            print("  ".join("-" * x for x in w))


TRAINING = ("train", "precision", "internals")  # these hold freed memory from then on, as a training process


def run_benchmarks(which: list[str], quick: bool = False, classmates: int = 8) -> int:
    """The benchmarks named, in that order but the training ones last (the others measure what the
    server does, with glibc's allocator as the server has it)."""
    for name in sorted(which or ["summary", "explore", "train"], key=lambda n: n in TRAINING):
        if name in TRAINING:  # as the app's runs and the CLI's train do (engine.py): both sides of each figure alike
            from alexnet_viz.training.engine import hold_freed_memory
            hold_freed_memory()
        extra = {"classmates": classmates} if name == "classroom" else {}
        importlib.import_module(f"alexnet_viz.bench.{name}").main(quick=quick, **extra)
    return 0
