"""Build the runs that ship with the app (alexnet_viz/assets/runs/, see alexnet_viz/runs/examples.py).

    ALEXNET_VIZ_DATA=/path/to/data python tools/build_examples.py [--out alexnet_viz/assets/runs]

1. `mini28/`: a finished mini28 run on the full Fashion-MNIST — config, metrics, final weights (fp32,
   with Adam's moments in bf16, so that it can be resumed), snapshots (before training, steps 1, 4, 16, 64, 256, every
   epoch; stored in fp16), internals, test predictions, and its embedding's projections (of the full
   test set's 2,000 images and of the bundled sample's: Train's embedding view opens at once on either).
2. `relu-vs-sigmoid-*`: the ReLU-vs-sigmoid experiment of training/experiments.py at the Experiments
   page's default budget (one epoch a run), seeds 0 and 1: normal runs without snapshots, their
   weights the model alone in fp16.

Reproducible: fixed seeds, fp32 (no autocast), deterministic algorithms, a fixed number of CPU
threads and internals sampled every INTERNALS_EVERY steps (not at a measured interval). The same
machine and thread count give the same weights; another CPU gives the same figures to within
rounding. Only the timings (examples/s, elapsed) differ between builds.

`--embeddings-only` makes mini28's projections again in the runs already at --out (after a change to
the embedding view), training nothing.

Refuses to build from the bundled 12,000-image sample: the shipped network must be the real one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: the package beside it

import torch  # noqa: E402

from alexnet_viz.config import get_preset, default_training  # noqa: E402
from alexnet_viz.data import load_fashion_mnist, load_sample  # noqa: E402
from alexnet_viz.inspect.embedding import project_run  # noqa: E402
from alexnet_viz.runs.store import Run  # noqa: E402
from alexnet_viz.training import engine  # noqa: E402
from alexnet_viz.training.experiments import EXPERIMENTS, Budget, base_network, planned_runs  # noqa: E402

EPOCHS = 10            # mini28's epochs: its test accuracy passes 0.90 on the way (see the README)
SEED = 0
EXPERIMENT = "relu-vs-sigmoid"
EXPERIMENT_SEEDS = (0, 1)
EXPERIMENT_BUDGET = Budget(epochs=1, device="cpu")   # the Experiments page's default budget
INTERNALS_EVERY = 20   # steps between internals samples (a fixed interval: the same records every build)
THREADS = 2            # CPU threads: a different count may round differently
DATA_LABEL = "Fashion-MNIST, full (60,000 training and 10,000 test images)"
MAX_MINI28_MB, MAX_ALL_MB = 10, 15


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def full_data():
    ds = load_fashion_mnist()
    if ds.is_sample or len(ds.train_y) != 60_000 or len(ds.test_y) != 10_000:
        fail(f"only the bundled sample is available ({len(ds.train_y):,} training images; {ds.source}), and "
             f"the shipped network must be trained on the full Fashion-MNIST — set ALEXNET_VIZ_DATA to a folder "
             f"holding FashionMNIST/raw/ (e.g. ALEXNET_VIZ_DATA=../shared/data)")
    return ds


def deterministic(threads: int) -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def train_one(arch, t, ds, root: Path, tags: dict, say) -> Run:
    """One run through the normal engine into a new folder under `root`; exits if it does not finish."""
    run = Run.create(arch, t, DATA_LABEL, root, owner="", tags=tags)
    for r in engine.train(arch, t, ds, run=run, internals_every=INTERNALS_EVERY):
        if r.kind == "epoch":
            say(f"  epoch {r.epoch}: test acc {r.test_acc:.4f}, train loss {r.train_loss:.3f}, "
                f"{r.examples_per_sec:,.0f} examples/s")
        elif r.kind == "end" and r.status != "finished":
            fail(f"{arch.name}: {r.message}")
    return run


def _halve(state: dict) -> dict:
    """A model state with its floating tensors in fp16 (the loaders turn them back into fp32)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def finish(run: Run, name: str, out: Path) -> Path:
    """The run as shipped: no heartbeat, a status without a process, under its own name."""
    (run.path / "heartbeat").unlink(missing_ok=True)
    st = json.loads((run.path / "status.json").read_text())
    st.update(pid=None, pid_start=None, message="shipped with the app (tools/build_examples.py)")
    (run.path / "status.json").write_text(json.dumps(st))
    dest = out / name
    shutil.move(str(run.path), dest)
    return dest


def shrink_snapshots(run: Run) -> None:
    snaps = run.path / "snapshots"
    index = json.loads((snaps / "index.json").read_text())
    for s in index:
        f = snaps / s["file"]
        torch.save(_halve(torch.load(f, map_location="cpu", weights_only=True)), f)
        s["bytes"] = f.stat().st_size
    (snaps / "index.json").write_text(json.dumps(index, indent=1))


