"""The memory budget: what new work may use on a device now, and the refusal when it does not fit.

On a CPU that is the smaller of what the machine has free (`MemAvailable`) and what this process's
cgroup still allows, less a margin for the page cache and the Streamlit server; on a GPU, what the
driver reports free. `ALEXNET_VIZ_MEMORY_BUDGET` (e.g. 2G) overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alexnet_viz.config import ConfigError
from alexnet_viz.data import pick_device
from alexnet_viz.units import parse_bytes

if TYPE_CHECKING:  # for the annotation only: estimate imports this module
    from alexnet_viz.cost.estimate import Estimate

ENV_BUDGET = "ALEXNET_VIZ_MEMORY_BUDGET"
SAFETY = 0.8                   # of what the machine has free: the rest is for page cache and the others
SERVER_RESERVE = 256 * 2**20   # kept back for the Streamlit server itself
GPU_SHARE = 0.9                # of a GPU's free memory: the allocator's fragmentation takes the rest


class OverBudget(ConfigError):
    """Work whose estimate does not fit the memory this machine has free; the message says what to lower."""


def require_fits(est: Estimate) -> Estimate:
    """Raise OverBudget with the estimate's message unless it fits."""
    if not est.fits:
        raise OverBudget(est.message())
    return est


def size_from_env(name: str) -> int | None:
    """The size an environment variable sets (e.g. 2G) in bytes, None when unset; ConfigError
    naming the variable when it is not a size."""
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise ConfigError(f"{name}={e}") from None


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_free() -> int | None:
    """What this process's cgroup still allows (v2, then v1); None when unlimited."""
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim = _read_int(limit)  # "max" (v2 unlimited) does not parse: None
        if lim is not None and lim < 2**60:
            return max(lim - (_read_int(used) or 0), 0)
    return None


def _cpu_free() -> int:
    free = [v for v in (_meminfo_available(), _cgroup_free()) if v is not None]
    if not free:  # not Linux: torch's own view is all there is; be conservative
        free = [4 * 2**30]
    return min(free)


def memory_budget(device: str | torch.device | None = None) -> int:
    """Bytes that new work on `device` may use now; `ALEXNET_VIZ_MEMORY_BUDGET` (e.g. 2G) overrides."""
    env = size_from_env(ENV_BUDGET)
    if env is not None:
        return env
    dev = torch.device(device) if device is not None else pick_device("auto")
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * GPU_SHARE)
    if dev.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return max(int(_cpu_free() * SAFETY) - SERVER_RESERVE, 0)
