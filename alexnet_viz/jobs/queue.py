"""Background training jobs for the app: a visible queue, each run in its own process (worker.py).

A crash or an out-of-memory kill of a run ends that run only; the server, the other sessions and
the queue live on. Which jobs run at once (admission), first come first served:
- On a CPU (and Apple MPS), one at a time. A laptop has 2 to 8 cores that one run already keeps
  busy: two runs side by side each go at half speed, so the first result comes no sooner and both
  take twice as long. A queue with a visible place is the honest answer.
- On a CUDA GPU, the next job starts while the sum of the estimated training peaks of the running
  jobs and of this one fits the GPU's free memory: a classroom of small runs shares one GPU.
The first job of the queue always starts when nothing runs, so the queue never stalls.
Memory is shared with the server's other work: a job that passes that rule then takes its estimated
peak from the server's one memory budget (cost/budget.py), beside the analyses, feature
visualizations and top-9 passes of every session; it waits there ("waiting for memory: N ahead")
while they hold it, and ends with the budget's reason where it could never fit.

The manager never touches Streamlit: it appends plain dicts to the job, and the page polls.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from alexnet_viz.config import ArchConfig, TrainConfig
from alexnet_viz.cost.budget import MemoryBudget, OverBudget, Reservation, memory_budget, server_budget, waiting_words
from alexnet_viz.cost.estimate import estimate_training
from alexnet_viz.cost.profile import device_profile
from alexnet_viz.data import Dataset, load_fashion_mnist, pick_device
from alexnet_viz.runs.examples import copy_example, is_example
from alexnet_viz.runs.store import Run, RunError, step_curve
from alexnet_viz.jobs.worker import Worker, start_factory
from alexnet_viz.units import human

GRACE_S = 30.0  # after Stop, how long a run may take to end by itself before its process is ended


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
    tags: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    records: dict[str, list[dict]] = field(default_factory=dict)  # any other kind the engine yields
    device: str = "cpu"             # device type it trains on: cpu | cuda | mps
    need_bytes: int = 0             # estimated peak memory of its training
    need_s: float = 0.0             # estimated seconds of its training
    started: float | None = None    # time.time() when its process started
    stop_requested: bool = False
    reservation: Reservation | None = field(default=None, repr=False)  # its place in the server's memory

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def latest(self) -> dict | None:
        return self.steps[-1] if self.steps else None

    def remaining_s(self, now: float) -> float:
        """Seconds until it ends: the engine's own ETA once it runs, the estimate before."""
        last = self.latest()
        if last:
            return max(last["eta"] - (now - self.started - last["elapsed"]), 0.0) if self.started else last["eta"]
        return max(self.need_s - (now - self.started if self.started else 0.0), 0.0)


def fits(running: list[Job], job: Job, budget_bytes: int | None, shared: tuple[str, ...] = ("cuda",)) -> bool:
    """May `job` start beside `running`? On a `shared` device (CUDA) while memory lasts; else alone."""
    same = [j for j in running if j.device == job.device]
    if not same:
        return True
    if job.device not in shared or budget_bytes is None:
        return False
    return sum(j.need_bytes for j in same) + job.need_bytes <= budget_bytes


def estimated_starts(running: list[Job], queued: list[Job], budget_bytes: int | None, now: float,
                     shared: tuple[str, ...] = ("cuda",)) -> list[float]:
    """Seconds from now until each queued job starts, playing the admission rule forward in time."""
    active = [(j, now + j.remaining_s(now)) for j in running]
    t, out = now, []
    for job in queued:
        while not fits([j for j, _ in active], job, budget_bytes, shared):
            first = min(active, key=lambda a: a[1])
            active.remove(first)
            t = max(t, first[1])
        out.append(t - now)
        active.append((job, t + job.need_s))
    return out


def estimate(arch: ArchConfig, t: TrainConfig, n_train: int, device: str, n_test: int = 10_000) -> tuple[int, float]:
    """(peak bytes, seconds) of a whole training job, from the cost estimator (cost/estimate.py): its peak
    includes the process's own overhead (the CUDA context on a GPU)."""
    e = estimate_training(arch, t, n_train=n_train, device=device, n_test=n_test)
    return e.peak_memory_bytes, e.seconds_per_epoch * t.epochs


