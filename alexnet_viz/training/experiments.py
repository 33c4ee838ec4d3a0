"""What did AlexNet change? One-factor experiments from a base network, and what their numbers say.

Each experiment is a list of variants made from the base by a pure function, trained with the
same budget and seeds. The summary sentence is computed from the final figures and is hedged when
the gap is within seed noise. Also: what a set of runs costs and how long it has left, what differs
between two saved configs, what a finished run got wrong (for the confusion matrix), which preset a
network is, and d2l's published figures for a run of d2l's own recipe. No streamlit.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from alexnet_viz.config import ArchConfig, TrainConfig, batches_per_epoch, default_training, get_preset, preset_of
from alexnet_viz.cost.estimate import estimate_training
from alexnet_viz.data import CLASSES
from alexnet_viz.training.engine import confusion
from alexnet_viz.units import duration

Change = Callable[[ArchConfig, TrainConfig], tuple[ArchConfig, TrainConfig]]

# d2l's AlexNet chapter (Fashion-MNIST at 224×224, batch 128, SGD lr 0.01, 10 epochs) reports these.
D2L_REFERENCE = {"epoch": 10, "train_loss": 0.331, "train_acc": 0.878, "test_acc": 0.883}


@dataclass(frozen=True)
class Variant:
    label: str       # shown in the legend and the table, e.g. "sigmoid"
    change: Change   # base (arch, training) -> this variant's


@dataclass(frozen=True)
class Experiment:
    name: str                        # slug, kept in each run's tags
    title: str                       # "ReLU vs sigmoid"
    question: str                    # what AlexNet changed, in a sentence
    variants: tuple[Variant, ...]    # the first one is the base network


@dataclass(frozen=True)
class Budget:
    epochs: int = 1          # per run
    max_batches: int = 0     # cap per epoch (0 = the whole training set)
    device: str = "auto"     # as TrainConfig.device


def _same(a, t):
    return a, t


def _convs(**changes) -> Change:
    """Every conv block changed alike (only pooled blocks for pooling changes)."""
    pooling = any(k.startswith("pool") for k in changes)

    def change(a: ArchConfig, t: TrainConfig):
        convs = tuple(replace(c, **changes) if not pooling or c.pool != "none" else c for c in a.convs)
        return replace(a, convs=convs), t
    return change


def _sigmoid(a, t):
    a, t = _convs(activation="sigmoid")(a, t)
    return replace(a, fc_activation="sigmoid"), t


def _lenet(a, t):
    return get_preset("lenet5"), t


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("relu-vs-sigmoid", "ReLU vs sigmoid",
               "AlexNet replaced LeNet's sigmoid with ReLU, whose gradient does not vanish for large inputs.",
               (Variant("ReLU", _same), Variant("sigmoid", _sigmoid))),
    Experiment("dropout", "Dropout vs none",
               "AlexNet added dropout to its fully connected layers to fight overfitting.",
               (Variant("dropout", _same), Variant("no dropout", lambda a, t: (replace(a, dropout=0.0), t)))),
    Experiment("max-vs-avg-pool", "Max vs average pooling",
               "AlexNet pooled with max where LeNet averaged.",
               (Variant("max pool", _same), Variant("average pool", _convs(pool="avg")))),
    Experiment("overlapping-pool", "Overlapping vs non-overlapping pooling",
               "AlexNet's pooling windows overlap (3×3, stride 2); the paper says this cut its error a little.",
               (Variant("overlapping 3/2", _same), Variant("non-overlapping 2/2", _convs(pool_kernel=2, pool_stride=2)))),
    Experiment("normalization", "LRN vs BatchNorm vs none",
               "AlexNet used local response normalization; BatchNorm (2015) later replaced it.",
               (Variant("BatchNorm", _convs(norm="batchnorm")), Variant("LRN", _convs(norm="lrn")),
                Variant("no normalization", _convs(norm="none")))),
    Experiment("augmentation", "Augmentation vs none",
               "AlexNet trained on random crops and flips, so it saw a new version of each image every epoch.",
               (Variant("no augmentation", lambda a, t: (a, replace(t, augment=False))),
                Variant("crop + flip", lambda a, t: (a, replace(t, augment=True))))),
    Experiment("lenet-vs-alexnet", "LeNet-5 vs the AlexNet-style net",
               "Everything at once: LeNet-5 (1998) against an AlexNet-shaped network of the same input size.",
               (Variant("AlexNet-style", _same), Variant("LeNet-5", _lenet))),
)}


def base_network(preset: str = "mini28") -> tuple[ArchConfig, TrainConfig]:
    """The network every variant starts from, with its usual training settings."""
    return get_preset(preset), default_training(preset)


def variant_configs(exp: Experiment, base: tuple[ArchConfig, TrainConfig], budget: Budget,
                    seed: int) -> list[tuple[str, ArchConfig, TrainConfig]]:
    """(label, arch, training) of each variant: the same budget and seed for all."""
    out = []
    for v in exp.variants:
        a, t = v.change(*base)
        t = replace(t, epochs=budget.epochs, max_batches=budget.max_batches, device=budget.device, seed=seed)
        a = replace(a, name=f"{a.name.split(' ')[0]} {v.label}")
        out.append((v.label, a, t))
    return out


def planned_runs(names: list[str], budget: Budget, seeds: list[int],
                 base: tuple[ArchConfig, TrainConfig] | None = None) -> list[tuple[ArchConfig, TrainConfig, dict]]:
    """Every (arch, training, tags) to train. A config that several experiments share (the base
    network is in all of them) is trained once per seed; its tags list every experiment it serves."""
    base = base or base_network()
    plan: dict[tuple, tuple[ArchConfig, TrainConfig, dict]] = {}
    for seed in seeds:
        for name in names:
            for label, a, t in variant_configs(EXPERIMENTS[name], base, budget, seed):
                key = (replace(a, name=""), t)
                if key in plan:
                    plan[key][2]["experiments"][name] = label
                else:
                    plan[key] = (a, t, {"experiment": name, "variant": label, "seed": seed,
                                        "experiments": {name: label}})
    return list(plan.values())


def queue_experiment(manager, owner: str, name: str, budget: Budget, seeds: list[int],
                     base: tuple[ArchConfig, TrainConfig] | None = None) -> list:
    """Submit every run of experiment `name` ("all" = every experiment) to the job manager."""
    names = list(EXPERIMENTS) if name == "all" else [name]
    for n in names:
        if n not in EXPERIMENTS:
            raise KeyError(f"unknown experiment {n!r}; choose from all, {', '.join(EXPERIMENTS)}")
    batch = f"{int(time.time() * 1000):x}"  # one id per click, so a later set with another budget stays apart
    return [manager.submit(owner, a, t, tags={**tags, "set": batch})
            for a, t, tags in planned_runs(names, budget, sorted(set(seeds)), base)]


# --- what a set costs, and how long it has left ----------------------------------------------------

def estimate_set_seconds(plan: list, n_train: int, n_test: int) -> float:
    """The cost model's seconds for every run of `plan` ((arch, training, tags) triples), one after another."""
    return sum(estimate_training(a, t, n_train=n_train, n_test=n_test).run_seconds for a, t, _ in plan)


