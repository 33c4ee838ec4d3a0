"""Class experiments: one one-factor experiment that a whole class runs together, a seed per student.

The teacher starts one (an experiment and a budget) and gets a short code for a link (`?class=CODE`).
Every browser session that opens the link takes a seat: its own seed, kept for its session id, so a
reload finds the same seed. Each seat's runs are normal runs on disk, queued through the job manager
and tagged with the code; the projector pools every finished seed per variant (mean, spread, number
of seeds, the hedged sentence of `experiments.summarize_experiment`). The class lives in a small JSON
file under the runs folder (`classes/CODE.json`, written atomically under a file lock), so it
survives students leaving and the server restarting. No streamlit.
"""
from __future__ import annotations

import fcntl
import json
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from alexnet_viz.config import ArchConfig, ConfigError, TrainConfig
from alexnet_viz.cost.estimate import estimate_training
from alexnet_viz.data import pick_device
from alexnet_viz.jobs.queue import Job, estimated_starts
from alexnet_viz.runs.files import read_text, write_atomic
from alexnet_viz.runs.store import RunInfo, list_runs, runs_dir
from alexnet_viz.training.experiments import (EXPERIMENTS, Budget, base_network, collect_results, planned_runs,
                                              summarize_experiment)
from alexnet_viz.units import duration

# The default budget: one epoch of at most 40 batches of mini28 (5,120 images) per run. Measured on this
# project's 2-core CPU through the job manager (a process per run, its start and the test pass over
# 10,000 images included; tools/measure_class_budget.py, at real-time priority on a shared machine):
# 10 seeds × 2 variants took 122 s, 6.1 s a run, so 30 students × 2 variants = 60 runs take about
# 6 min, within the 10 minutes a class can wait, with room for a slower laptop. ReLU reached 0.74-0.79
# test accuracy there and sigmoid 0.43-0.60: the answer shows within the budget.
CLASS_BUDGET = Budget(epochs=1, max_batches=40, device="auto")
CLASS_SIZE = 30          # the class the default budget is sized for
# Seconds a run costs beyond the cost model's training and test pass: its process, the data handed to
# it, setting up the data on the device, snapshots and internals. Measured: a 5-batch mini28 run took
# 5.2-5.8 s end to end where the cost model says 0.6 s. With a warm spare process (0.4 s to the first
# step) a run of a queue still cost ~4 s beyond the model on 2 cores, as the next spare's import shared
# the CPU with it: 30 seats × 2 runs took 413 s, 6.9 s a run, where the model says 2.8 s. Runs now fork
# from a fork server (0.15 s to the first step, no import beside them); START_S is kept until measured.
START_S = 4.8
MAX_SEATS = 100          # a link opened from 100 sessions is a class; more are refused (each seat queues runs)
CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector
CODE_LEN = 5
CODE_RE = re.compile(f"[{CODE_CHARS}]{{{CODE_LEN}}}")
SID_MAX = 64             # characters of a session id kept in the class file
FILE_MAX = 256 * 1024    # what a class file may weigh when read
EPOCHS_MAX, BATCHES_MAX = 50, 100_000


class ClassError(RuntimeError):
    """A class code that names no class here, a damaged class file, or a full class; the message says which."""


@dataclass(frozen=True)
class ClassExperiment:
    code: str                     # the short code in the link
    experiment: str               # a key of EXPERIMENTS
    budget: Budget                # the same for every seat
    created: float                # time.time() when the teacher started it
    seats: dict[str, int] = field(default_factory=dict)  # session id -> its seed

    @property
    def set_id(self) -> str:
        """The runs' "set" tag: one set for the whole class, ordered in time like any other set."""
        return f"{int(self.created * 1000):x}"

    def to_dict(self) -> dict:
        return {"code": self.code, "experiment": self.experiment, "created": self.created, "seats": self.seats,
                "budget": {"epochs": self.budget.epochs, "max_batches": self.budget.max_batches,
                           "device": self.budget.device}}


