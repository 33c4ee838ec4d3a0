"""One training run in its own process, so that a crash or an out-of-memory kill ends that run only.

The job manager (queue.py) starts `child_main` with the "forkserver" start method: a fork server,
started once, imports torch, torch._dynamo and the engine (2-4 s on 2 cores), and each run's process
is forked from it in ~0.03 s, with no thread state copied from the server (which has many threads, so
it never forks itself). The child takes the server's environment and folder of the moment it is
made (a fork server keeps those of its own start), as a spawned one would. It receives one spec over
its pipe (the network, the settings, the run folder and the uint8 dataset, which travels as shared
memory, not as a copy), trains with the same engine as the CLI, and sends every record back as a
plain dict, whatever its kind. Stop is a shared Event that the engine checks before every batch.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import types

import torch
import torch._dynamo  # noqa: F401 - an optimizer's first construction imports it: 1.5-2.4 s, once, in the fork server
import torch.multiprocessing  # noqa: F401 - registers the reducers that pass tensors as shared memory

from alexnet_viz.runs.store import Run
from alexnet_viz.training.engine import hold_freed_memory, train

# A run's process yields the CPU to the server's page scripts (nice 10: about a tenth of a busy core's
# share against the server's): a page answers as quickly beside a training run as without one, and the
# run takes what the pages leave, which is nearly all of it while its watchers only poll (bench classroom).
NICE = 10
METHODS = ("forkserver", "spawn")  # the app's; a fresh interpreter per run (bench startup's baseline)
mp.get_context("forkserver").set_forkserver_preload([__name__])
_STARTING = threading.Lock()


@contextlib.contextmanager
def _blank_main():
    """No `__main__` to re-import in a child, for the moment of a start.

    Both start methods re-import `__main__` in the child; under Streamlit that module is the page
    script (app.py), which would draw the whole app in the child. An empty stand-in is shown instead.
    """
    with _STARTING:
        real, blank = sys.modules["__main__"], types.ModuleType("__main__")
        sys.modules["__main__"] = blank
        try:
            yield
        finally:
            if sys.modules.get("__main__") is blank:  # unless Streamlit set its own meanwhile
                sys.modules["__main__"] = real


def start_factory() -> None:
    """Start the fork server now (it imports torch in the background), so that the first run starts as
    quickly as the next ones; without this it starts with the first run."""
    with _blank_main():
        multiprocessing.forkserver.ensure_running()


def child_main(conn, stop, env: dict, cwd: str) -> None:
    """The child process: one run, its records sent back as they come."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C on the server is the server's to handle
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    os.nice(NICE)
    hold_freed_memory()
    try:
        spec = conn.recv()
    except EOFError:  # the server closed or went away before giving it a job
        return
    run = Run(spec["run_dir"])
    run.set_status("running", epochs_done=spec["done"])  # this process's pid, for Run.status()
    with run.heartbeat():
        resume = run if spec["resume"] else None
        for r in train(spec["arch"], spec["train"], spec["data"], stop=stop, run=run, resume=resume):
            try:
                conn.send(r.to_dict())
            except OSError:  # the server is gone: stop after this batch, saving the weights
                stop.set()
    conn.close()


class Worker:
    """The server's handle on one child process: start it, read its records, end it."""

    def __init__(self, method: str = "forkserver"):
        ctx = mp.get_context(method)
        self.stop = ctx.Event()
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=child_main, args=(child, self.stop, dict(os.environ), os.getcwd()),
                                daemon=True, name="alexnet-viz-run")
        with _blank_main():
            self.proc.start()
        child.close()  # only the child holds its end now: its death reads as end-of-file here

    def start(self, spec: dict) -> None:
        self._conn.send(spec)

    def records(self):
        """Each record the child sends, until it closes its pipe or dies."""
        while True:
            try:
                yield self._conn.recv()
            except (EOFError, OSError):
                return

    def end(self, grace_s: float) -> None:
        """Wait up to grace_s for the child to end by itself; then terminate it, then kill it."""
        self.proc.join(grace_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()

    def close(self) -> None:
        self._conn.close()

    def death(self, at_epoch: float) -> str:
        """Why the child ended without saying so itself, in words a student can act on."""
        code = self.proc.exitcode
        where = f"at epoch {at_epoch:.1f}"
        if code == -signal.SIGKILL:
            return f"the training process was killed (out of memory?) {where} — lower the batch size"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return f"the training process was ended by signal {name} {where}"
        return f"the training process ended unexpectedly (exit code {code}) {where}"
