"""The numbers behind each lesson's answer, computed by the package every time (never typed in), so
they stay right when a preset, the cost model or the shipped runs change.

Each function returns a Finding: the value a learner's answer is judged against, the sentence
that explains it with the app's own figures, and — when the data it needs is not here (no shipped
run, no finished experiment) — `missing`, saying so plainly instead of guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from alexnet_viz.architect.summary import Summary, summarize
from alexnet_viz.config import PRESETS, TrainConfig, trace, with_conv
from alexnet_viz.cost.estimate import estimate_training
from alexnet_viz.inspect.analysis import filters_as_images
from alexnet_viz.training.experiments import EXPERIMENTS, collect_results, seed_noise, summarize_experiment
from alexnet_viz.units import human

# d2l's AlexNet chapter, in round figures: AlexNet against LeNet (what the lesson compares with).
CHAPTER_PARAMS_TIMES = 10
CHAPTER_MACS_TIMES = 260
ALEXNET, LENET = "d2l", "lenet5"   # the chapter's own AlexNet (Fashion-MNIST at 224×224) and LeNet-5


@dataclass(frozen=True)
class Finding:
    value: object = None           # what a learner's answer is judged against (None when missing)
    text: str = ""                 # the answer, with the app's numbers
    missing: str | None = None     # what data is not here, and how to get it; None when complete
    figures: dict = field(default_factory=dict, compare=False)  # the numbers the text quotes, for the page


def _summary(name: str) -> Summary:
    return summarize(PRESETS[name])


def ratios() -> Finding:
    """How many times AlexNet's parameters and MACs exceed LeNet's, and why the chapter's figures differ."""
    a, b = _summary(ALEXNET), _summary(LENET)
    p, m = a.total_params / b.total_params, a.total_macs / b.total_macs
    pixels = (a.cfg.input_size / b.cfg.input_size) ** 2
    fc = a.share("Linear", "params")
    widest_a = max(c.out_channels for c in a.cfg.convs)
    widest_b = max(c.out_channels for c in b.cfg.convs)
    text = (f"The app counts {a.total_params:,} parameters for AlexNet ({ALEXNET}) against {b.total_params:,} for "
            f"LeNet-5: **{p:,.0f}×**; and {a.total_macs:,} multiply-accumulates per image against "
            f"{b.total_macs:,}: **{m:,.0f}×** — the chapter's round figures are about {CHAPTER_PARAMS_TIMES}× and "
            f"{CHAPTER_MACS_TIMES}×. Why they differ: this LeNet-5 reads 28×28 images and AlexNet 224×224, so "
            f"every AlexNet filter slides over {pixels:.0f}× as many positions; its convs are up to "
            f"{widest_a / widest_b:.0f}× wider ({widest_a} channels against {widest_b}); and its 4096-wide "
            f"fully connected layers alone hold {fc:.0%} of its parameters. A count depends on exactly "
            f"which two networks, and at which input size, you compare.")
    return Finding(p, text, figures={"params_times": p, "macs_times": m, "pixels_times": pixels, "fc_share": fc})


def heaviest(what: str) -> Finding:
    """The layer of AlexNet (d2l) with the most parameters ("params") or the most compute ("macs")."""
    s = _summary(ALEXNET)
    top = s.largest(what)
    total = getattr(s, "total_" + what)
    conv = s.share("Conv2d", what)
    noun = "parameters" if what == "params" else "multiply-accumulates per image"
    text = (f"**{top.name}** ({getattr(top, what):,} {noun}, {getattr(top, what) / total:.0%} of the network's "
            f"{total:,}). The conv layers have {conv:.0%} of the {noun.split(' ')[0]} and the Linear layers "
            f"{s.share('Linear', what):.0%}: " +
            ("memory for weights lives in the classifier." if what == "params"
             else "the compute is in the features, where every weight is used at every position."))
    return Finding(top.name, text, figures={"layer": top.name, "share": getattr(top, what) / total})


def conv_layer_names() -> list[str]:
    """The layers with weights of AlexNet (d2l), the choices of the 'which layer' questions."""
    return [r.name for r in _summary(ALEXNET).rows if r.type in ("Conv2d", "Linear")]


