"""The memory budget: what new work may use on a device now, the refusal when it does not fit, and
one budget shared by all the server's work.

On a CPU that is the smallest of what the machine has free (`MemAvailable`), what this process's
cgroup still allows and the address space its RLIMIT_AS leaves, less a margin for the page cache
and the Streamlit server; on a GPU, what the driver reports free. `ALEXNET_VIZ_MEMORY_BUDGET`
(e.g. 2G) overrides both.

Each request costed alone fits, and three students doing it at once take the server down: so every
analysis, feature visualization, top-9 pass and training job takes a `Reservation` of its estimate
from the server's one `MemoryBudget` (`server_budget(device)`) before it allocates, and gives it back
when it ends. Work that does not fit now waits in line ("waiting for memory: N ahead"); what could
never fit is refused at once; an allocation that fails anyway (the estimate was short, another
program took the memory) ends in the friendly out-of-memory message, never the allocator's.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from alexnet_viz.config import ConfigError
from alexnet_viz.data import pick_device
from alexnet_viz.units import human, parse_bytes

if TYPE_CHECKING:  # for the annotation only: estimate imports this module
    from alexnet_viz.cost.estimate import Estimate

ENV_BUDGET = "ALEXNET_VIZ_MEMORY_BUDGET"
SAFETY = 0.8                   # of what the machine has free: the rest is for page cache and the others
SERVER_RESERVE = 256 * 2**20   # kept back for the Streamlit server itself
GPU_SHARE = 0.9                # of a GPU's free memory: the allocator's fragmentation takes the rest


class OverBudget(ConfigError):
    """Work whose estimate does not fit the memory this machine has free; the message says what to lower."""


class OutOfMemory(OverBudget):
    """An allocation failed while work ran (the allocator's words replaced by what to lower)."""


WAIT_S = 60.0  # how long work waits in line for memory before it is refused for now
ADVICE = "lower the batch size, the input size or the channels of the first convs, or try again when others have finished"
# what allocators say when they fail: torch's CPU allocator ("[enforce fail at alloc_cpu.cpp:127] ... can't
# allocate memory", "DefaultCPUAllocator: not enough memory"), CUDA's ("CUDA out of memory"), MPS's
_ALLOCATION_WORDS = ("can't allocate memory", "not enough memory", "out of memory", "alloc_cpu", "DefaultCPUAllocator",
                     "failed to allocate", "Cannot allocate memory")


def is_allocation_failure(e: BaseException) -> bool:
    """Whether e is memory running out (MemoryError, torch's allocators), not a bug."""
    if isinstance(e, (MemoryError, OutOfMemory)):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e) for w in _ALLOCATION_WORDS)


def out_of_memory_message(what: str, advice: str = ADVICE) -> str:
    """One line for work that ran out of memory: what it was and what to lower."""
    return f"{what} ran out of memory — {advice}"


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


def _vm_size() -> int | None:
    """This process's address space in use (VmSize), bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def address_space_free() -> int | None:
    """What RLIMIT_AS still lets this process map, bytes; None when unlimited (or unknown). A capped
    address space fails an allocation however much memory is free: torch said "[enforce fail at
    alloc_cpu.cpp:127] ... can't allocate memory" for a run the free memory alone accepted."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = _vm_size()
    return max(soft - used, 0) if used is not None else None


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
    ram = max(int(_cpu_free() * SAFETY) - SERVER_RESERVE, 0)
    space = address_space_free()  # mapped, not resident: no page cache to leave room for, only fragments
    return ram if space is None else min(ram, int(space * GPU_SHARE))


