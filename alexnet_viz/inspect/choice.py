"""Which model Explore looks at, as a value: where it comes from (the example network that ships
trained, a run trained here, the Architect's network untrained, torchvision's ImageNet AlexNet),
which run and which snapshot. The page shows labels; what it decides with is this value.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from alexnet_viz.config import ArchConfig
from alexnet_viz.inspect.analysis import Loaded, ModelUnavailable, from_run, pretrained, untrained
from alexnet_viz.inspect.modelcache import ModelCache
from alexnet_viz.runs.examples import example_run
from alexnet_viz.runs.store import RunInfo, best_first, has_weights, list_runs


class Source(str, Enum):
    """Where the model comes from; the value is its name in a link."""
    RUN = "run"
    EXAMPLE = "example"
    UNTRAINED = "untrained"
    IMAGENET = "imagenet"

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def trained(self) -> bool:
        return self is not Source.UNTRAINED


LABELS = {Source.RUN: "A run trained here", Source.EXAMPLE: "The example network (ships trained)",
          Source.UNTRAINED: "Untrained (the Architect's network)", Source.IMAGENET: "ImageNet AlexNet (torchvision)"}


@dataclass(frozen=True)
class ModelChoice:
    source: Source
    run: str | None = None        # the run folder's path (RUN and EXAMPLE)
    snapshot: str | None = None   # a snapshot's label; None = the final weights


def example():
    """The shipped trained mini28 (runs.examples.example_run), or None where it is not installed."""
    try:
        return example_run()
    except Exception:  # noqa: BLE001 - a damaged shipped folder leaves the other models usable
        return None


def final_accuracy(run) -> float | None:
    """A run's last test accuracy from its metrics, or None (none recorded, or unreadable)."""
    try:
        epochs = [m for m in run.metrics() if m.get("kind") == "epoch"]
    except Exception:  # noqa: BLE001 - a caption's number, not worth an error
        return None
    acc = epochs[-1].get("test_acc") if epochs else None
    return float(acc) if isinstance(acc, (int, float)) else None


def is_example_run(r: RunInfo) -> bool:
    """A shipped run, as list_runs marks it (there are none before the examples are installed)."""
    return bool(getattr(r, "example", False))


def own_runs(owner: str, linked: Collection[str] = ()) -> list[RunInfo]:
    """This session's runs and the command line's (and those at the `linked` paths, opened from a link),
    best first; the shipped examples and damaged folders left out."""
    return best_first([r for r in list_runs(owners={owner, ""}, examples=False, paths=linked)
                       if r.state != "damaged"])


def sources(has_runs: bool, has_example: bool) -> list[Source]:
    """What the model radio offers, the default first: your own run, else the shipped example, else
    the untrained network."""
    return ([Source.RUN] if has_runs else []) + ([Source.EXAMPLE] if has_example else []) + [
        Source.UNTRAINED, Source.IMAGENET]


def load_model(choice: ModelChoice, cache: ModelCache, arch: ArchConfig) -> Loaded:
    """The model the choice names, from the shared cache. Raises ModelUnavailable (no weights yet,
    offline) or ConfigError (OverBudget: too big for this machine)."""
    if choice.source is Source.UNTRAINED:
        return cache.get(("untrained", arch), lambda: untrained(arch))
    if choice.source is Source.IMAGENET:
        return cache.get(("pretrained",), pretrained)
    if choice.run is None:
        raise ModelUnavailable("no run chosen")
    path = Path(choice.run)
    if choice.source is Source.EXAMPLE:  # shipped files never change: no need to look at their times
        m = cache.get(("example", str(path), choice.snapshot), lambda: from_run(path, choice.snapshot))
        return replace(m, label=f"the example {m.cfg.name}, trained"
                       + (f" ({choice.snapshot})" if choice.snapshot else ""))
    weights = path / "weights.pt"
    if not weights.exists():
        raise ModelUnavailable(f"{path.name}: no weights saved yet (they are written at each epoch end)")
    key = ("run", str(path), weights.stat().st_mtime, choice.snapshot)
    return cache.get(key, lambda: from_run(path, choice.snapshot))


def run_label(r: RunInfo) -> str:
    """A run in a list: its name, state, and test accuracy or why it has no weights."""
    acc = f"test acc {r.test_acc:.3f}" if r.test_acc is not None else "no test accuracy yet"
    return f"{r.name} · {r.state} · " + (acc if has_weights(r) else "no weights saved yet")
