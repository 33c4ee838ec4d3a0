"""Work too slow for a slider step (a top-9 pass over the test set, a feature visualization), run
in a background thread while the page stays responsive, and shared by every session.

One worker by default: each job uses every core, so two at once only slow both. A second ask for
the same (model, key) gets the same job. A queued job that nobody has asked about for `stale_s`
seconds is dropped before it starts (the student has moved on to another layer): pages that wait
for a job touch it as they poll.
"""
from __future__ import annotations

import inspect
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Hashable

STALE_S = 10.0
KEEP = 64  # finished jobs remembered per model (their results are small or shared with a cache)


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
        from alexnet_viz.cost.budget import waiting_words
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
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="explore-background")
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
