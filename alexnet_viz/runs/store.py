"""Runs on disk. One folder a run:

    config.json     {"arch": ..., "train": ..., "data": ..., "created": ..., "owner": ..., "tags": {...}}
    metrics.jsonl   one JSON record a line, appended as they arrive
    status.json     {"state": running|finished|stopped|error, "message", "pid", "pid_start", "epochs_done"}
    heartbeat       touched every HEARTBEAT_S seconds while a training process runs
    weights.pt      {"model", "optimizer", "epoch"}: written to a temp file, then renamed
    test_preds.npy  the test-set predictions of the saved weights
    snapshots/      the weights at a few moments of training (see snapshots.py)
    internals.jsonl per-layer gradient norms, update ratios, dead units, histograms (see internals.py)

Weights are only ever read with torch.load(weights_only=True).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from alexnet_viz.config import ArchConfig, ConfigError, TrainConfig
from alexnet_viz.model import build_model
from alexnet_viz.runs.snapshots import find, read_index
from alexnet_viz.runs.files import BadFile, open_regular, read_npy, read_text, write_atomic
from alexnet_viz.units import GB, KB, MB


HEARTBEAT_S = 5.0  # how often a training process says it is alive
STALE_S = 30.0     # a "running" run silent for longer than this is shown as stopped


# What a run's files may weigh when read (a run folder is anyone's to fill: see files.py).
STATUS_MAX = 64 * KB
CONFIG_MAX = 1 * MB
METRICS_MAX = 16 * MB   # metrics.jsonl and internals.jsonl: beyond this, their newest records only
PREDS_MAX = 16 * MB     # test_preds.npy: int16 per test image
WEIGHTS_MAX = 8 * GB    # weights.pt and snapshots: far above what the config limits allow
PARSE_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError)
NUMBERS = {"epoch": ("epoch", "train_loss", "train_acc", "test_acc", "examples_per_sec", "elapsed"),
           "step": ("epoch", "step", "loss", "acc", "examples_per_sec", "elapsed", "eta", "progress")}
# What a record must hold to be drawn (older and hand-made epoch records may lack the speed)
REQUIRED = {"epoch": ("epoch", "train_loss", "train_acc", "test_acc"), "step": NUMBERS["step"]}
STATES = ("running", "finished", "stopped", "error", "unknown", "damaged")


class RunError(RuntimeError):
    """A run folder that cannot be read or written; the message says which file and why."""


def runs_dir() -> Path:
    return Path(os.environ.get("ALEXNET_VIZ_RUNS", "runs"))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_start(pid: int | None) -> str | None:
    """When the kernel started process `pid` (Linux), so that a reused pid is told apart; None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def _dead_because(st: dict, heartbeat: Path) -> str | None:
    """Why a run whose status says "running" is not running any more; None while it is alive."""
    pid = st.get("pid") if isinstance(st.get("pid"), int) else None
    if not _pid_alive(pid):
        return "killed or crashed"
    started = st.get("pid_start")
    if started is not None and _pid_start(pid) not in (None, started):
        return "killed or crashed; its process id now belongs to another program"
    try:
        silent = time.time() - heartbeat.stat().st_mtime
    except OSError:
        return None  # a run trained without a heartbeat (the engine called directly): the pid says it all
    if silent > STALE_S:
        return f"no sign of life for {silent:.0f} s"
    return None


EXAMPLES: Path = Path(__file__).resolve().parent.parent / "assets" / "runs"  # shipped runs (examples.py)
TRAINED = "mini28"  # the shipped run folder of the trained network


def is_example(path) -> bool:
    """Whether `path` is a shipped run folder or a file inside one (symlinks and `..` resolved)."""
    try:
        p = Path(path).resolve()
    except (OSError, RuntimeError, TypeError, ValueError):
        return False
    return EXAMPLES in p.parents