def describe_set_cost(plan: list, n_train: int, n_test: int) -> str:
    """The whole set's size and time on this machine, in one line for the page."""
    batches = sum(t.epochs * batches_per_epoch(n_train, t.batch_size, t.max_batches) for _, t, _ in plan)
    seconds = estimate_set_seconds(plan, n_train, n_test)
    return (f"{len(plan)} runs, {batches:,} training batches in all: about {duration(seconds)} on this "
            f"machine, one run after another (estimated).")


def seconds_left(paces: list[float], left: list[TrainConfig], n_train: int) -> float | None:
    """Seconds the runs still to train (`left`) take at the mean measured pace (examples per second)
    of the finished ones; None before any has finished, or when none is left."""
    if not paces or not left:
        return None
    todo = sum(t.epochs * min(n_train, batches_per_epoch(n_train, t.batch_size, t.max_batches) * t.batch_size)
               for t in left)
    return todo / statistics.fmean(paces)


def experiment_runs(runs: list, name: str) -> list:
    """The runs of the newest set queued for experiment `name` (runs carry `.tags`). The user's own
    sets come first: the set shipped with the app (runs marked `.example`) answers only until one
    of them exists."""
    labels = {v.label for v in EXPERIMENTS[name].variants}

    def ours(r) -> bool:  # tags come from a file anyone may edit: odd ones leave the run out
        ex, set_id = r.tags.get("experiments"), r.tags.get("set", "")
        return (r.state != "damaged" and isinstance(ex, dict) and isinstance(set_id, str)
                and isinstance(ex.get(name), str) and ex[name] in labels)
    mine = [r for r in runs if isinstance(r.tags, dict) and ours(r)]
    own = [r for r in mine if not getattr(r, "example", False)]
    mine = own or mine
    if not mine:
        return []
    newest = max(r.tags.get("set", "") for r in mine)
    return [r for r in mine if r.tags.get("set", "") == newest]