def optimizer_bf16(run: Run) -> None:
    """weights.pt with Adam's moments in bf16 (fp32's range, half its bytes): the model stays fp32,
    and a resumed run's optimizer casts the moments back to its parameters' fp32."""
    ck = torch.load(run.path / "weights.pt", map_location="cpu", weights_only=True)
    for state in ck["optimizer"].get("state", {}).values():
        for k, v in state.items():
            if k != "step" and torch.is_tensor(v) and v.is_floating_point():
                state[k] = v.to(torch.bfloat16)
    torch.save(ck, run.path / "weights.pt")


def model_only_fp16(run: Run) -> None:
    ck = torch.load(run.path / "weights.pt", map_location="cpu", weights_only=True)
    torch.save({"model": _halve(ck["model"]), "optimizer": {}, "epoch": ck["epoch"]}, run.path / "weights.pt")


def keep_embeddings(run_path: Path, ds, say) -> None:
    """The embedding view's projections of the run, kept in its folder, for the full data and the sample:
    made afresh (a kept one would be read back, and its key does not know the code that made it)."""
    for old in run_path.glob("embedding-*.npz"):
        old.unlink()
    for d in (ds, load_sample("shipped beside the full data's")):
        t = time.perf_counter()
        frames, _, idx = project_run(run_path, d, keep=True)
        say(f"  embedding: {len(idx):,} {'sample' if d.is_sample else 'full'} test images at {len(frames)} "
            f"snapshots in {time.perf_counter() - t:.1f} s")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sizes_by_kind(path: Path) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for f in path.rglob("*"):
        if f.is_file():
            kind = "snapshots" if f.parent.name == "snapshots" else f.name
            kinds[kind] = kinds.get(kind, 0) + f.stat().st_size
    return kinds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "alexnet_viz" / "assets" / "runs")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="mini28's epochs")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--embeddings-only", action="store_true", help="only make mini28's embedding projections again")
    a = p.parse_args(argv)
    ds = full_data()
    deterministic(a.threads)
    out = a.out.resolve()
    if a.embeddings_only:
        keep_embeddings(out / "mini28", ds, print)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))  # same disk: the swap is a rename
    new = work / "runs"
    new.mkdir()
    t0 = time.perf_counter()
    say = lambda text: print(f"[{time.perf_counter() - t0:6.0f} s] {text}", flush=True)  # noqa: E731
    try:
        arch = get_preset("mini28")
        t = replace(default_training("mini28"), epochs=a.epochs, precision="fp32", device="cpu", seed=SEED)
        say(f"mini28: {a.epochs} epochs, {t.optimizer} lr {t.lr:g}, batch {t.batch_size}, fp32, "
            f"{a.threads} threads, on {ds.source}")
        run = train_one(arch, t, ds, work, {}, say)
        shrink_snapshots(run)
        optimizer_bf16(run)
        mini = finish(run, "mini28", new)
        keep_embeddings(mini, ds, say)
        mini28_s = time.perf_counter() - t0
        exp = EXPERIMENTS[EXPERIMENT]
        plan = planned_runs([EXPERIMENT], EXPERIMENT_BUDGET, list(EXPERIMENT_SEEDS), base_network())
        say(f"{exp.title}: {len(plan)} runs of {EXPERIMENT_BUDGET.epochs} epoch(s)")
        for arch, t, tags in plan:
            t = replace(t, precision="fp32")
            say(f" {tags['variant']}, seed {tags['seed']}")
            run = train_one(arch, t, ds, work, {**tags, "set": "shipped"}, say)
            shutil.rmtree(run.path / "snapshots")
            model_only_fp16(run)
            finish(run, f"{EXPERIMENT}-{tags['variant'].lower()}-seed{tags['seed']}", new)
        total_s = time.perf_counter() - t0
        (new / "build.json").write_text(json.dumps(
            {"seconds": round(total_s, 1), "mini28_seconds": round(mini28_s, 1), "epochs": a.epochs,
             "threads": a.threads, "torch": torch.__version__, "built": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
        mini_mb, all_mb = folder_bytes(mini) / 2**20, folder_bytes(new) / 2**20
        if mini_mb > MAX_MINI28_MB or all_mb > MAX_ALL_MB:
            fail(f"too big: mini28 {mini_mb:.2f} MB (at most {MAX_MINI28_MB}), all {all_mb:.2f} MB "
                 f"(at most {MAX_ALL_MB}); nothing was replaced")
        if out.exists():
            shutil.move(str(out), work / "old")
        shutil.move(str(new), out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    acc = [json.loads(line) for line in (out / "mini28" / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in acc if r.get("kind") == "epoch"][-1]
    print(f"built in {total_s:.0f} s (mini28 {mini28_s:.0f} s) into {out}")
    print(f"mini28: test acc {final['test_acc']:.4f} after {final['epoch']} epochs, {mini_mb:.2f} MB")
    for kind, n in sorted(sizes_by_kind(out / "mini28").items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<16} {n / 2**20:6.2f} MB")
    for d in sorted(out.iterdir()):
        if d.is_dir() and d.name != "mini28":
            print(f"{d.name}: {folder_bytes(d) / 2**20:.2f} MB")
    print(f"all shipped runs: {all_mb:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
