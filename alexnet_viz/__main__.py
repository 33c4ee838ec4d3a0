"""The command line: python -m alexnet_viz summary|estimate|train|predict|bench."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from alexnet_viz.config import PRESETS, ArchConfig, ConfigError, TrainConfig, default_training, get_preset
from alexnet_viz.units import MB, human, megabytes

CONFIG_MAX_BYTES = 1 * MB  # a network JSON is a few kB


def _whole(lo: int):
    """An argparse type: a whole number >= lo, checked when the command line is parsed."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo} (got {v})")
        return v
    parse.__name__ = f"whole number >= {lo}"
    return parse


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text})")
    return v


def _network(a) -> ArchConfig:
    """--config FILE (a JSON exported from the Architect page) or --preset NAME."""
    if getattr(a, "config", None):
        try:
            with open(a.config, "rb") as f:
                raw = f.read(CONFIG_MAX_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"cannot read {a.config}: {e.strerror or e}") from None
        if len(raw) > CONFIG_MAX_BYTES:
            raise ConfigError(f"{a.config} is larger than {megabytes(CONFIG_MAX_BYTES)}: not a network JSON")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{a.config} is not UTF-8 text (byte {e.start}) — export the network again "
                              f"from the Architect page") from None
        return ArchConfig.from_json(text)
    return get_preset(a.preset)


def _changes(a) -> dict:
    """The training settings given on the command line."""
    return {k: v for k, v in dict(epochs=a.epochs, max_batches=getattr(a, "max_batches", None),
                                  device=a.device, batch_size=a.batch_size, lr=getattr(a, "lr", None),
                                  optimizer=getattr(a, "optimizer", None), seed=getattr(a, "seed", None),
                                  precision=getattr(a, "precision", None)).items() if v is not None}


def _training(a, arch: ArchConfig) -> TrainConfig:
    """The preset's training settings with the command line's changes (validated by TrainConfig)."""
    return replace(default_training(arch), **_changes(a))


def _estimate(a) -> int:
    from alexnet_viz.cost.estimate import estimate_training
    from alexnet_viz.data import check_device
    arch = _network(a)
    t = _training(a, arch)
    est = estimate_training(arch, t, device=check_device(t.device))
    if a.json:
        print(json.dumps(est.to_dict()))
    else:
        print(est.message())
        if est.fits and est.advice:
            print(est.advice)
    return 0 if est.fits else 2


def _summary(a) -> int:
    from alexnet_viz.architect.summary import describe_layers, summarize, table
    s = summarize(_network(a))
    if a.json:
        print(json.dumps(s.to_dict()))
        return 0
    if a.explain:
        print("\n".join(describe_layers(s)))
        return 0
    rows = table(s)
    cols = list(rows[0])
    width = {c: max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join((f"{r[c]:,}".rjust(width[c]) if isinstance(r[c], int) else str(r[c]).ljust(width[c]))
                        for c in cols))
    print(f"total: {s.total_params:,} parameters, {human(s.total_macs)}MACs per image, "
          f"{human(s.total_memory, 'B')} of activations per image")
    return 0


def _bar(frac: float, width: int = 30) -> str:
    n = int(frac * width)
    return "[" + "#" * n + "." * (width - n) + "]"