def describe_budget(runs: list) -> str:
    """The budget a set of runs was trained with, in words: "2 seeds, 1 epoch of at most 40 batches"."""
    trains = [r.config.get("train") or {} for r in runs]
    seeds = len({r.tags.get("seed") for r in runs})
    epochs = sorted({t.get("epochs") for t in trains if isinstance(t.get("epochs"), int)})
    caps = sorted({t.get("max_batches") for t in trains if isinstance(t.get("max_batches"), int)})
    words = f"{seeds} seed{'s' if seeds != 1 else ''}"
    if len(epochs) == 1:
        words += f", {epochs[0]} epoch{'s' if epochs[0] != 1 else ''}"
        if len(caps) == 1:
            words += f" of at most {caps[0]:,} batches" if caps[0] else " of the whole training set"
    return words


def collect_results(runs: list, name: str) -> dict[str, list[dict]]:
    """Variant label -> final epoch record of each finished seed, in the experiment's variant order."""
    order = [v.label for v in EXPERIMENTS[name].variants]
    out: dict[str, list[dict]] = {label: [] for label in order}
    for r in experiment_runs(runs, name):
        label = r.tags["experiments"][name]
        if r.state == "finished" and r.epochs and label in out:
            out[label].append(r.epochs[-1])
    return {k: v for k, v in out.items() if v}


def _spread(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) >= 2 else None


def seed_noise(stats: list[dict]) -> float | None:
    """Twice the largest seed standard deviation of summarize_experiment's rows: a gap up to this is
    seed noise. None while a variant has a single seed (its noise is unknown)."""
    sds = [s["± (seed sd)"] for s in stats]
    return None if not sds or any(sd is None for sd in sds) else 2 * max(sds)


def summarize_experiment(results: dict[str, list[dict]]) -> tuple[list[dict], str]:
    """Table rows (one per variant, the first is the base) and one sentence that follows the numbers.

    `results` maps a variant's label to the final Epoch record of each seed. The sentence compares
    the best variant with the runner-up on test accuracy; a gap of at most twice the largest seed
    standard deviation is called seed noise, and with one seed a variant's noise is unknown.
    """
    if not results:
        return [], "No finished runs yet."
    stats = []
    for label, recs in results.items():
        acc = [r["test_acc"] for r in recs]
        stats.append({"variant": label, "seeds": len(recs), "test acc": statistics.fmean(acc),
                      "± (seed sd)": _spread(acc),
                      "train loss": statistics.fmean(r["train_loss"] for r in recs),
                      "train acc": statistics.fmean(r["train_acc"] for r in recs)})
    base = stats[0]
    for s in stats:
        s["Δ test acc vs " + base["variant"]] = s["test acc"] - base["test acc"]
    if len(stats) == 1:
        return stats, f"Only {base['variant']} has finished so far (test acc {base['test acc']:.3f})."
    ranked = sorted(stats, key=lambda s: s["test acc"], reverse=True)
    best, runner = ranked[0], ranked[1]
    gap = best["test acc"] - runner["test acc"]
    figures = f"{best['variant']} {best['test acc']:.3f} vs {runner['variant']} {runner['test acc']:.3f}"
    rest = "".join(f"; {s['variant']} {s['test acc']:.3f}" for s in ranked[2:])
    noise = seed_noise(stats)
    if noise is None:
        seeds = min(s["seeds"] for s in stats)
        return stats, (f"{best['variant']} reached the highest test accuracy ({figures}{rest}), ahead by "
                       f"{gap:.3f} — but from {seeds} seed only, the seed noise is unknown: run 2 or more "
                       f"seeds before reading much into it.")
    if gap <= noise:
        return stats, (f"{best['variant']} and {runner['variant']} are within seed noise ({figures}{rest}): "
                       f"the gap of {gap:.3f} is no more than twice the seed spread ({noise:.3f}), so this "
                       f"budget does not separate them.")
    return stats, (f"{best['variant']} beat {runner['variant']} on test accuracy ({figures}{rest}): a gap of "
                   f"{gap:.3f}, more than twice the seed spread ({noise:.3f}).")