class JobManager:
    """Shared by every browser session (st.cache_resource); each job belongs to one owner.

    `budget_bytes` is the memory that jobs on a `shared_devices` device may share (default: the
    GPU's free memory when the manager starts); `estimate(arch, t, n_train, device, n_test) -> (bytes,
    seconds)` costs a job. Tests inject both to play a GPU's admission on a CPU. `memory(device) ->
    MemoryBudget` is the budget jobs share with the server's other work (default: the server's own).
    """

    def __init__(self, data_loader=load_fashion_mnist, budget_bytes: int | None = None, estimate=None,
                 grace_s: float = GRACE_S, shared_devices: tuple[str, ...] = ("cuda",),
                 warm: bool | None = None, memory=None, start_method: str = "forkserver"):
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._workers: dict[str, Worker] = {}
        self.start_method = start_method
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._load = data_loader
        self._data: Dataset | None = None
        self._data_lock = threading.Lock()
        self.budget_bytes = budget_bytes if budget_bytes is not None else _gpu_budget()
        self._estimate = estimate or globals()["estimate"]
        self._memory = memory or server_budget
        self.grace_s, self.shared = grace_s, shared_devices
        self._thread = threading.Thread(target=self._admit_forever, name="alexnet-viz-jobs", daemon=True)
        self._thread.start()
        # Warm: the device measured, then the fork server started, so that the first Start is as quick as
        # the next ones; in that order, as its torch import would halve the measured speed on 2 cores.
        # ALEXNET_VIZ_WARM_START=0 leaves both to the first job (the test suite: ~1 s per manager).
        if warm is None:
            warm = os.environ.get("ALEXNET_VIZ_WARM_START", "1") != "0"
        if warm:
            device_profile(pick_device("auto"))
            if start_method == "forkserver":
                start_factory()

    def data(self) -> Dataset:
        with self._data_lock:
            if self._data is None:
                self._data = self._load()
            return self._data

    def submit(self, owner: str, arch: ArchConfig, t: TrainConfig, resume_dir: str | None = None,
               tags: dict | None = None) -> Job:
        device = pick_device(t.device).type
        need_bytes, need_s = self._estimate(arch, t, len(self.data().train_y), device, len(self.data().test_y))
        with self._lock:
            job = Job(f"job{next(self._ids)}-{int(time.time())}", owner, arch, t, resume_dir=resume_dir,
                      tags=dict(tags or {}), device=device, need_bytes=int(need_bytes), need_s=float(need_s))
            self._jobs[job.id] = job
            self._queue.append(job)
            self._wake.notify_all()
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

    def estimated_start(self, job: Job) -> float | None:
        """Seconds until a queued job starts, from the estimates of the jobs ahead; None if not queued."""
        with self._lock:
            queued = list(self._queue)
            if job not in queued:
                return None
            starts = estimated_starts(list(self._running), queued[:queued.index(job) + 1], self.budget_bytes,
                                      time.time(), self.shared)
        return starts[-1]

    def admission_rule(self, job: Job | None = None) -> str:
        """One sentence for the page: why jobs wait here (and why this job waits, when it is memory)."""
        r = job.reservation if job is not None else None
        memory = ""
        if r is not None and not r.admitted and not r.released:
            memory = (f"{waiting_words(r.ahead).capitalize()}: it needs {human(r.nbytes, 'B')} of the "
                      f"{human(r.budget.capacity(), 'B')} that every session's work shares. ")
        if self.budget_bytes is None:
            return memory + "One training job runs at a time on this server's CPU."
        return memory + (f"Jobs on the GPU run side by side while their estimated memory fits "
                         f"{human(self.budget_bytes, 'B')}; the others wait their turn.")

    def stop(self, job: Job) -> None:
        with self._lock:
            job.stop_requested = True
            if job in self._queue:  # never started: nothing to save
                self._queue.remove(job)
                job.state, job.message = "stopped", "cancelled before it started"
                if job.reservation is not None:
                    job.reservation.release()
                self._wake.notify_all()
                return
            worker = self._workers.get(job.id)
        if worker is not None:  # the engine stops before its next batch; a stuck process is ended
            worker.stop.set()
            threading.Thread(target=worker.end, args=(self._grace(job),), daemon=True).start()

    def close(self) -> None:
        """Stop every job now (tests, server shutdown): queued ones are cancelled, running ones end."""
        for job in list(self._jobs.values()):
            if job.active:
                self.stop(job)
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.end(5)

    # --- the admission thread and one follower thread per running job ---------------------------
    def _admit_forever(self) -> None:
        while True:
            with self._lock:
                while True:
                    head = self._queue[0] if self._queue else None
                    if head is not None and fits(self._running, head, self.budget_bytes, self.shared):
                        if self._memory_for(head):
                            break
                        if head.reservation is not None and not head.reservation.released:
                            self._wake.wait(1.0)  # waiting for memory: look again as others release it
                            continue
                        continue  # refused: the next job is the head now
                    self._wake.wait()
                job = self._queue.popleft()
                job.state, job.started = "running", time.time()
                self._running.append(job)
            threading.Thread(target=self._follow, args=(job,), name=f"alexnet-viz-{job.id}", daemon=True).start()

    def _memory_for(self, job: Job) -> bool:
        """Whether the head job has its memory from the server's budget (joining its line the first
        time); a job that could never fit leaves the queue with the budget's reason. Under the lock."""
        if job.reservation is None:
            budget: MemoryBudget = self._memory(job.device)
            try:
                job.reservation = budget.join(job.need_bytes, f"training {job.arch.name}", in_process=False,
                                              advice="lower the batch size, the input size or the hidden widths")
            except OverBudget as e:
                self._queue.popleft()
                job.state, job.message = "error", str(e)
                return False
        return job.reservation.wait(0)  # admits it if the memory is there now

    def _follow(self, job: Job) -> None:
        try:
            self._train(job)
        except RunError as e:
            job.state, job.message = "error", str(e)
        except Exception as e:  # noqa: BLE001 - the manager must survive any one job
            job.state, job.message = "error", f"{type(e).__name__}: {e}"
        finally:
            if job.reservation is not None:
                job.reservation.release()
            with self._lock:
                self._running.remove(job)
                self._workers.pop(job.id, None)
                self._wake.notify_all()

    def _train(self, job: Job) -> None:
        ds = self.data()
        if job.resume_dir:  # the same run folder goes on: its metrics so far, then the new epochs after them
            if is_example(job.resume_dir):  # a shipped run never changes: its copy goes on instead
                job.resume_dir = str(copy_example(job.resume_dir, owner=job.owner).path)
            run = Run(job.resume_dir)
            run.set_train(job.train)
            kept = run.metrics()
            job.epochs = [m for m in kept if m.get("kind") == "epoch"]
            last = job.epochs[-1]["epoch"] if job.epochs else 0  # a stopped epoch is trained again
            job.steps = [m for m in step_curve(kept) if m["epoch"] <= last]
        else:
            run = Run.create(job.arch, job.train, ds.source, owner=job.owner, tags=job.tags)
        job.run_dir = str(run.path)
        with self._lock:
            worker = Worker(self.start_method)
            self._workers[job.id] = worker
            if job.stop_requested:
                worker.stop.set()
        done = float(run.status().get("epochs_done", 0) or 0)
        worker.start({"arch": job.arch, "train": job.train, "data": ds, "run_dir": job.run_dir,
                      "resume": bool(job.resume_dir), "done": done})
        end = None
        for r in worker.records():
            kind = r.get("kind")
            if kind == "step":
                job.steps.append(r)
            elif kind == "epoch":
                job.epochs.append(r)
                done = float(r["epoch"])
            elif kind == "end":
                end = r
                job.state, job.message = r["status"], r["message"]
                break
            else:
                job.records.setdefault(kind, []).append(r)
        worker.end(self._grace(job) if job.stop_requested else 5)
        worker.close()
        if end is None:  # the process died without its End record: say why, in the run folder too
            at = job.steps[-1]["epoch"] if job.steps else done
            if job.stop_requested:
                job.state = "stopped"
                job.message = (f"stopped by the user at epoch {at:.2f}; the process did not end within "
                               f"{self._grace(job):.0f} s and was ended; the last saved epoch is kept")
            else:
                job.state, job.message = "error", worker.death(at)
            run.set_status(job.state, job.message, epochs_done=done)

    def _grace(self, job: Job) -> float:
        """Stop waits for the batch in flight: GRACE_S, or 3 batches of this run if those are longer."""
        last = job.latest()
        per_batch = last["elapsed"] / max(last["step"], 1) if last else 0.0
        return max(self.grace_s, 3 * per_batch)


def _gpu_budget() -> int | None:
    """What the CUDA GPU has free now (None without one: jobs then run one at a time)."""
    if not torch.cuda.is_available():
        return None
    return memory_budget("cuda")
