"""One training run in its own process, so that a crash or an out-of-memory kill ends that run only.

The job manager (jobs.py) starts `child_main` with the "spawn" start method: the child begins in a
fresh interpreter, with no torch or thread state copied from the server. It receives one spec over
its pipe (the network, the settings, the run folder and the uint8 dataset, which travels as shared
memory, not as a copy), trains with the same engine as the CLI, and sends every record back as a
plain dict, whatever its kind. Stop is a shared Event that the engine checks before every batch.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
import types

import torch
import torch.multiprocessing  # noqa: F401 - registers the reducers that pass tensors as shared memory

from alexnet_viz.runs.store import Run
from alexnet_viz.training.engine import train

CTX = mp.get_context("spawn")
_STARTING = threading.Lock()


def _start(proc) -> None:
    """Start a spawned process without it running the server's main script again.

    Spawn re-imports `__main__` in the child; under Streamlit that module is the page script
    (app.py), which would draw the whole app in the child. An empty stand-in is shown instead,
    for the moment of the start only.
    """
    with _STARTING:
        real, blank = sys.modules["__main__"], types.ModuleType("__main__")
        sys.modules["__main__"] = blank
        try:
            proc.start()
        finally:
            if sys.modules.get("__main__") is blank:  # unless Streamlit set its own meanwhile
                sys.modules["__main__"] = real


def _warm_up() -> None:
    """What a run's first moments would otherwise import and set up, done while a spare waits: an
    optimizer's first construction imports torch._dynamo (1.5-2.4 s on 2 cores, measured), and the
    first convolution initializes oneDNN."""
    w = torch.zeros(2, 1, 3, 3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    torch.nn.functional.conv2d(torch.zeros(1, 1, 8, 8), w).sum().backward()
    opt.step()


def child_main(conn, stop) -> None:
    """The child process: one run, its records sent back as they come."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C on the server is the server's to handle
    _warm_up()
    try:
        spec = conn.recv()  # a spare process waits here, torch already imported
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

    def __init__(self):
        self.stop = CTX.Event()
        self._conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=child_main, args=(child, self.stop), daemon=True,
                                name="alexnet-viz-run")
        _start(self.proc)
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