# --- what differs between two configs ------------------------------------------------------------

def flat_settings(cfg: dict) -> dict[str, object]:
    """A run's config.json (`{"arch", "train", ...}`) as flat "field: value" pairs, e.g. "conv2.pool"."""
    out: dict[str, object] = {}
    arch = dict(cfg.get("arch", {}))
    arch.pop("version", None)
    convs = arch.pop("convs", []) or []
    for k, v in arch.items():
        out[k if k != "name" else "network"] = tuple(v) if isinstance(v, list) else v
    for i, c in enumerate(convs, 1):
        for k, v in c.items():
            out[f"conv{i}.{k}"] = v
    for k, v in (cfg.get("train") or {}).items():
        out[k] = v
    return out


def diff_configs(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(setting, value in a, value in b) for every architecture or training setting that differs;
    a setting one config lacks (a conv block the other has not) shows as None."""
    fa, fb = flat_settings(a), flat_settings(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def distinguishing_labels(configs: list[dict], most: int = 4) -> list[str]:
    """For each config, the settings whose values are not the same across all of them (up to `most`)."""
    flats = [flat_settings(c) for c in configs]
    keys = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1 and k != "network"]
    if any(f.get(k) is None for k in varying for f in flats):  # block counts differ: say so, not each field
        blocks = [sum(k.endswith(".kernel") for k in f) for f in flats]
        varying = [k for k in varying if all(f.get(k) is not None for f in flats)]
        for f, n in zip(flats, blocks):
            f["conv blocks"] = n
        varying.insert(0, "conv blocks")
    varying.sort(key=lambda k: k.startswith("conv") and k != "conv blocks")  # whole-network settings first
    out = []
    for f in flats:
        parts = [f"{k} {_as_text(f.get(k))}" for k in varying[:most]]
        if len(varying) > most:
            parts.append("…")
        out.append(" · ".join(parts))
    return out


def _as_text(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "×".join(str(x) for x in v)
    return "—" if v is None else str(v)


# --- what a finished run got wrong ---------------------------------------------------------------

@dataclass(frozen=True)
class Mistakes:
    confusion: np.ndarray   # classes × classes counts: row = true label, column = prediction
    outside: int            # predictions beyond the dataset's classes (a 1000-output net), left out of the matrix
    wrong: np.ndarray       # indices of the misclassified test images, in test-set order


def test_mistakes(preds: np.ndarray, labels: np.ndarray, classes: int = len(CLASSES)) -> Mistakes:
    """The confusion matrix over the predictions that name one of the `classes`, and every miss.
    A network with more outputs than Fashion-MNIST's 10 classes can say "class 537": such a
    prediction is wrong, but has no column in the matrix."""
    preds, labels = np.asarray(preds).astype(np.int64), np.asarray(labels).astype(np.int64)
    if preds.shape != labels.shape:
        raise ValueError(f"{len(preds):,} predictions for {len(labels):,} test labels")
    inside = (preds >= 0) & (preds < classes)
    return Mistakes(confusion(preds[inside], labels[inside], classes), int((~inside).sum()),
                    np.flatnonzero(preds != labels))


def class_name(i: int) -> str:
    """Fashion-MNIST's name for an output, or its number for a network with more outputs (1000-class)."""
    return CLASSES[i] if 0 <= i < len(CLASSES) else f"output {int(i)}"


def thin_records(records: list, most: int = 400) -> list:
    """Every k-th record, k the smallest step that leaves at most `most` (a chart's worth), the first and
    the last kept (a live chart ends at the newest point)."""
    if not records:
        return []
    thin = records[::-(-len(records) // most)]
    return thin if thin[-1] is records[-1] else thin + [records[-1]]


# --- the book beside you --------------------------------------------------------------------------

def is_d2l_recipe(arch: ArchConfig, t: TrainConfig) -> bool:
    """d2l's network and training settings (any device, precision and seed), full 10-epoch run."""
    recipe = replace(TrainConfig(), device=t.device, amp=t.amp, seed=t.seed)
    return preset_of(arch) == "d2l" and t == recipe and t.epochs == D2L_REFERENCE["epoch"]
