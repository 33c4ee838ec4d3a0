"""A stand-in for alexnet_viz/runs/examples.py (the shipped runs): a folder of example runs made in the
test's tmp folder, and a module with the same API registered in its place for the test's length."""
from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

from alexnet_viz.config import ArchConfig, ConvSpec, TrainConfig
from alexnet_viz.runs.store import Run
from alexnet_viz.training.experiments import Budget, planned_runs

TINY = ArchConfig(name="mini28", input_size=12, convs=(ConvSpec(4, 3, 1, 1, pool_kernel=2, pool_stride=2),),
                  hidden=(16,), dropout=0.0)
# made-up final figures of the shipped ReLU-vs-sigmoid set: (variant, seed) -> test acc
SHIPPED_ACC = {("ReLU", 0): 0.81, ("ReLU", 1): 0.83, ("sigmoid", 0): 0.41, ("sigmoid", 1): 0.45}


def trained_example(root: Path) -> Run:
    """A real (tiny, 2-batch) run on the bundled sample: metrics, internals, snapshots, weights, predictions."""
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.training.engine import train
    t = TrainConfig(epochs=1, batch_size=64, max_batches=2, device="cpu", lr=0.1)
    run = Run.create(TINY, t, "sample", root=root, owner="")
    list(train(TINY, t, load_fashion_mnist(), stop=threading.Event(), run=run))
    run.path.rename(root / "mini28")
    return Run(root / "mini28")


def finished_experiment(root: Path, name: str = "relu-vs-sigmoid", acc: dict = SHIPPED_ACC) -> list[Run]:
    """Runs of a finished set with made-up final records (no weights: the page reads their metrics only)."""
    runs = []
    for a, t, tags in planned_runs([name], Budget(1, 40, "cpu"), sorted({s for _, s in acc})):
        run = Run.create(a, t, "synthetic", root=root, owner="", tags={**tags, "set": "0shipped"})
        test_acc = acc[(tags["variant"], tags["seed"])]
        for step in (1, 2):
            run.append_metric({"kind": "step", "epoch": step / 2, "step": step, "loss": 1.0, "acc": 0.5,
                               "examples_per_sec": 900.0, "elapsed": step, "eta": 2 - step, "progress": step / 2})
        run.append_metric({"kind": "epoch", "epoch": 1, "train_loss": 1 - test_acc, "train_acc": test_acc,
                           "test_acc": test_acc, "examples_per_sec": 900.0, "elapsed": 2.0})
        run.set_status("finished", "trained 1 epoch(s)", epochs_done=1)
        runs.append(run)
    return runs


def install(root: Path, monkeypatch, trained: bool = True, experiment: bool = True) -> types.ModuleType:
    """Make the example runs under `root` and stand the fake module in for alexnet_viz.runs.examples."""
    root.mkdir(parents=True, exist_ok=True)
    mini = trained_example(root) if trained else None
    exp = finished_experiment(root / "experiment") if experiment else []
    listed = ([mini] if mini else []) + exp
    mod = types.ModuleType("alexnet_viz.runs.examples")
    mod.EXAMPLES = root
    mod.example_run = lambda: mini
    mod.example_runs = lambda: list(listed)
    mod.is_example = lambda path: any(Path(path).resolve() == r.path.resolve() for r in listed)
    monkeypatch.setitem(sys.modules, "alexnet_viz.runs.examples", mod)
    return mod