# --- one budget for the whole server -------------------------------------------------------------
@dataclass(eq=False)
class Reservation:
    """A piece of work's place in the server's memory: waiting in line, then held until released."""
    nbytes: int
    what: str
    in_process: bool                 # allocates in this process (an analysis), not in a child (training)
    admitted: bool = False
    released: bool = False
    budget: "MemoryBudget | None" = field(default=None, repr=False)

    @property
    def ahead(self) -> int:
        """Pieces of work ahead of this one in the line for memory (0 once admitted)."""
        return self.budget.ahead(self) if self.budget is not None else 0

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds to be admitted; whether it is."""
        return self.budget.wait(self, timeout) if self.budget is not None else True

    def release(self) -> None:
        if self.budget is not None:
            self.budget.release(self)


def waiting_words(ahead: int) -> str:
    return f"waiting for memory: {ahead} ahead"


class MemoryBudget:
    """What the server's work may use at once on one device, handed out as reservations.

    The budget is what `memory_budget` found when nothing was reserved (live: free memory, the
    cgroup, RLIMIT_AS), lowered while work runs when the machine's free memory plus what is reserved
    drops below it (another program took memory). Reservations are admitted in order of arrival and
    none passes another: "N ahead" means N, and a big piece of work is never starved by a stream of
    small ones (they are short: analyses take seconds, and training jobs on a CPU wait for each other
    in the job queue, not here). Work in this process (`in_process`) must also fit the address space
    RLIMIT_AS leaves; a training job's own process has its own. `capacity` and `address_space`
    (bytes, or None for no limit) are injected by tests."""

    def __init__(self, device: str = "cpu", capacity: Callable[[], int] | None = None,
                 address_space: Callable[[], int | None] | None = None):
        self.device = device
        self._capacity = capacity or (lambda: memory_budget(device))
        self._space = address_space or (address_space_free if device == "cpu" else (lambda: None))
        self._cond = threading.Condition()
        self._line: list[Reservation] = []   # waiting, in order of arrival
        self._held: list[Reservation] = []
        self._idle: tuple[int, int | None] | None = None  # (capacity, address space) when nothing was held

    # --- what there is -------------------------------------------------------------------------
    def _limits(self) -> tuple[int, int | None]:
        """(bytes for all reserved work, bytes for the work in this process or None); under the lock."""
        live, space = self._capacity(), self._space()
        if not self._held or self._idle is None:
            self._idle = (live, space)
        held = sum(r.nbytes for r in self._held)
        held_here = sum(r.nbytes for r in self._held if r.in_process)
        cap = min(self._idle[0], live + held)
        if space is None or self._idle[1] is None:
            return cap, space
        return cap, min(self._idle[1], space + held_here)

    def capacity(self) -> int:
        """Bytes that all the reserved work may use at once now."""
        with self._cond:
            return self._limits()[0]

    def in_use(self) -> int:
        with self._cond:
            return sum(r.nbytes for r in self._held)

    # --- the line ------------------------------------------------------------------------------
    def join(self, nbytes: int, what: str, in_process: bool = True, advice: str = ADVICE) -> Reservation:
        """A place in line for `nbytes`, admitted at once where they fit; OverBudget where they never could."""
        r = Reservation(max(int(nbytes), 0), what, in_process, budget=self)
        with self._cond:
            cap, space = self._limits()
            limit = min(cap, space) if in_process and space is not None else cap
            if r.nbytes > limit:
                raise OverBudget(f"{what} needs about {human(r.nbytes, 'B')}, more than this server has for all "
                                 f"its work ({human(limit, 'B')}) — {advice}")
            self._line.append(r)
            self._admit()
        return r

    def ahead(self, r: Reservation) -> int:
        with self._cond:
            return self._line.index(r) if r in self._line else 0

    def wait(self, r: Reservation, timeout: float) -> bool:
        with self._cond:
            if not r.admitted and not r.released:
                self._admit()  # the machine may have freed memory without a release here
                if not r.admitted:
                    self._cond.wait(timeout)
            return r.admitted

    def release(self, r: Reservation) -> None:
        with self._cond:
            if r.released:
                return
            r.released = True
            if r in self._line:
                self._line.remove(r)
            if r in self._held:
                self._held.remove(r)
            self._admit()

    def _admit(self) -> None:
        """Admit, in order, the waiting work that fits beside what is held; the first that does not
        fit stops the line."""
        if not self._line:
            return
        cap, space = self._limits()
        held = sum(r.nbytes for r in self._held)
        held_here = sum(r.nbytes for r in self._held if r.in_process)
        while self._line:
            r = self._line[0]
            if held + r.nbytes > cap or (r.in_process and space is not None and held_here + r.nbytes > space):
                break
            self._line.pop(0)
            self._held.append(r)
            r.admitted = True
            held += r.nbytes
            held_here += r.nbytes if r.in_process else 0
        self._cond.notify_all()

    @contextmanager
    def reserve(self, nbytes: int, what: str, advice: str = ADVICE, on_wait: Callable[[int | None], None] | None = None,
                wait_s: float = WAIT_S, in_process: bool = True) -> Iterator[Reservation]:
        """Hold `nbytes` for the work inside the block: waits its turn (on_wait(ahead) about once a
        second meanwhile, on_wait(None) when its turn comes), refused (OverBudget) when it could never fit or waited `wait_s`; an
        allocation that fails inside becomes OutOfMemory with `advice`."""
        r = self.join(nbytes, what, in_process, advice)
        try:
            deadline, waited = time.monotonic() + wait_s, False
            while not r.admitted:
                if on_wait is not None:
                    on_wait(r.ahead)  # a page's callback: Streamlit may stop the script here
                    waited = True
                if time.monotonic() > deadline:
                    raise OverBudget(f"{what} waited {wait_s:.0f} s for memory the server's other work holds "
                                     f"({human(self.in_use(), 'B')}) — try again in a minute, or {advice}")
                r.wait(1.0)
            if waited:
                on_wait(None)  # its turn: the notice may go
            try:
                yield r
            except Exception as e:
                if is_allocation_failure(e) and not isinstance(e, OutOfMemory):
                    raise OutOfMemory(out_of_memory_message(what, advice)) from None
                raise
        finally:
            r.release()


_BUDGETS: dict[str, MemoryBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def server_budget(device: str | torch.device = "cpu") -> MemoryBudget:
    """The one MemoryBudget of this process for a device type (cpu, cuda, mps)."""
    kind = torch.device(device).type
    with _BUDGETS_LOCK:
        if kind not in _BUDGETS:
            _BUDGETS[kind] = MemoryBudget(kind)
        return _BUDGETS[kind]
