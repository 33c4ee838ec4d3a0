"""Snapshots: a run's weights at a few moments, so that Explore can scrub through training.

Kept under `run/snapshots/`: before training (step 0), log-spaced early steps (1, 4, 16, 64, …
within the first epoch) and every epoch end; `index.json` lists them. Only the model state is
saved (no optimizer), read back with torch.load(weights_only=True).

The disk rule: a run's snapshots take at most max(200 MB, 4 × one snapshot). A small net (mini28:
0.65 MB a snapshot) keeps every moment; d2l's 47 M parameters (94 MB a snapshot, stored in bf16)
keep four. Over the budget, early-step snapshots go first (they are skipped when the planned epochs
alone would fill it), then epoch snapshots are thinned so the kept ones stay evenly spread; step 0
and the newest are always kept. Weights are stored in bf16 when one fp32 copy exceeds 16 MB.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from alexnet_viz.runs.files import read_text, write_atomic
from alexnet_viz.units import MB, megabytes

MIN_BUDGET = 200 * 2**20   # bytes a run may always use for snapshots
MIN_KEPT = 4               # a big net still keeps this many (before, two between, the last)
BF16_ABOVE = 16 * 2**20    # fp32 snapshots larger than this are stored in bf16
EARLY_BASE = 4             # early snapshots at steps 1, 4, 16, 64, …


@dataclass(frozen=True)
class Snapshot:
    label: str               # "before training", "step 16", "epoch 3"
    epoch: float             # fractional epoch of the moment
    step: int                # batches done since the run began
    file: str                # file name under run/snapshots/
    bytes: int = 0
    kind: str = "snapshot"

    def to_dict(self) -> dict:
        return asdict(self)


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model state in fp32 (what weights.pt holds for the model)."""
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


def storage_dtype(fp32_bytes: int) -> torch.dtype:
    return torch.bfloat16 if fp32_bytes > BF16_ABOVE else torch.float32


def snapshot_bytes(fp32_bytes: int) -> int:
    """About what one snapshot takes on disk."""
    return fp32_bytes // 2 if storage_dtype(fp32_bytes) == torch.bfloat16 else fp32_bytes


def budget(fp32_bytes: int) -> int:
    """The disk a run's snapshots may take (see the module's docstring)."""
    return max(MIN_BUDGET, MIN_KEPT * snapshot_bytes(fp32_bytes))


def early_steps(per_epoch: int) -> list[int]:
    """1, 4, 16, … below the first epoch's end (which gets its own snapshot)."""
    out, s = [], 1
    while s < per_epoch:
        out.append(s)
        s *= EARLY_BASE
    return out


def planned_early(per_epoch: int, epochs: int, fp32_bytes: int) -> list[int]:
    """The early steps that fit once step 0 and every planned epoch have their place."""
    room = budget(fp32_bytes) // max(snapshot_bytes(fp32_bytes), 1) - 1 - epochs
    return early_steps(per_epoch)[:max(room, 0)]


class Snapshotter:
    """Writes a run's snapshots as the engine reaches each moment; keeps the folder within budget."""

    def __init__(self, run_path: Path, model: nn.Module, per_epoch: int, epochs: int, start_epoch: int = 0,
                 on_skip: Callable[[str], None] | None = None):
        self.dir = Path(run_path) / "snapshots"
        self.model, self.per_epoch = model, per_epoch
        self.fp32 = state_bytes(model)
        self.dtype = storage_dtype(self.fp32)
        self.limit = budget(self.fp32)
        # weights come first: a snapshot is taken only while the disk keeps room for it and for the next
        # epoch's checkpoint (weights and an optimizer's two moments) beside it; `on_skip` hears why not
        self.reserve = snapshot_bytes(self.fp32) + 3 * self.fp32 + MB
        self.on_skip = on_skip or (lambda why: None)
        # a resumed run adds epoch snapshots only: its early moments were kept the first time
        self.early = set() if start_epoch else set(planned_early(per_epoch, epochs, self.fp32))
        self.start_step = start_epoch * per_epoch

    def at_start(self) -> Snapshot | None:
        """Before training (a resumed run already has it)."""
        return None if self.start_step else self._save("before training", 0.0, 0)

    def after_step(self, step: int) -> Snapshot | None:
        """`step` counts this session's batches; early snapshots are taken in the first epoch only."""
        if step in self.early and not self.start_step:
            return self._save(f"step {step}", step / self.per_epoch, step)
        return None

    def at_epoch(self, epoch: int, step: int) -> Snapshot | None:
        return self._save(f"epoch {epoch}", float(epoch), self.start_step + step)

    def _save(self, label: str, epoch: float, step: int) -> Snapshot | None:
        free = shutil.disk_usage(self.dir.parent).free
        if free < self.reserve:
            self.on_skip(f"snapshot '{label}' skipped: {megabytes(free)} free on the disk, and the run's "
                         f"weights need {megabytes(self.reserve)} kept for them")
            return None
        self.dir.mkdir(exist_ok=True)
        name = f"step-{step:08d}.pt"
        state = {k: (v.detach().to("cpu", self.dtype) if v.is_floating_point() else v.detach().cpu())
                 for k, v in self.model.state_dict().items()}
        write_atomic(self.dir / name, lambda f: torch.save(state, f))
        snap = Snapshot(label, epoch, step, name, (self.dir / name).stat().st_size)
        kept = [s for s in read_index(self.dir.parent) if s.file != name] + [snap]
        kept = prune(sorted(kept, key=lambda s: s.step), self.limit)
        for s in set(p.name for p in self.dir.glob("step-*.pt")) - {s.file for s in kept}:
            (self.dir / s).unlink(missing_ok=True)
        data = json.dumps([s.to_dict() for s in kept], indent=1)
        write_atomic(self.dir / "index.json", data)
        return snap


def prune(snaps: list[Snapshot], limit: int) -> list[Snapshot]:
    """Drop snapshots (sorted by step) until their bytes fit `limit`: early steps first (the latest of
    them first), then the epoch snapshot closest to its predecessor; never the first or the newest."""
    snaps = list(snaps)
    while sum(s.bytes for s in snaps) > limit and len(snaps) > 2:
        middle = snaps[1:-1]
        early = [s for s in middle if not s.label.startswith("epoch")]
        if early:
            drop = early[-1]
        else:
            gaps = [(snaps[i].epoch - snaps[i - 1].epoch, i) for i in range(1, len(snaps) - 1)]
            drop = snaps[min(gaps)[1]]
        snaps.remove(drop)
    return snaps


def read_index(run_path: Path) -> list[Snapshot]:
    """The snapshots a run keeps, oldest first; [] when it has none or the index is unreadable."""
    try:  # size-capped, regular files only (files.py); the file field names a file in snapshots/ only
        raw = json.loads(read_text(Path(run_path) / "snapshots" / "index.json", 1 * MB))
        snaps = [Snapshot(**{k: d[k] for k in ("label", "epoch", "step", "file", "bytes")}) for d in raw]
        return [s for s in snaps if isinstance(s.file, str) and s.file == Path(s.file).name]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return []


def find(snaps: list[Snapshot], at: float | str) -> Snapshot | None:
    """The snapshot named `at` (its label, e.g. "step 16"), or the one nearest epoch `at`."""
    if isinstance(at, str):
        try:
            at = float(at)
        except ValueError:
            return next((s for s in snaps if s.label == at.strip()), None)
    if not snaps:
        return None
    return min(snaps, key=lambda s: (abs(s.epoch - at), -s.step))