def conv1_side(stride: int) -> Finding:
    """The side of conv1's output in AlexNet (d2l) when its stride is `stride`, by a real conv on the meta device."""
    cfg = PRESETS[ALEXNET]
    c1 = cfg.convs[0]
    x = torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    w = torch.empty(c1.out_channels, cfg.in_channels // c1.groups, c1.kernel, c1.kernel, device="meta")
    side = int(F.conv2d(x, w, stride=stride, padding=c1.padding, groups=c1.groups).shape[-1])
    err = trace(with_conv(cfg, 0, stride=stride)).error
    rest = (" The rest of the network still works with it." if err is None
            else f" But the network no longer works after it: {err}")
    text = (f"With stride {stride}, conv1 ({c1.kernel}×{c1.kernel}, padding {c1.padding}) on the "
            f"{cfg.input_size}×{cfg.input_size} input makes **{side}×{side}** maps: "
            f"⌊({cfg.input_size} + 2·{c1.padding} − {c1.kernel}) / {stride}⌋ + 1 = {side}, "
            f"{c1.out_channels} of them.{rest}")
    return Finding(side, text, figures={"side": side, "stride": stride})


def training_memory(small: int = 128, large: int = 512) -> Finding:
    """The estimated peak memory of training AlexNet (d2l) at two batch sizes, and what grows with the batch."""
    cfg = PRESETS[ALEXNET]
    a, b = (estimate_training(cfg, TrainConfig(batch_size=n), device="cpu") for n in (small, large))
    r = b.peak_memory_bytes / a.peak_memory_bytes
    fixed = [k for k in a.breakdown if a.breakdown[k] == b.breakdown[k] and a.breakdown[k] > 0]
    grows = max(a.breakdown, key=lambda k: b.breakdown[k] - a.breakdown[k])
    text = (f"The estimate is {human(a.peak_memory_bytes, 'B')} at batch {small} and "
            f"{human(b.peak_memory_bytes, 'B')} at batch {large}: **{r:.1f}×**, not {large / small:.0f}×. What grows "
            f"with the batch is what each image needs ({grows} most: {human(a.breakdown[grows], 'B')} → "
            f"{human(b.breakdown[grows], 'B')}); what does not is {', '.join(fixed)}.")
    return Finding(r, text, figures={"small": a.peak_memory_bytes, "large": b.peak_memory_bytes, "times": r})


def _finished(runs: list, name: str) -> tuple[list[dict], str] | None:
    """summarize_experiment's rows (by variant) and sentence, once every variant has a finished seed."""
    results = collect_results(runs, name)
    if set(results) != {v.label for v in EXPERIMENTS[name].variants}:
        return None
    return summarize_experiment(results)


def relu_vs_sigmoid(runs: list) -> Finding:
    """Which activation reached the higher test accuracy in the finished ReLU-vs-sigmoid runs (shipped or the class's)."""
    done = _finished(runs, "relu-vs-sigmoid")
    if done is None:
        return Finding(missing="No finished ReLU-vs-sigmoid experiment is here (neither the shipped one nor one "
                               "of yours): open the Experiments page (Show me) and run it, then come back.")
    stats, sentence = done
    best, runner = sorted(stats, key=lambda s: s["test acc"], reverse=True)
    noise = seed_noise(stats)
    verdict = "about the same" if noise is not None and best["test acc"] - runner["test acc"] <= noise else best["variant"]
    text = (f"{sentence} A sigmoid's gradient is at most 0.25 and vanishes for large inputs, so the early layers "
            f"of a deep sigmoid network learn slowly; ReLU passes the gradient unchanged wherever it is active.")
    return Finding(verdict, text, figures={s["variant"]: s["test acc"] for s in stats})


def _neighbour_corr(w: np.ndarray) -> float:
    """Mean correlation of each conv1 weight with its right and lower neighbours (0 for noise, high for smooth filters)."""
    w = w.reshape(-1, *w.shape[-2:]).astype(np.float64)
    pairs = [(w[:, :, :-1].ravel(), w[:, :, 1:].ravel()), (w[:, :-1, :].ravel(), w[:, 1:, :].ravel())]
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in pairs]))


