"""The training engine: a generator of immutable records that honours a stop flag.

It never prints and never imports streamlit: the page, the CLI and the tests consume the same
records. Each batch is made on the device from the uint8 dataset (see data.DeviceData).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.config import ArchConfig, TrainConfig
from alexnet_viz.training import distributed
from alexnet_viz.cost.budget import is_allocation_failure, out_of_memory_message
from alexnet_viz.cost.estimate import eval_batch_size
from alexnet_viz.data import Dataset, DeviceData, load_fashion_mnist, pick_device
from alexnet_viz.model import build_model
from alexnet_viz.training.precision import Choice, choose
from alexnet_viz.runs.store import Run
from alexnet_viz.training.internals import Internals
from alexnet_viz.runs.snapshots import Snapshot
from alexnet_viz.training.watch import Watch

REPORT_EVERY_S = 0.5  # how often a Step is emitted (each one costs a device sync)
DIVERGED_X = 1e3      # a loss this many times the first one (or not finite) ends the run


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HOLD_BELOW = 32 << 20                          # blocks under this come from the heap (glibc's most, 64-bit)
HOLD_TOP = 1 << 30                             # the heap's free top is handed back only beyond this (an int)


def hold_freed_memory() -> bool:
    """For a process that trains and then ends (the CLI's, a run's): glibc's allocator keeps what a step
    frees for the next step, instead of handing it back to the system and faulting it in again.

    By default glibc maps each block above a threshold of its own (unmapped when freed, the threshold
    raised as it goes) and trims the heap's free top: one mini28 epoch took 535-750 thousand page faults
    in the CLI (as many as the threshold happened to move; a run's process had 759 thousand 15 s in),
    against 177-198 thousand held; the CLI trained at 2,904-3,105 examples/s against 3,283-3,490 held,
    and a run in the app, watched or not, went from 80-93% of the CLI's rate to 99-108% (2026-12-07,
    one core of a 2-core AMD EPYC; both held). The process keeps its peak until it ends, which its memory
    reservation counts already. Where mallopt is not glibc's (macOS, Windows, musl) nothing changes:
    returns whether it did."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        return bool(libc.mallopt(M_MMAP_THRESHOLD, HOLD_BELOW)) and bool(libc.mallopt(M_TRIM_THRESHOLD, HOLD_TOP))
    except (OSError, AttributeError):
        return False


class Diverged(RuntimeError):
    """The loss became NaN/inf or exploded: the run cannot recover, so it ends and says why."""


def check_loss(loss: float, first: float, classes: int, epoch: float) -> None:
    """Raise Diverged when `loss` is not finite or DIVERGED_X times the first loss (or ln classes)."""
    ref = max(min(first, math.log(classes)), 0.01)
    if not math.isfinite(loss) or loss > DIVERGED_X * ref:
        raise Diverged(f"diverged — lower the learning rate (the loss reached {loss:,.4g} at epoch {epoch:.2f}, "
                       f"from {first:.3g} at the start)")


