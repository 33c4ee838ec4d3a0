"""The runs that ship with the app, so that it has something to show before anyone trains.

`alexnet_viz/assets/runs/` holds normal run folders (see store.py), built by
`tools/build_examples.py`: `mini28/`, a finished mini28 trained on the full Fashion-MNIST (with its
snapshots and internals), and the runs of one finished experiment, ReLU vs sigmoid with two seeds
(without snapshots). `store.list_runs()` lists them after a user's own runs, marked `example`.

Their files never change: deleting one is refused, and resuming one first copies it into a new
run folder under the user's runs folder, which then trains on. Where they are (EXAMPLES) and
whether a path is one of them (is_example) is known to store.py, which lists them and refuses to
write them; this module gives them as Runs and copies them.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from alexnet_viz.runs import store
from alexnet_viz.runs.store import EXAMPLES, TRAINED, Run, RunError, example_folders, is_example, new_run_folder

__all__ = ["EXAMPLES", "is_example", "example_runs", "example_run", "copy_example"]


def example_runs() -> list[Run]:
    """Every shipped run: the trained mini28 first, then the experiment's runs by name."""
    return [Run(p) for p in example_folders()]


def example_run() -> Run | None:
    """The shipped trained mini28, or None when this copy of the app has none (or no weights)."""
    p = store.EXAMPLES / TRAINED  # read where it is set (a test points it at a folder without them)
    return Run(p) if (p / "config.json").is_file() and (p / "weights.pt").is_file() else None


def copy_example(path, root: Path | None = None, owner: str = "") -> Run:
    """A new run folder under `root` (the runs folder by default) holding a copy of the shipped run
    at `path`, owned by `owner`, ready to resume: the shipped files are only read."""
    src = Path(path)
    if not is_example(src) or not (src / "config.json").is_file():
        raise RunError(f"{src} is not a shipped example run")
    try:
        dest = new_run_folder(root, f"{src.name}-copy")
    except OSError as e:
        raise RunError(f"cannot make a run folder for the copy of {src.name}: {e.strerror or e}") from None
    try:
        for f in src.rglob("*"):
            if f.is_file() and not f.is_symlink() and f.name != "heartbeat":
                target = dest / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
        raw = json.loads((dest / "config.json").read_text())
        # a copy is the user's own run: it leaves the shipped experiment (its tags would count it there)
        raw.update(owner=owner, created=time.time(), tags={"copied_from": f"{src.name} (shipped example)"})
        (dest / "config.json").write_text(json.dumps(raw, indent=2))
    except (OSError, ValueError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise RunError(f"cannot copy the shipped run {src.name}: {getattr(e, 'strerror', None) or e}") from None
    return Run(dest)