def example_folders() -> list[Path]:
    """The shipped run folders: the trained mini28 first, then the experiment's runs by name."""
    if not EXAMPLES.is_dir():
        return []
    return sorted((p for p in EXAMPLES.iterdir() if p.is_dir() and (p / "config.json").is_file()),
                  key=lambda p: (p.name != TRAINED, p.name))


def new_run_folder(root: Path | None, name: str) -> Path:
    """A new, empty folder under `root` (the runs folder by default) named after the time and `name`;
    OSError when it cannot be made."""
    root = Path(root or runs_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:60].strip("-") or "net"
    root.mkdir(parents=True, exist_ok=True)
    for n in range(100):
        path = root / (f"{stamp}-{slug}" if n == 0 else f"{stamp}-{slug}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise OSError(f"100 runs named {stamp}-{slug} already exist")


@dataclass
class Run:
    path: Path
    # per log file, the records metrics() last skipped, as "line N: an epoch record without epoch"
    skipped: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)

    @staticmethod
    def create(arch: ArchConfig, train: TrainConfig, data_source: str, root: Path | None = None,
               owner: str = "", tags: dict | None = None) -> "Run":
        root = Path(root or runs_dir())
        made = None
        try:
            made = new_run_folder(root, arch.name)
            run = Run(made)
            (made / "config.json").write_text(json.dumps(
                {"arch": arch.to_dict(), "train": train.to_dict(), "data": data_source,
                 "created": time.time(), "owner": owner, "tags": dict(tags or {})}, indent=2))
            run.set_status("running")
        except OSError as e:
            if made is not None:  # a half-made folder is no run: leave nothing behind
                shutil.rmtree(made, ignore_errors=True)
            why = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise RunError(f"cannot write the run folder under {root}: {why} — "
                           f"free some disk space or set ALEXNET_VIZ_RUNS to a writable folder") from None
        return run

    @property
    def example(self) -> bool:
        """A run shipped with the app (see examples.py): its files are never written."""
        return is_example(self.path)

    def _check_writable(self) -> None:
        if self.example:
            raise RunError(f"{self.path.name} is an example shipped with the app: its files never change — "
                           f"resuming it trains a copy in a new run folder")

    # --- writing -------------------------------------------------------------------------------
    def append_metric(self, record: dict) -> None:
        self._check_writable()
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def append_internals(self, record: dict) -> None:
        with open(self.path / "internals.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def set_status(self, state: str, message: str = "", epochs_done: float = 0) -> None:
        data = {"state": state, "message": message, "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                "epochs_done": epochs_done, "updated": time.time()}
        self._check_writable()
        write_atomic(self.path / "status.json", json.dumps(data))

    def set_train(self, train: TrainConfig) -> None:
        """New training settings for a resumed run (more epochs); the rest of config.json stays."""
        self._check_writable()
        _, _, raw = self.config()
        raw["train"] = train.to_dict()
        write_atomic(self.path / "config.json", json.dumps(raw, indent=2))

    @contextmanager
    def heartbeat(self):
        """While inside, a thread touches `heartbeat` every HEARTBEAT_S s: a dead run is seen as dead."""
        beat, done = self.path / "heartbeat", threading.Event()

        def touch():
            try:
                beat.touch()
            except OSError:
                pass  # the folder was deleted or the disk is full: the run itself will say so

        def beat_forever():
            while not done.wait(HEARTBEAT_S):
                touch()
        touch()
        thread = threading.Thread(target=beat_forever, name="alexnet-viz-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def save_checkpoint(self, model: torch.nn.Module, optimizer, epoch: float, preds: np.ndarray | None) -> None:
        self._check_writable()
        state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "optimizer": optimizer.state_dict() if optimizer is not None else {}, "epoch": float(epoch)}
        write_atomic(self.path / "weights.pt", lambda f: torch.save(state, f))
        preds_path = self.path / "test_preds.npy"
        if preds is not None:
            write_atomic(preds_path, lambda f: np.save(f, preds))
        else:  # stopped mid-epoch: old predictions no longer match these weights
            preds_path.unlink(missing_ok=True)

    # --- reading -------------------------------------------------------------------------------
    def config(self) -> tuple[ArchConfig, TrainConfig, dict]:
        try:
            raw = self.raw_config()
            return ArchConfig.from_dict(raw["arch"]), TrainConfig.from_dict(raw.get("train", {})), raw
        except ConfigError as e:
            raise RunError(f"{self.path.name}: config.json describes a network that cannot work: {e}") from None
        except PARSE_ERRORS as e:
            raise RunError(f"{self.path.name}: config.json cannot be read ({e})") from None

    def raw_config(self) -> dict:
        """config.json as a dict whose "arch", "train", "owner" and "tags" have the right types."""
        try:
            raw = json.loads(read_text(self.path / "config.json", CONFIG_MAX))
        except PARSE_ERRORS as e:
            raise RunError(f"config.json cannot be read ({_first_line(e)})") from None
        if not isinstance(raw, dict):
            raise RunError(f"config.json holds a {type(raw).__name__}, not an object")
        for key, kind in (("arch", dict), ("train", dict), ("owner", str), ("tags", dict)):
            if key in raw and not isinstance(raw[key], kind):
                raise RunError(f"config.json: {key} is a {type(raw[key]).__name__}, not a {kind.__name__}")
        if "arch" not in raw:
            raise RunError("config.json has no arch")
        return raw

    def metrics(self, name: str = "metrics.jsonl") -> list[dict]:
        """The records of a JSON-lines log, oldest first (its newest METRICS_MAX bytes only).
        A line cut short by a kill is skipped; a record of the wrong shape is a RunError; an epoch
        or step record without the numbers it must have is skipped and named in `self.skipped[name]`."""
        try:
            text = read_text(self.path / name, METRICS_MAX, tail=True)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RunError(_first_line(e)) from None
        out, skipped = [], []
        for n, line in enumerate(text.splitlines(), 1):
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by a kill: everything before it still counts
            if not isinstance(rec, dict):
                raise RunError(f"{name} line {n} holds a {type(rec).__name__}, not a record")
            for key in NUMBERS.get(rec.get("kind"), ()):
                if key in rec and not _is_number(rec[key]):
                    raise RunError(f"{name} line {n}: {key} is {type(rec[key]).__name__}, not a number")
            missing = [k for k in REQUIRED.get(rec.get("kind"), ()) if k not in rec]
            if missing:  # drawn, it would be a KeyError: the rest of the log still counts
                skipped.append(f"line {n}: {'an' if rec['kind'][0] in 'aeiou' else 'a'} {rec['kind']} record "
                               f"without {', '.join(missing)}")
                continue
            out.append(rec)
        self.skipped[name] = skipped
        return out

    def status(self) -> dict:
        try:
            st = json.loads(read_text(self.path / "status.json", STATUS_MAX))
        except FileNotFoundError:
            return {"state": "unknown", "message": "status.json missing"}
        except PARSE_ERRORS as e:
            return {"state": "damaged", "message": f"status.json cannot be read ({_first_line(e)})"}
        problem = _status_problem(st)
        if problem:
            return {"state": "damaged", "message": f"status.json: {problem}"}
        why = _dead_because(st, self.path / "heartbeat") if st.get("state") == "running" else None
        if why:
            st = {**st, "state": "stopped", "message": f"the training process ended without finishing "
                                                      f"({why}); the last saved epoch is kept"}
        return st

    def _load_weights(self, path: Path, prefix: str, what: str):
        """torch.load(weights_only=True) of a regular, size-capped file; any failure is a RunError."""
        try:
            with open_regular(path, WEIGHTS_MAX) as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        except BadFile as e:
            raise RunError(f"{self.path.name}: {prefix}{e}") from None
        except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
            raise RunError(f"{self.path.name}: {what} is damaged or not a weights file "
                           f"({type(e).__name__})") from None

    def checkpoint(self) -> dict:
        path = self.path / "weights.pt"
        if not path.exists() and not path.is_symlink():
            raise RunError(f"{self.path.name}: no weights saved yet (they are written at each epoch end)")
        ck = self._load_weights(path, "", "weights.pt")
        if not isinstance(ck, dict) or "model" not in ck:
            raise RunError(f"{self.path.name}: weights.pt does not hold a model state")
        return ck

    def internals(self) -> list[dict]:
        return self.metrics("internals.jsonl")

    def snapshots(self) -> list[dict]:
        """The kept snapshots, oldest first: {"label", "epoch", "step", "file"} each."""
        return [{k: v for k, v in s.to_dict().items() if k in ("label", "epoch", "step", "file")}
                for s in read_index(self.path)]

    def snapshot_state(self, at: float | str) -> tuple[dict, str]:
        """(model state, label) of the snapshot named or nearest to `at` (an epoch or a label)."""
        snaps = read_index(self.path)
        s = find(snaps, at)
        if s is None:
            have = ", ".join(x.label for x in snaps) or "none"
            raise RunError(f"{self.path.name}: no snapshot {at!r} (kept: {have})")
        state = self._load_weights(self.path / "snapshots" / Path(s.file).name, "snapshot ", f"snapshot {s.file}")
        if not isinstance(state, dict):
            raise RunError(f"{self.path.name}: snapshot {s.file} does not hold a model state")
        return state, s.label

    def load_model(self, at: float | str | None = None) -> torch.nn.Module:
        """The saved model: its final weights, or (with `at`) the snapshot at that epoch or label."""
        arch, _, _ = self.config()
        model = build_model(arch)
        state = self.checkpoint()["model"] if at is None else self.snapshot_state(at)[0]
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except (RuntimeError, AttributeError) as e:
            raise RunError(f"{self.path.name}: weights do not fit its config ({str(e).splitlines()[0]})") from None
        return model.eval()

    def test_preds(self) -> np.ndarray | None:
        """One predicted class per test image, or None (none saved, or not such an array)."""
        try:
            a = read_npy(self.path / "test_preds.npy", PREDS_MAX)  # believed only where its header adds up
        except OSError:
            return None
        ok = isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "iu" and (a.size == 0 or a.min() >= 0)
        return a if ok else None


@dataclass(frozen=True)
class RunInfo:
    path: str
    name: str
    preset: str
    state: str
    message: str
    epochs_done: float
    test_acc: float | None
    owner: str
    epochs: tuple[dict, ...]  # the per-epoch metric records, for comparing runs
    tags: dict = field(default_factory=dict)     # e.g. {"experiment", "variant", "seed"}: see experiments.py
    config: dict = field(default_factory=dict)   # config.json's {"arch", "train"}, to show what differs
    example: bool = False                        # shipped with the app (examples.py): never deleted or written


def list_runs(root: Path | None = None, owners: Collection[str] | None = None,
              examples: bool | None = None, paths: Collection[str] = ()) -> list[RunInfo]:
    """Runs newest first (of `owners` only, if given; "" = made from the command line; and those at
    `paths`, whoever made them); unreadable folders are listed with their problem, not skipped silently.
    Then, marked `example`, the runs shipped with the app (everyone's, so `owners` leaves them in): by
    default when listing the app's runs folder (no `root`), not a folder named by the caller.
    Another owner's run is passed over on its config alone: in a class of thirty, the pages that list
    one student's runs do not read everyone's metrics on every script run."""
    root_given = root is not None
    root = Path(root or runs_dir())
    out = []
    for p in sorted(root.iterdir(), reverse=True) if root.is_dir() else ():
        if not (p / "config.json").exists() and not (p / "config.json").is_symlink():
            continue
        run = Run(p)
        if owners is None or str(p) in paths or _owner(run) in owners:
            out.append(_info(run))
    if examples if examples is not None else not root_given:
        out += [replace(_info(Run(p)), example=True) for p in example_folders()]
    return out


def _owner(run: Run) -> str:
    """Who made the run, as its config says ("" when it cannot be read: listed as damaged, with the CLI's)."""
    try:
        return str(run.raw_config().get("owner", ""))
    except RunError:
        return ""


def _info(run: Run) -> RunInfo:
    """One line of the list; whatever is wrong in the folder makes it "damaged (why)", nothing worse."""
    p = run.path
    try:
        raw = run.raw_config()
    except RunError as e:
        return RunInfo(str(p), p.name, "?", "damaged", str(e), 0.0, None, "", ())
    who, tags = raw.get("owner", ""), raw.get("tags", {})
    try:
        st = run.status()
        epochs = [m for m in run.metrics() if m.get("kind") == "epoch"]
        done = st.get("epochs_done", len(epochs))
        message = st.get("message", "")
        if skipped := run.skipped.get("metrics.jsonl"):
            more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            message = f"{message} · metrics.jsonl: skipped {skipped[0]}{more}".lstrip(" ·")
        return RunInfo(str(p), p.name, str(raw["arch"].get("name", "?")), st["state"], message,
                       float(done), epochs[-1].get("test_acc") if epochs else None, who, tuple(epochs), tags,
                       {"arch": raw["arch"], "train": raw.get("train") or {}})
    except RunError as e:
        why = str(e)
    except Exception as e:  # noqa: BLE001 - one odd folder must not break the list for everyone
        why = f"{type(e).__name__}: {_first_line(e)}"
    return RunInfo(str(p), p.name, str(raw["arch"].get("name", "?")), "damaged", why, 0.0, None, who, (), tags)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _status_problem(st) -> str | None:
    if not isinstance(st, dict):
        return f"holds a {type(st).__name__}, not an object"
    if st.get("state") not in STATES:
        return f"unknown state {str(st.get('state'))[:40]!r}"
    if not isinstance(st.get("message", ""), str):
        return "message is not text"
    for key in ("epochs_done", "updated"):
        if key in st and not _is_number(st[key]):
            return f"{key} is {type(st[key]).__name__}, not a number"
    if "pid" in st and st["pid"] is not None and not (isinstance(st["pid"], int) and not isinstance(st["pid"], bool)):
        return "pid is not a number"
    return None


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def step_curve(metrics: list[dict]) -> list[dict]:
    """The Step records as one curve: where a resumed run trained part of an epoch again (it was
    stopped inside it), the second pass replaces the first."""
    out: list[dict] = []
    for m in metrics:
        if m.get("kind") == "step":
            while out and out[-1]["epoch"] >= m["epoch"]:
                out.pop()
            out.append(m)
    return out


def delete_run(path: str | Path) -> None:
    p = Path(path)
    if is_example(p):
        raise RunError(f"{p.name} is an example shipped with the app: it cannot be deleted "
                       f"(resuming it trains a copy of your own, which you can delete)")
    if not ((p / "config.json").exists() or (p / "config.json").is_symlink()) or p.is_symlink():
        raise RunError(f"{p} is not a run folder")
    shutil.rmtree(p)


def best_first(runs: list[RunInfo]) -> list[RunInfo]:
    """Runs to look at: one's own before the shipped examples; among each, finished ones with
    weights first, highest test accuracy first; then the others (still training, stopped, no
    weights yet), newest first as listed."""
    def done(r: RunInfo) -> bool:
        return r.state == "finished" and (Path(r.path) / "weights.pt").exists()
    return sorted(runs, key=lambda r: (r.example, not done(r), -(r.test_acc or 0.0) if done(r) else 0.0))


def has_weights(r: RunInfo) -> bool:
    return (Path(r.path) / "weights.pt").exists()
