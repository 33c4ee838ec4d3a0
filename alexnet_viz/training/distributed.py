"""Training past one process with PyTorch's own engine: torchrun + DistributedDataParallel.

    torchrun --nproc_per_node N -m alexnet_viz train --preset d2l ...

torchrun starts N copies of the command and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `context()` reads them. NCCL joins the processes on CUDA (one GPU each, cuda:LOCAL_RANK),
gloo on the CPU. Each rank holds the whole uint8 dataset on its device and trains on its slice of
every global batch (data.DeviceData.shard: the same shuffled order on every rank, rank r takes
every N-th example), so N ranks with batch B/N each take the same steps as one process with batch B.
DDP averages the gradients; the loss and accuracy sums are added up over ranks before they are
reported, and only rank 0 writes the run folder. The stop flag is agreed by all ranks (any rank's
stop, rank 0's Ctrl-C included, stops them all after the same batch), so none waits for another.

Without torchrun (WORLD_SIZE unset or 1) `context()` is `Single`: every hook does nothing.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from alexnet_viz.config import ConfigError

SYNC_EVERY = {"gloo": 1, "nccl": 8}  # batches between stop/report agreements (on a GPU each one is a sync)


class Single:
    """One process: the engine's hooks as no-ops."""
    rank, world, backend = 0, 1, "none"
    is_main = True

    def device(self, choice: str) -> torch.device | None:
        return None  # the engine picks as usual

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def agree(self, value):
        return value

    def should_stop(self, flag: bool, i: int) -> bool:
        return flag

    def report_due(self, due: bool, i: int) -> bool:
        return due

    def sums(self, *xs: torch.Tensor) -> list[float]:
        return [x.item() for x in xs]


class Group(Single):
    """One rank of a torchrun job."""

    def __init__(self, backend: str, rank: int, world: int, local_rank: int):
        self.backend, self.rank, self.world, self.local_rank = backend, rank, world, local_rank
        self.is_main = rank == 0
        self.every = SYNC_EVERY[backend]
        self._device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")

    def device(self, choice: str) -> torch.device:
        if choice not in ("auto", self._device.type):
            raise ConfigError(f"--device {choice} does not match this torchrun job, which runs on "
                              f"{self._device.type} ({self.backend})")
        return self._device

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.local_rank] if self.backend == "nccl" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def agree(self, value):
        """Rank 0's value on every rank (e.g. the precision: measured once, used by all)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _any(self, flag: bool) -> bool:
        t = torch.tensor([float(flag)], device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def should_stop(self, flag: bool, i: int) -> bool:
        return i % self.every == 0 and self._any(flag)

    def report_due(self, due: bool, i: int) -> bool:
        # rank 0's clock decides, at batches every rank reaches: the last of an epoch reports anyway
        return i % self.every == self.every - 1 and self._any(due and self.is_main)

    def sums(self, *xs: torch.Tensor) -> list[float]:
        t = torch.stack([x.detach().float() for x in xs])
        dist.all_reduce(t)  # a copy: the running sums of each rank stay its own
        return t.tolist()


def context(device_choice: str = "auto") -> Single:
    """This process's place in a torchrun job, read from torchrun's variables, the process group
    joined unless it already is (torch.distributed holds it; nothing is kept here, so every call
    describes the same job); Single when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Single()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        backend = "nccl" if dist.get_backend() == "nccl" else "gloo"
    else:
        backend = "nccl" if torch.cuda.is_available() and device_choice in ("auto", "cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return Group(backend, rank, world, local)


def close() -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def split_batch(batch_size: int, world: int) -> int:
    """Each rank's share of a global batch; it must split evenly."""
    if batch_size % world:
        raise ConfigError(f"the batch size {batch_size} does not split evenly over {world} processes — "
                          f"choose a multiple of {world}")
    return batch_size // world