def classes_dir(root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / "classes"


def _path(code: str, root: Path | None) -> Path:
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        raise ClassError(f"{str(code)[:20]!r} is not a class code ({CODE_LEN} letters and digits)")
    return classes_dir(root) / f"{code}.json"


def _parse(d: object, code: str) -> ClassExperiment:
    """A class file's contents, checked field by field (the runs folder is anyone's to fill)."""
    try:
        b = d["budget"]
        budget = Budget(int(b["epochs"]), int(b["max_batches"]), str(b["device"]))
        seats = {str(k)[:SID_MAX]: int(v) for k, v in dict(d["seats"]).items()}
        cls = ClassExperiment(str(d["code"]), str(d["experiment"]), budget, float(d["created"]), seats)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ClassError(f"class {code}: its file is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    if cls.code != code or cls.experiment not in EXPERIMENTS:
        raise ClassError(f"class {code}: its file names another class or an unknown experiment")
    if not (1 <= budget.epochs <= EPOCHS_MAX and 0 <= budget.max_batches <= BATCHES_MAX
            and budget.device in ("auto", "cpu", "cuda", "mps")):
        raise ClassError(f"class {code}: its budget is out of range")
    return cls


def _read(path: Path, code: str) -> ClassExperiment:
    try:
        return _parse(json.loads(read_text(path, FILE_MAX)), code)
    except FileNotFoundError:
        raise ClassError(f"there is no class experiment {code} on this server (it may have been started on "
                         f"another one)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise ClassError(f"class {code}: its file cannot be read ({str(e)[:80]})") from None


def _write(cls: ClassExperiment, root: Path | None) -> None:
    write_atomic(_path(cls.code, root), json.dumps(cls.to_dict(), indent=1))


@contextmanager
def _locked(root: Path | None):
    """One writer of the class files at a time (sessions are threads of one server, or its processes)."""
    folder = classes_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_budget(experiment: str, budget: Budget) -> None:
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    if not (1 <= budget.epochs <= EPOCHS_MAX and 0 <= budget.max_batches <= BATCHES_MAX):
        raise ConfigError(f"a class budget is 1 to {EPOCHS_MAX} epochs of 0 to {BATCHES_MAX:,} batches")


def start_class(experiment: str, budget: Budget = CLASS_BUDGET, root: Path | None = None) -> ClassExperiment:
    """A new class experiment with a fresh code, written to disk; nobody has joined yet."""
    check_budget(experiment, budget)
    with _locked(root):
        for _ in range(100):
            code = "".join(secrets.choice(CODE_CHARS) for _ in range(CODE_LEN))
            if not _path(code, root).exists():
                break
        cls = ClassExperiment(code, experiment, budget, time.time())
        _write(cls, root)
    return cls


def load_class(code: str, root: Path | None = None) -> ClassExperiment:
    """The class experiment of `code`; ClassError (one sentence) when there is none or it is damaged."""
    return _read(_path(code, root), code)


def join_class(code: str, sid: str, root: Path | None = None) -> tuple[ClassExperiment, int]:
    """This session's seat: its seed, the same one on every reload (kept for `sid`), a new one (the next
    free) on its first visit."""
    sid = str(sid)[:SID_MAX]
    with _locked(root):
        cls = load_class(code, root)
        if sid in cls.seats:
            return cls, cls.seats[sid]
        if len(cls.seats) >= MAX_SEATS:
            raise ClassError(f"class {code} is full ({MAX_SEATS} seats)")
        seed = max(cls.seats.values(), default=-1) + 1
        cls = replace(cls, seats={**cls.seats, sid: seed})
        _write(cls, root)
    return cls, seed


def seat_plan(cls: ClassExperiment, seed: int,
              base: tuple[ArchConfig, TrainConfig] | None = None) -> list[tuple[ArchConfig, TrainConfig, dict]]:
    """The runs of one seat: every variant of the class's experiment with its budget and this seed."""
    return [(a, t, {**tags, "set": cls.set_id, "class": cls.code})
            for a, t, tags in planned_runs([cls.experiment], cls.budget, [seed], base or base_network())]


def class_runs(cls: ClassExperiment, root: Path | None = None) -> list[RunInfo]:
    """Every run on disk of this class, whoever's session trained it."""
    return [r for r in list_runs(root, examples=False) if isinstance(r.tags, dict) and r.tags.get("class") == cls.code]


def queue_seat(manager, cls: ClassExperiment, sid: str, seed: int, root: Path | None = None,
               base: tuple[ArchConfig, TrainConfig] | None = None) -> list[Job]:
    """Queue the seat's runs that are neither on disk (running or finished) nor waiting in the queue:
    a reload queues nothing new, a run lost to a server restart is queued again."""
    def key(tags: dict) -> tuple:
        return tags.get("variant"), tags.get("seed")
    have = {key(r.tags) for r in class_runs(cls, root) if r.state in ("running", "finished")}
    have |= {key(j.tags) for j in manager.jobs_for(sid) if j.active and j.tags.get("class") == cls.code}
    return [manager.submit(sid, a, t, tags=tags) for a, t, tags in seat_plan(cls, seed, base)
            if key(tags) not in have]


def pool_results(runs: list[RunInfo], cls: ClassExperiment) -> dict[str, list[dict]]:
    """Variant label -> the final epoch record of each finished seed, in the experiment's variant order.
    A seed trained twice (queued again after a restart) counts once."""
    seen, once = set(), []
    for r in runs:
        key = (r.tags.get("variant"), r.tags.get("seed"))
        if r.tags.get("class") == cls.code and r.state == "finished" and key not in seen:
            seen.add(key)
            once.append(r)
    return collect_results(once, cls.experiment)


def pooled_summary(runs: list[RunInfo], cls: ClassExperiment) -> tuple[list[dict], str]:
    """The projector's table (per variant: mean, seed spread, seeds) and the sentence its numbers allow."""
    return summarize_experiment(pool_results(runs, cls))


def estimate_class_seconds(experiment: str, budget: Budget, students: int, n_train: int, n_test: int,
                           budget_bytes: int | None = None) -> float:
    """Seconds until every run of `students` seats has finished, queued at once on this server: the
    cost model's time of each run plus its start (START_S), played through the job manager's
    admission rule (on a CPU one after another; on a GPU side by side while memory lasts)."""
    if students <= 0:
        return 0.0
    device = pick_device(budget.device).type
    costs = {}  # a seat's runs differ from another's by the seed only, which costs nothing: each variant once
    for a, t, tags in planned_runs([experiment], budget, [0]):
        e = estimate_training(a, t, n_train=n_train, device=device, n_test=n_test)
        costs[tags["variant"]] = (e.peak_memory_bytes, e.run_seconds + START_S)
    jobs = [Job(str(i), "", a, t, device=device, need_bytes=costs[tags["variant"]][0], need_s=costs[tags["variant"]][1])
            for i, (a, t, tags) in enumerate(planned_runs([experiment], budget, list(range(students))))]
    starts = estimated_starts([], jobs, budget_bytes, 0.0)
    return max(s + j.need_s for s, j in zip(starts, jobs))


def class_progress(cls: ClassExperiment, runs: list[RunInfo]) -> dict:
    """Seats, runs wanted, finished and failed so far."""
    per_seat = len(EXPERIMENTS[cls.experiment].variants)
    done = {(r.tags.get("variant"), r.tags.get("seed")) for r in runs if r.state == "finished"}
    failed = {(r.tags.get("variant"), r.tags.get("seed")) for r in runs if r.state in ("error", "damaged")} - done
    return {"seats": len(cls.seats), "runs": per_seat * len(cls.seats), "finished": len(done),
            "failed": len(failed)}


def describe_class_cost(experiment: str, budget: Budget, students: int, n_train: int, n_test: int,
                        budget_bytes: int | None = None, finished: int = 0) -> str:
    """What the class costs, in one sentence: its runs and how long they take here (estimated), and with
    `finished` runs done, about how long is left."""
    per_seat = len(EXPERIMENTS[experiment].variants)
    total = estimate_class_seconds(experiment, budget, students, n_train, n_test, budget_bytes)
    runs = per_seat * students
    how = "one after another" if budget_bytes is None else "side by side while the GPU's memory lasts"
    line = (f"{students} student{'s' if students != 1 else ''} × {per_seat} variants = {runs} runs of "
            f"{budget.epochs} epoch{'s' if budget.epochs != 1 else ''} "
            f"{f'of at most {budget.max_batches:,} batches' if budget.max_batches else 'of the whole training set'}: "
            f"about {duration(total)} on this machine, {how} (estimated: the cost model and each run's start)")
    if runs and 0 < finished < runs:
        line += f"; {finished} of {runs} finished, about {duration(total * (runs - finished) / runs)} left"
    elif runs and finished >= runs:
        line += f"; all {runs} finished"
    return line + "."