def _train(a) -> int:
    from alexnet_viz.training import distributed
    from alexnet_viz.cost.budget import require_fits
    from alexnet_viz.cost.estimate import estimate_training
    from alexnet_viz.data import check_device, load_fashion_mnist
    from alexnet_viz.runs.examples import copy_example
    from alexnet_viz.runs.store import Run, RunError
    from alexnet_viz.training.engine import hold_freed_memory, train
    hold_freed_memory()  # this process trains, then ends
    resume = Run(a.resume) if a.resume else None
    try:  # --resume: the run's own network and settings, with the command line's changes
        arch, t, _ = resume.config() if resume else (_network(a), None, None)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t = replace(t, **_changes(a)) if resume else _training(a, arch)
    ctx = distributed.context(t.device)  # under torchrun: this rank; rank 0 alone prints and writes
    # every refusal comes before the data, the model and the run folder exist
    est = require_fits(estimate_training(arch, t, device=check_device(t.device)))
    if ctx.is_main:
        print(f"estimate: {est.message()}", file=sys.stderr)
    ds = load_fashion_mnist()
    last_epoch, end, precision, stop = None, None, None, threading.Event()

    def on_ctrl_c(*_):  # first Ctrl-C: stop after this batch and save; a second one aborts
        if ctx.is_main:
            print("\nstopping after this batch… (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        if ctx.world == 1:  # under torchrun each rank gets the terminal's Ctrl-C and torchrun's copy of it
            signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGINT, on_ctrl_c)
    if not ctx.is_main:
        try:
            end = [r for r in train(arch, t, ds, stop=stop, resume=resume) if r.kind == "end"]
        finally:
            distributed.close()
        return 0 if end and end[-1].status == "finished" else 1
    if ds.is_sample:
        print(f"note: using the {ds.source}", file=sys.stderr)
    try:
        if resume and resume.example:  # a shipped run never changes: a copy of it goes on
            resume = copy_example(resume.path, Path(a.run_dir) if a.run_dir else None)
            print(f"{a.resume} is an example shipped with the app: resuming a copy of it, {resume.path}",
                  file=sys.stderr)
        if resume:  # the same folder goes on: its metrics, then the new epochs after them
            run = resume
            run.set_train(t)
            run.set_status("running", epochs_done=float(resume.checkpoint().get("epoch", 0)))
        else:
            run = Run.create(arch, t, ds.source, Path(a.run_dir) if a.run_dir else None)
    except (RunError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        distributed.close()
        return 1
    if ctx.world > 1:
        print(f"torchrun: {ctx.world} processes ({ctx.backend}), global batch {t.batch_size}", file=sys.stderr)
    try:
        with run.heartbeat():  # seen as dead soon after a kill, even if its pid goes to another program
            for r in train(arch, t, ds, stop=stop, run=run, resume=resume):
                if r.kind == "precision":
                    precision = r
                    print(f"precision on {r.device}: {r.reason}", file=sys.stderr)
                elif r.kind == "step":
                    print(f"\r{_bar(r.progress)} epoch {r.epoch:5.2f}  loss {r.loss:.3f}  acc {r.acc:.3f}  "
                          f"{r.examples_per_sec:,.0f} ex/s  ETA {r.eta:4.0f}s ", end="", file=sys.stderr, flush=True)
                elif r.kind == "epoch":
                    last_epoch = r
                    print(f"\repoch {r.epoch}: train loss {r.train_loss:.3f}, train acc {r.train_acc:.3f}, "
                          f"test acc {r.test_acc:.3f}, {r.examples_per_sec:,.0f} examples/sec" + " " * 20,
                          file=sys.stderr)
                elif r.kind == "end":
                    end = r
    except KeyboardInterrupt:
        print("\naborted; the run keeps its last saved epoch", file=sys.stderr)
    finally:
        distributed.close()
    print(f"{end.status if end else 'stopped'}: {end.message if end else ''} — run saved in {run.path}",
          file=sys.stderr)
    if a.json:
        out = {"status": end.status if end else "stopped", "run_dir": str(run.path), "data": ds.source}
        if precision:
            out |= {"precision": precision.dtype, "precision_reason": precision.reason}
        if last_epoch:
            out |= {"test_acc": last_epoch.test_acc, "train_loss": last_epoch.train_loss,
                    "train_acc": last_epoch.train_acc, "examples_per_sec": last_epoch.examples_per_sec,
                    "elapsed_s": last_epoch.elapsed}
        print(json.dumps(out))
    return 0 if end and end.status == "finished" else 1


def _shipped_model():
    """The trained mini28 that ships with the app, named as such (see runs/examples.py)."""
    from alexnet_viz.inspect.analysis import ModelUnavailable, from_run
    from alexnet_viz.runs.examples import EXAMPLES, example_run
    run = example_run()
    if run is None:
        raise ModelUnavailable(f"no model given, and this copy of the app has no shipped network "
                               f"({EXAMPLES / 'mini28'}) — say which model: --run DIR, --pretrained or "
                               f"--untrained --preset NAME")
    m = from_run(run.path)
    epochs = [r for r in run.metrics() if r.get("kind") == "epoch"]
    acc = f", test accuracy {epochs[-1]['test_acc']:.3f}" if epochs else ""
    return replace(m, label=f"the shipped mini28, trained on Fashion-MNIST ({run.path}{acc})")


def _predict(a) -> int:
    """Each image in the order given, one result (or one error line) each; exit 1 if any failed."""
    from alexnet_viz.inspect.analysis import ModelUnavailable, from_run, predict, pretrained, untrained
    from alexnet_viz.inspect.images import ImageError, load_image
    try:
        if a.pretrained:
            m = pretrained()
        elif a.untrained:
            m = untrained(_network(a))
        elif a.run:
            m = from_run(a.run, a.at)
        else:
            m = _shipped_model()
    except (ModelUnavailable, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not a.json:
        print(f"model: {m.label}")
    failed = 0
    for image in a.images:
        try:
            top = predict(m, load_image(image), invert=a.invert, k=a.topk)
        except ImageError as e:  # this image's error in its place; the others still get their answer
            failed += 1
            if a.json:
                print(json.dumps({"image": image, "error": str(e)}), flush=True)
            else:
                print(f"error: {image}: {e}", file=sys.stderr, flush=True)
            continue
        if a.json:
            print(json.dumps({"image": image, "model": m.label,
                              "predictions": [{"class": c, "prob": p} for c, p in top]}), flush=True)
        else:
            print(f"{image}:")
            for c, p in top:
                print(f"  {p:6.1%}  {c}")
            sys.stdout.flush()
    return 1 if failed else 0


def _bench(a) -> int:
    from alexnet_viz.bench import run_benchmarks
    return run_benchmarks(a.which, quick=a.quick, classmates=a.classmates)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m alexnet_viz", description="AlexNet Explorer from the command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="per-layer table of a preset")
    s.add_argument("--preset", default="d2l", choices=PRESETS)
    s.add_argument("--config", help="a network JSON exported from the Architect page (instead of --preset)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--explain", action="store_true", help="one sentence per layer instead of the table")
    t = sub.add_parser("train", help="train a preset on Fashion-MNIST")
    t.add_argument("--preset", default="mini28", choices=PRESETS)
    t.add_argument("--config", help="a network JSON exported from the Architect page (instead of --preset)")
    t.add_argument("--epochs", type=_whole(1))
    t.add_argument("--max-batches", type=_whole(0), help="cap on batches per epoch (quick demo)")
    t.add_argument("--batch-size", type=_whole(1))
    t.add_argument("--lr", type=_positive)
    t.add_argument("--optimizer", choices=("sgd", "momentum", "adam"))
    t.add_argument("--seed", type=_whole(0))
    t.add_argument("--device", help="auto | cuda | mps | cpu")
    t.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto (default): bf16 where a short measurement on this machine says it pays")
    t.add_argument("--resume", metavar="RUN", help="a run folder to go on training (to --epochs in all), in place")
    t.add_argument("--run-dir", help="folder to keep the run in (default: ./runs or $ALEXNET_VIZ_RUNS)")
    t.add_argument("--json", action="store_true")
    e = sub.add_parser("estimate", help="peak memory and time per epoch of a training run, before it starts")
    e.add_argument("--preset", default="mini28", choices=PRESETS)
    e.add_argument("--config", help="a network JSON exported from the Architect page (instead of --preset)")
    e.add_argument("--batch-size", type=_whole(1))
    e.add_argument("--epochs", type=_whole(1))
    e.add_argument("--device", help="auto | cuda | mps | cpu")
    e.add_argument("--json", action="store_true")
    r = sub.add_parser("predict", help="top-k predictions for images (by default from the shipped trained mini28)")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="one or more image files, answered in this order")
    r.add_argument("--run", help="a run folder (default: the trained mini28 shipped with the app)")
    r.add_argument("--at", help="with --run: a snapshot, by epoch (0 = before training, 0.5, 3) or by label "
                                "('step 16'); the nearest kept one is used. Default: the final weights")
    r.add_argument("--pretrained", action="store_true", help="torchvision's ImageNet AlexNet")
    r.add_argument("--untrained", action="store_true")
    r.add_argument("--preset", default="d2l", choices=PRESETS)
    r.add_argument("--config", help="with --untrained: a network JSON instead of --preset")
    r.add_argument("--topk", type=_whole(1), default=5)
    r.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="invert brightness (default: for Fashion-MNIST models, when the background is light)")
    r.add_argument("--json", action="store_true", help="one JSON line per image, in the order given")
    b = sub.add_parser("bench", help="benchmarks, each beside its baseline")
    b.add_argument("which", nargs="*", choices=["summary", "train", "explore", "estimate", "internals", "classroom",
                                                "precision", "photos", "startup", []], default=[])
    b.add_argument("--quick", action="store_true", help="fewer repeats (for CI smoke runs)")
    b.add_argument("--classmates", type=int, default=8, help="bench classroom: browser sessions beside the probe")
    a = p.parse_args(argv)
    try:
        return {"summary": _summary, "estimate": _estimate, "train": _train, "predict": _predict,
                "bench": _bench}[a.cmd](a)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
