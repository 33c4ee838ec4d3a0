"""Background training jobs for the app: one worker thread, one job at a time, a visible queue.

Jobs are serialized on every device. On a GPU two runs would fight for memory; on a 2-core
laptop CPU two runs side by side each go at half speed, so the first result would come no
sooner and both would take twice as long. A queue with a visible place is the honest answer.

The worker never touches Streamlit: it appends plain dicts to the job, and the page polls.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .config import ArchConfig, TrainConfig
from .data import Dataset, load_fashion_mnist
from .runs import Run, RunError, step_curve
from .train import train


@dataclass
class Job:
    id: str
    owner: str
    arch: ArchConfig
    train: TrainConfig
    state: str = "queued"           # queued | running | finished | stopped | error
    message: str = ""
    run_dir: str | None = None
    resume_dir: str | None = None
    tags: dict = field(default_factory=dict)   # saved in config.json, e.g. an experiment's variant and seed
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    records: dict[str, list[dict]] = field(default_factory=dict)  # other kinds: precision, internals, snapshot
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def latest(self) -> dict | None:
        return self.steps[-1] if self.steps else None


class JobManager:
    """Shared by every browser session (st.cache_resource); each job belongs to one owner."""

    def __init__(self, data_loader=load_fashion_mnist):
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._load = data_loader
        self._data: Dataset | None = None
        self._thread = threading.Thread(target=self._work, name="alexnet-viz-trainer", daemon=True)
        self._thread.start()

    def data(self) -> Dataset:
        if self._data is None:
            self._data = self._load()
        return self._data

    def submit(self, owner: str, arch: ArchConfig, t: TrainConfig, resume_dir: str | None = None,
               tags: dict | None = None) -> Job:
        """Queue a run; with `resume_dir` it continues that run's folder (same metrics, same curves)."""
        with self._lock:
            job = Job(f"job{next(self._ids)}-{int(time.time())}", owner, arch, t, resume_dir=resume_dir,
                      tags=dict(tags or {}))
            self._jobs[job.id] = job
            self._queue.append(job)
            self._wake.notify()
        return job

    def get(self, job_id: str | None, owner: str | None = None) -> Job | None:
        job = self._jobs.get(job_id or "")
        return job if job and (owner is None or job.owner == owner) else None

    def jobs_for(self, owner: str) -> list[Job]:
        return [j for j in self._jobs.values() if j.owner == owner]

    def place(self, job: Job) -> int:
        """0 = running now, n = n-th in the queue."""
        with self._lock:
            if job.state == "running":
                return 0
            return next((i + 1 for i, j in enumerate(self._queue) if j is job), 0)

    def stop(self, job: Job) -> None:
        job.stop.set()
        with self._lock:
            if job in self._queue:  # never started: nothing to save
                self._queue.remove(job)
                job.state, job.message = "stopped", "cancelled before it started"

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._wake.wait()
                job = self._queue.popleft()
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            ds = self.data()
            if job.resume_dir:  # the same folder: its metrics so far, then the new epochs after them
                run = resume = Run(job.resume_dir)
                run.set_train(job.train)
                kept = run.metrics()
                job.epochs = [m for m in kept if m.get("kind") == "epoch"]
                last = job.epochs[-1]["epoch"] if job.epochs else 0  # a stopped epoch is trained again
                job.steps = [m for m in step_curve(kept) if m["epoch"] <= last]
            else:
                run, resume = Run.create(job.arch, job.train, ds.source, owner=job.owner, tags=job.tags), None
            job.run_dir = str(run.path)
            for r in train(job.arch, job.train, ds, stop=job.stop, run=run, resume=resume):
                if r.kind == "step":
                    job.steps.append(r.to_dict())
                elif r.kind == "epoch":
                    job.epochs.append(r.to_dict())
                elif r.kind == "end":
                    job.state, job.message = r.status, r.message
                else:
                    job.records.setdefault(r.kind, []).append(r.to_dict())
        except RunError as e:
            job.state, job.message = "error", str(e)
        except Exception as e:  # noqa: BLE001 - the worker must survive any one job
            job.state, job.message = "error", f"{type(e).__name__}: {e}"
