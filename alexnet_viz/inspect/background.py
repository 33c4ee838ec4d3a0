"""Work too slow for a slider step (a top-9 pass over the test set, a feature visualization), run
in a background thread while the page stays responsive, and shared by every session.

One worker by default: each job uses every core, so two at once only slow both. The worker runs at
a low priority (nice NICE, and off a real-time policy), so that while it works the sessions' own
script runs — a slider step, a click — still get the cores first. A second ask for
the same (model, key) gets the same job. A queued job that nobody has asked about for `stale_s`
seconds is dropped before it starts (the student has moved on to another layer): pages that wait
for a job touch it as they poll.
"""
from __future__ import annotations

import inspect
import os
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Hashable

from alexnet_viz.cost.budget import waiting_words

STALE_S = 10.0
NICE = 10  # the worker's niceness: CFS gives a nice-0 thread about 10× its share of a busy core
KEEP = 64  # finished jobs remembered per model (their results are small or shared with a cache)


def yield_cores() -> None:
    """Lower the calling thread's priority (Linux: niceness and scheduling policy are per thread, and
    the threads it starts for torch's parallel work inherit them). Where that is not allowed, nothing."""
    tid = threading.get_native_id()
    try:
        if os.sched_getscheduler(tid) != os.SCHED_OTHER:  # a server started under chrt: leave real time
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        _lower(tid)
    except (AttributeError, OSError):
        pass


def _lower(tid: int) -> None:
    """Nice NICE for one thread (never raised back where it was already lower)."""
    os.setpriority(os.PRIO_PROCESS, tid, max(NICE, os.getpriority(os.PRIO_PROCESS, tid)))


@dataclass(eq=False)
class Job:
    """One piece of work asked for: its progress (0..1) while it runs, then its result or error."""
    what: str                                   # said while it runs
    future: Future = field(default_factory=Future)
    done: float = 0.0
    asked: float = field(default_factory=time.monotonic)
    waiting: int | None = None                  # while it waits for memory: the work ahead of it

    @property
    def status(self) -> str:
        """What it is doing, in words: waiting for memory, or the work itself."""
        return f"{self.what} ({waiting_words(self.waiting)})" if self.waiting is not None else self.what

    def touch(self) -> None:
        """Someone is still waiting for it."""
        self.asked = time.monotonic()

    @property
    def ready(self) -> bool:
        return self.future.done()

    @property
    def error(self) -> BaseException | None:
        if not self.future.done() or self.future.cancelled():
            return None
        return self.future.exception()


class Background:
    def __init__(self, workers: int = 1, stale_s: float = STALE_S):
        self.stale_s = stale_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="explore-background", initializer=yield_cores)
        self._lock = threading.Lock()
        self._jobs: "weakref.WeakKeyDictionary[object, dict[Hashable, Job]]" = weakref.WeakKeyDictionary()

    def find(self, owner: object, key: Hashable) -> Job | None:
        """The job asked for under (owner, key), if it is queued, running or done (not failed or dropped)."""
        with self._lock:
            job = self._jobs.get(owner, {}).get(key)
        if job is not None:
            job.touch()
        return job

    def start(self, owner: object, key: Hashable, what: str, work: Callable, *args, **kwargs) -> Job:
        """Queue work(*args, **kwargs) unless (owner, key) is already asked for. `owner` (the model)
        is held weakly; work that takes a `progress` argument gets a callback for the job's progress,
        and work that takes `on_wait` one that keeps `job.waiting` (memory it waits for) up to date."""
        with self._lock:
            jobs = self._jobs.setdefault(owner, {})
            if key in jobs:
                jobs[key].touch()
                return jobs[key]
            job = jobs[key] = Job(what)
            while len(jobs) > KEEP:
                del jobs[next(iter(jobs))]
        takes = inspect.signature(work).parameters
        if "progress" in takes:
            kwargs = {**kwargs, "progress": lambda f: setattr(job, "done", float(f))}
        if "on_wait" in takes:  # the server's memory budget may make it wait its turn: said on the page
            kwargs = {**kwargs, "on_wait": lambda ahead: setattr(job, "waiting", ahead)}
        self._pool.submit(self._run, job, weakref.ref(owner), key, work, args, kwargs)
        return job

    def _run(self, job: Job, owner, key, work, args, kwargs) -> None:
        if time.monotonic() - job.asked > self.stale_s:
            self._forget(owner(), key, job)
            job.future.cancel()
            return
        try:
            result = work(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - said on the page; a new ask starts again
            self._forget(owner(), key, job)
            job.future.set_exception(e)
            return
        job.done = 1.0
        job.future.set_result(result)

    def _forget(self, owner, key, job: Job) -> None:
        if owner is None:
            return
        with self._lock:
            jobs = self._jobs.get(owner, {})
            if jobs.get(key) is job:
                del jobs[key]


# ---- long script runs yield to short ones -------------------------------------------------------------
# Streamlit runs each session's script in a thread of one server process. When a class shares one machine,
# a run that has already used LONG_S of CPU (a 48-megapixel photo, the largest network opened in Explore)
# is lowered to nice NICE, as an operating system's feedback queue lowers a long job: a classmate's slider
# step, 0.05-0.2 s of the server's CPU, then runs first instead of waiting for it. The thread keeps its
# lower priority for the rest of its life: a session's next run gets a new thread, except a rerun asked for
# while one is still going, which Streamlit runs in the same thread (a busy session stays lowered).
LONG_S = 0.25
_watching = threading.Lock()
_watcher: threading.Thread | None = None


def thread_cpu_s(thread: threading.Thread) -> float | None:
    """CPU seconds a running thread has used (Linux and most Unixes), or None where that cannot be read."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError, OverflowError):
        return None


def demote_long(threads, long_s: float = LONG_S, done: set | None = None) -> list[threading.Thread]:
    """Lower to nice NICE each of `threads` that has used more than long_s CPU seconds (once each: `done`
    holds the native ids already lowered). Returns those lowered now."""
    done = set() if done is None else done
    lowered = []
    for t in threads:
        if t.native_id is None or t.native_id in done:
            continue
        used = thread_cpu_s(t)
        if used is not None and used > long_s:
            try:
                _lower(t.native_id)
            except OSError:  # the thread has just ended
                continue
            done.add(t.native_id)
            lowered.append(t)
    return lowered


def long_runs_yield(prefix: str = "ScriptRunner", long_s: float = LONG_S, every_s: float = 0.05) -> None:
    """Start, once per process, the daemon thread that keeps lowering long script runs (threads named
    prefix…); where thread priorities or CPU clocks are not available, nothing."""
    global _watcher
    with _watching:
        if _watcher is not None or not hasattr(time, "pthread_getcpuclockid"):
            return
        done: set[int] = set()

        def watch() -> None:
            while True:
                time.sleep(every_s)
                live = [t for t in threading.enumerate() if t.name.startswith(prefix)]
                demote_long(live, long_s, done)
                done.intersection_update(t.native_id for t in live)

        _watcher = threading.Thread(target=watch, name="long-runs-yield", daemon=True)
        _watcher.start()