def conv1_filters(run) -> Finding:
    """conv1's filters before training and after, from a run's first snapshot and its final weights."""
    if run is None:
        return Finding(missing="The shipped trained network is not in this copy of the app "
                               "(alexnet_viz/assets/runs/mini28), so there are no filters before and after to show.")
    try:
        snaps = run.snapshots()
        if not snaps or snaps[0]["step"] != 0:
            return Finding(missing=f"The run {run.path.name} kept no snapshot from before training.")
        before = run.snapshot_state(snaps[0]["label"])[0]["features.conv1.weight"].float().numpy()
        after = run.checkpoint()["model"]["features.conv1.weight"].float().numpy()
    except Exception as e:  # noqa: BLE001 — a damaged run says what is wrong, never a trace
        return Finding(missing=f"The run {run.path.name} cannot be read for its filters ({type(e).__name__}: {e}).")
    cb, ca = _neighbour_corr(before), _neighbour_corr(after)
    change = float(np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-12))
    verdict = "smooth" if ca > cb + 0.1 else "noise"
    text = (f"Neighbouring weights of a filter correlate **{cb:.2f}** before training (random noise) and "
            f"**{ca:.2f}** after; the filters moved by {change:.0%} of their starting size. " +
            ("Training moved them from noise towards smoother patterns — strokes, edges and blobs: neighbouring "
             "pixels of an edge are alike, so the weights that detect it become alike too." if verdict == "smooth"
             else "In this run the filters stayed close to noise: a short run barely reshapes them."))
    return Finding(verdict, text, figures={"before": cb, "after": ca, "change": change,
                                           "before_img": filters_as_images(torch.from_numpy(before)),
                                           "after_img": filters_as_images(torch.from_numpy(after))})


def receptive_growth() -> Finding:
    """The side of the input patch each conv layer's unit sees in AlexNet (d2l), up to conv5."""
    s = _summary(ALEXNET)
    convs = [r for r in s.rows if r.type == "Conv2d"]
    steps = ", ".join(f"{r.name} {r.rf}×{r.rf}" for r in convs)
    last = convs[-1]
    text = (f"The window grows layer by layer: {steps}. Each k×k layer adds (k − 1) × jump pixels, and the "
            f"jump is the product of every stride before it ({last.jump} at {last.name}), so after the "
            f"strided conv1 and two poolings a 3×3 conv reaches far. A {last.name} unit sees **{last.rf}×{last.rf}** "
            f"of the {s.cfg.input_size}×{s.cfg.input_size} input.")
    return Finding(last.rf, text, figures={r.name: r.rf for r in convs})


def _own_gap(run) -> str:
    """What one trained run (the shipped one) says about its gap, or "" when it cannot say."""
    try:
        last = [m for m in run.metrics() if m.get("kind") == "epoch"][-1]
        p = run.config()[0].dropout
        return (f" Meanwhile, the shipped {run.path.name} (dropout p = {p:g}) ended at train accuracy "
                f"{last['train_acc']:.3f} and test accuracy {last['test_acc']:.3f}: a gap of "
                f"{last['train_acc'] - last['test_acc']:+.3f}.")
    except Exception:  # noqa: BLE001 — no run, no records, a damaged file: nothing to add
        return ""


def dropout_gap(runs: list, example=None) -> Finding:
    """Train accuracy minus test accuracy with and without dropout, from a finished dropout experiment."""
    done = _finished(runs, "dropout")
    if done is None:
        return Finding(missing="No finished dropout experiment is here yet: open the Experiments page (Show me), "
                               "run \"Dropout vs none\", then come back for the answer with its numbers."
                               + (_own_gap(example) if example is not None else ""))
    stats, _ = done
    gap = {s["variant"]: s["train acc"] - s["test acc"] for s in stats}
    verdict = "larger" if gap["no dropout"] > gap["dropout"] else "smaller or the same"
    seeds = min(s["seeds"] for s in stats)
    text = (f"Train minus test accuracy: **{gap['dropout']:+.3f}** with dropout, **{gap['no dropout']:+.3f}** "
            f"without ({seeds} or more seed{'s' if seeds > 1 else ''} per variant). Dropout zeroes a fraction p of the "
            f"classifier's units at random in every step, so no unit can rely on another being there: it fights "
            f"the memorizing that widens the gap. On a short run both gaps are small — overfitting needs many "
            f"epochs to show.")
    return Finding(verdict, text, figures=gap)


__all__ = ["Finding", "ratios", "heaviest", "conv_layer_names", "conv1_side", "training_memory",
           "relu_vs_sigmoid", "conv1_filters", "receptive_growth", "dropout_gap",
           "CHAPTER_PARAMS_TIMES", "CHAPTER_MACS_TIMES"]
