"""What the engine keeps so a learner can watch a run learn: snapshots and internals.

The engine calls start(), before_step(), after_step() and epoch_end(); each returns the records to
yield (kind "snapshot" or "internals"). Internals are appended to run/internals.jsonl.
"""
from __future__ import annotations

from torch import nn

from alexnet_viz.training.internals import Probe
from alexnet_viz.runs.store import Run
from alexnet_viz.runs.snapshots import Snapshotter


class Watch:
    def __init__(self, model: nn.Module, run: Run | None, per_epoch: int, epochs: int, start_epoch: int = 0,
                 internals_every: int | None = None):
        self.run = run
        self.offset = start_epoch * per_epoch       # steps done before this session (a resumed run)
        self.probe = Probe(model, internals_every)  # None: as often as its measured cost allows
        self.snaps = Snapshotter(run.path, model, per_epoch, epochs, start_epoch, self._note) if run else None

    def _note(self, message: str) -> None:
        """Said in the run's log (metrics.jsonl, kind "note"): a snapshot skipped to keep room for weights."""
        self.run.append_metric({"kind": "note", "message": message})

    def start(self) -> list:
        s = self.snaps.at_start() if self.snaps else None
        return [s] if s else []

    def before_step(self, step: int) -> None:
        """`step`: the number of the batch about to run in this session, from 1."""
        self.probe.before(step)

    def after_step(self, step: int, epoch: float) -> list:
        out = []
        rec = self.probe.after(step, epoch, self.offset)
        if rec is not None:
            if self.run:
                self.run.append_internals(rec.to_dict())
            out.append(rec)
        s = self.snaps.after_step(step) if self.snaps else None
        return out + ([s] if s else [])

    def epoch_end(self, epoch: int, step: int) -> list:
        s = self.snaps.at_epoch(epoch, step) if self.snaps else None
        return [s] if s else []