class Record:
    """What the engine yields (a frozen dataclass): to_dict is its line in metrics.jsonl."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Step(Record):
    epoch: float             # fractional epoch, for the x axis
    step: int                # batches done in this run
    loss: float              # mean train loss since the last Step
    acc: float               # train accuracy since the last Step
    examples_per_sec: float  # training throughput since the run started
    elapsed: float           # seconds since the run started
    eta: float               # seconds left, at the current speed
    progress: float          # 0..1 of the whole run
    kind: str = "step"


@dataclass(frozen=True)
class Epoch(Record):
    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    examples_per_sec: float
    elapsed: float
    kind: str = "epoch"


@dataclass(frozen=True)
class Precision(Record):
    """The autocast choice of a run, yielded once before its first Step."""
    dtype: str               # bf16 | fp32
    reason: str              # e.g. "bf16: 1.2× faster than fp32 on this CPU (measured 2026-11-24)"
    device: str
    kind: str = "precision"


@dataclass(frozen=True)
class End(Record):
    status: str              # finished | stopped | error
    message: str
    epochs_done: float
    run_dir: str | None
    kind: str = "end"


def init_weights(model: nn.Module) -> None:
    """d2l's init: Xavier-uniform for every Linear and Conv2d weight."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    momentum = 0.9 if t.optimizer == "momentum" else 0.0
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=momentum, weight_decay=t.weight_decay)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step; returns (logits, loss) without syncing the device."""
    with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        out = model(x)
        loss = F.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return out, loss


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, amp: torch.dtype | None,
             batch_size: int | None = None) -> tuple[float, np.ndarray]:
    """(test accuracy, predictions) in large batches (cost.eval_batch_size picks them); mode restored."""
    was = model.training
    model.eval()
    bs = batch_size or (1000 if data.size <= 64 else 250)
    preds = []
    with torch.autocast(data.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for x, _ in data.test_batches(bs):
            preds.append(model(x).argmax(1))
    model.train(was)
    p = torch.cat(preds)
    return (p == data.test_y).float().mean().item(), p.to(torch.int16).cpu().numpy()  # up to 1000 classes


def setup(arch: ArchConfig, t: TrainConfig, ds: Dataset, ctx: distributed.Single | None = None
          ) -> tuple[nn.Module, torch.optim.Optimizer, DeviceData, Choice]:
    """Model, optimizer, device data and the precision (autocast dtype and why) for a run.
    Under torchrun (ctx), this rank's device and its slice of every batch."""
    ctx = ctx or distributed.Single()
    per_rank = distributed.split_batch(t.batch_size, ctx.world)
    device = ctx.device(t.device) or pick_device(t.device)
    torch.manual_seed(t.seed)
    model = build_model(arch)
    if t.init == "xavier":
        init_weights(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # channels_last on every device: on 2 CPU cores it made mini28's steps 36% faster
    model = model.to(device, memory_format=torch.channels_last)
    data = DeviceData(ds, device, arch.input_size, arch.in_channels, channels_last=True)
    data.shard(ctx.rank, ctx.world)
    # measured at this process's own batch: bf16's gain grows with the batch (1.10× at 16, 1.7× at 128 on AMX)
    prec = ctx.agree(choose(device, arch, t.precision if t.amp else "fp32", per_rank) if ctx.is_main else None)
    return model, make_optimizer(model, t), data, prec


def train(arch: ArchConfig, t: TrainConfig, ds: Dataset | None = None, stop: threading.Event | None = None,
          run: Run | None = None, resume: Run | None = None, internals_every: int | None = None
          ) -> Iterator[Precision | Step | Epoch | End | Internals | Snapshot]:
    """Train arch with t; yields a Precision first, Step records during an epoch, an Epoch at each end, then
    one End; between them Internals every few steps and a Snapshot at each kept moment (see watch.py).

    `stop` is checked before every batch. With `run`, metrics are appended and weights saved at
    each epoch end and when stopped. With `resume`, weights and optimizer come from that run and
    training continues after its last saved epoch. `internals_every` samples the internals at that
    fixed interval of steps instead of the one their measured cost allows.
    """
    ds = ds or load_fashion_mnist()
    stop = stop or threading.Event()
    done = 0.0  # epochs trained and saved: what a run that fails reports
    try:
        ctx = distributed.context(t.device)  # Single unless started by torchrun
        run = run if ctx.is_main else None   # rank 0 alone writes the run folder
        model, opt, data, prec = setup(arch, t, ds, ctx)
        amp = prec.dtype
        yield from _record(run, Precision(prec.name, prec.reason, str(data.device)))
        start_epoch = _resume(resume, model, opt)
        done = float(start_epoch)
        net = ctx.wrap(model)  # DistributedDataParallel under torchrun; `model` is what gets saved
        gen = torch.Generator().manual_seed(t.seed + start_epoch)
        per_epoch = data.steps_per_epoch(t.batch_size, t.max_batches)
        total = per_epoch * max(t.epochs - start_epoch, 0)  # batches this session trains
        eval_bs = eval_batch_size(arch, data.device, amp is not None, t.batch_size)  # follows the budget
        watch = Watch(model, run, per_epoch, t.epochs, start_epoch, internals_every)  # snapshots and internals
        yield from watch.start()

        t0 = last_report = time.perf_counter()
        eval_s = 0.0       # seconds spent evaluating: not training, so not in examples/sec
        seen = 0           # examples trained on in this session, over all ranks
        step = 0           # batches done in this session
        first_loss = None  # the first reported loss: what divergence is measured against
        for epoch in range(start_epoch, t.epochs):
            model.train()
            tally = _Tally(data.device)
            for i, (x, y) in enumerate(data.train_batches(t.batch_size, gen, t.augment)):
                if i >= per_epoch:
                    break
                if ctx.should_stop(stop.is_set(), i):
                    done = epoch + i / per_epoch
                    yield from _stopped(run, model, opt, done)
                    return
                watch.before_step(step + 1)
                out, loss = train_step(net, opt, x, y, amp)
                n = len(y) * ctx.world  # the global batch
                tally.add(loss, out, y, n)
                seen, step = seen + n, step + 1
                at = epoch + (i + 1) / per_epoch
                yield from watch.after_step(step, at)
                now = time.perf_counter()
                # the first batch reports at once (the chart starts with it), then every REPORT_EVERY_S
                if ctx.report_due(now - last_report >= REPORT_EVERY_S or step == 1, i) or i == per_epoch - 1:
                    loss_now, acc_now = tally.read(ctx)  # the only sync inside an epoch
                    first_loss = loss_now if first_loss is None else first_loss
                    check_loss(loss_now, first_loss, arch.num_classes, at)
                    busy = now - t0 - eval_s
                    yield from _record(run, Step(at, step, loss_now, acc_now, seen / busy, now - t0,
                                                 (total - step) * busy / step, step / total))
                    last_report = now

            eval_start = time.perf_counter()
            test_acc, preds = evaluate(model, data, amp, eval_bs)
            eval_s += time.perf_counter() - eval_start
            now = time.perf_counter()
            train_loss, train_acc = tally.epoch()
            rec = Epoch(epoch + 1, train_loss, train_acc, test_acc, seen / (now - t0 - eval_s), now - t0)
            done = epoch + 1.0
            yield from _record(run, rec, lambda: _save_epoch(run, model, opt, done, preds))
            yield from watch.epoch_end(epoch + 1, step)
        if run:
            run.set_status("finished", epochs_done=done)
        yield End("finished", f"trained {t.epochs} epoch(s)", done, str(run.path) if run else None)
    except Exception as e:  # noqa: BLE001 - a crashed run keeps its files and says why
        yield from _fail(run, failure_message(e), done)


class _Tally:
    """An epoch's loss and hits, summed on the device (no sync per batch) and read back at each report."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.hit_sum = torch.zeros((), device=device)
        self.loss_read = self.hits_read = 0.0  # the sums as read at the last report
        self.n_read = 0                        # examples up to the last report
        self.n_new = 0                         # examples since

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, n: int) -> None:
        """One batch of this rank (`n`: the global batch size, as the sums are added over ranks)."""
        self.loss_sum += loss.detach() * len(y)
        self.hit_sum += (out.argmax(1) == y).sum()
        self.n_new += n

    def read(self, ctx: distributed.Single) -> tuple[float, float]:
        """(mean loss, accuracy) since the last read, summed over ranks."""
        loss_sum, hit_sum = ctx.sums(self.loss_sum, self.hit_sum)
        loss, acc = (loss_sum - self.loss_read) / self.n_new, (hit_sum - self.hits_read) / self.n_new
        self.loss_read, self.hits_read = loss_sum, hit_sum
        self.n_read, self.n_new = self.n_read + self.n_new, 0
        return loss, acc

    def epoch(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the epoch, as of the last read (the epoch's last batch reads)."""
        n = max(self.n_read + self.n_new, 1)
        return self.loss_read / n, self.hits_read / n


def _record(run: Run | None, rec, save=None) -> Iterator:
    """Log a record in the run folder (and, with `save`, write what goes with it), then yield it."""
    if run:
        run.append_metric(rec.to_dict())
        if save:
            save()
    yield rec


def _save_epoch(run: Run, model: nn.Module, opt: torch.optim.Optimizer, done: float, preds: np.ndarray) -> None:
    run.save_checkpoint(model, opt, done, preds)
    run.set_status("running", epochs_done=done)


def _resume(resume: Run | None, model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Load a resumed run's weights and optimizer; the epoch to start from (0 for a new run)."""
    if resume is None:
        return 0
    ck = resume.checkpoint()
    model.load_state_dict(ck["model"])
    if ck.get("optimizer"):
        opt.load_state_dict(ck["optimizer"])
    return int(ck.get("epoch", 0))


def failure_message(e: Exception) -> str:
    """What a run that ended on `e` says about it."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory — lower the batch size, the input size or the hidden widths"
    if is_allocation_failure(e):  # the CPU allocator ("can't allocate memory"), MemoryError, a capped RLIMIT_AS
        return out_of_memory_message("the run", "lower the batch size, the input size or the hidden widths")
    if isinstance(e, Diverged):  # the weights are garbage now: the last saved epoch is kept, not these
        return str(e)
    if isinstance(e, OSError):  # disk full, folder removed or unwritable while running
        why = "disk full" if e.errno == errno.ENOSPC else f"cannot write the run folder ({e.strerror or e})"
        return f"{why} — free some disk space or set ALEXNET_VIZ_RUNS to a writable folder; epochs saved so far are kept"
    return f"{type(e).__name__}: {e}"


def _stopped(run: Run | None, model: nn.Module, opt: torch.optim.Optimizer, done: float) -> Iterator[End]:
    msg = f"stopped by the user at epoch {done:.2f}; the weights as they were are saved"
    if run:
        run.save_checkpoint(model, opt, done, None)
        run.set_status("stopped", msg, epochs_done=done)
    yield End("stopped", msg, done, str(run.path) if run else None)


def _fail(run: Run | None, message: str, done: float) -> Iterator[End]:
    if run:
        try:
            run.set_status("error", message, epochs_done=done)
        except OSError:
            pass
    yield End("error", message, done, str(run.path) if run else None)


def confusion(preds: np.ndarray, labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """classes×classes counts: row = true label, column = prediction."""
    return np.bincount(labels.astype(np.int64) * classes + preds, minlength=classes * classes).reshape(classes, classes)

