"""The job manager: each run in its own process, a queue that outlives a killed run, admission by memory."""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from alexnet_viz.jobs import queue as jobs
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.jobs.queue import Job, JobManager, estimated_starts, fits
from alexnet_viz.jobs.worker import METHODS, NICE, Worker, start_factory
from alexnet_viz.runs.store import Run, list_runs

from tests.test_training import TINY, synthetic

LONG = TrainConfig(epochs=200, batch_size=16, max_batches=4, device="cpu")  # many short epochs


def load_synthetic():
    return synthetic()


def wait(cond, timeout=120, what="the condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen in {timeout} s")


@pytest.fixture(scope="module")
def shared_manager():
    """One manager for the module, started warm as the app's is (the device measured, the fork server up)."""
    mgr = JobManager(load_synthetic, warm=True)
    yield mgr
    mgr.close()


@pytest.fixture
def mgr(shared_manager, monkeypatch):
    monkeypatch.setattr(shared_manager, "grace_s", jobs.GRACE_S)
    return shared_manager


def test_a_job_trains_in_its_own_process_keeps_its_tags_and_resumes_in_place(mgr):
    tags = {"experiment": "relu-vs-sigmoid", "variant": "relu", "seed": 0}
    job = mgr.submit("ann", TINY, TrainConfig(epochs=2, batch_size=64, device="cpu"), tags=tags)
    wait(lambda: not job.active, what="the job's end")
    assert job.state == "finished", job.message
    assert [e["epoch"] for e in job.epochs] == [1, 2] and job.steps[-1]["progress"] == pytest.approx(1.0)
    status = json.loads((Path(job.run_dir) / "status.json").read_text())
    assert status["pid"] != os.getpid()  # the engine wrote it from another process
    assert (Path(job.run_dir) / "heartbeat").exists()
    (info,) = list_runs(owners={"ann"}, examples=False)
    assert info.tags == tags and info.state == "finished" and info.epochs_done == 2
    again = mgr.submit("ann", TINY, TrainConfig(epochs=3, batch_size=64, device="cpu"), resume_dir=job.run_dir)
    wait(lambda: not again.active, what="the resumed job's end")
    assert again.state == "finished" and again.run_dir == job.run_dir  # the same folder goes on
    (info,) = list_runs(owners={"ann"}, examples=False)
    assert [e["epoch"] for e in info.epochs] == [1, 2, 3] and info.epochs_done == 3 and info.tags == tags


def test_records_of_any_kind_are_forwarded(monkeypatch):
    """What the engine yields besides steps and epochs lands in job.records, by kind."""
    class FakeWorker:
        def __init__(self, method):
            import threading
            from types import SimpleNamespace
            self.stop, self.proc = threading.Event(), SimpleNamespace(is_alive=lambda: True, exitcode=0)

        def start(self, spec):
            pass

        def records(self):
            yield {"kind": "snapshot", "label": "init", "epoch": 0.0}
            yield {"kind": "internals", "epoch": 0.5, "grad_norm": {"conv1": 0.1}}
            yield {"kind": "end", "status": "finished", "message": "ok", "epochs_done": 1.0, "run_dir": None}

        def end(self, grace_s):
            pass

        def close(self):
            pass
    monkeypatch.setattr(jobs, "Worker", FakeWorker)
    mgr = JobManager(load_synthetic)
    job = mgr.submit("ann", TINY, TrainConfig(epochs=1, device="cpu"))
    wait(lambda: not job.active)
    mgr.close()
    assert job.state == "finished"
    assert job.records == {"snapshot": [{"kind": "snapshot", "label": "init", "epoch": 0.0}],
                           "internals": [{"kind": "internals", "epoch": 0.5, "grad_norm": {"conv1": 0.1}}]}


def test_a_killed_training_process_ends_that_run_only(mgr):
    """SIGKILL (what the OOM killer sends) mid-run: that run fails with its last weights, the next job runs."""
    victim = mgr.submit("ann", TINY, LONG)
    after = mgr.submit("bob", TINY, TrainConfig(epochs=1, batch_size=64, device="cpu"))
    wait(lambda: len(victim.epochs) >= 2, what="two saved epochs")
    assert mgr.place(after) == 1  # one at a time on a CPU
    pid = json.loads((Path(victim.run_dir) / "status.json").read_text())["pid"]
    assert pid != os.getpid()
    # it yields the CPU to the server's pages: niced NICE steps below the server
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + NICE
    os.kill(pid, signal.SIGKILL)
    wait(lambda: not victim.active, what="the killed job's end")
    assert victim.state == "error" and "killed (out of memory?)" in victim.message
    assert "lower the batch size" in victim.message
    wait(lambda: not after.active, what="the next job's end")
    assert after.state == "finished", after.message
    (info,) = list_runs(owners={"ann"}, examples=False)
    assert info.state == "error" and "killed" in info.message
    run = Run(info.path)
    assert run.checkpoint()["epoch"] >= 2
    assert run.load_model()(torch.zeros(1, 1, 12, 12)).shape == (1, 10)


def test_stop_ends_a_mini28_run_by_itself_and_keeps_its_weights(mgr):
    """The engine checks the stop flag before every batch: the run ends on its own, well inside a
    1 s grace period (past it the manager would end the process and say so)."""
    mgr.grace_s = 1.0
    t = TrainConfig(epochs=50, batch_size=32, lr=1e-3, optimizer="adam", device="cpu")
    job = mgr.submit("ann", get_preset("mini28"), t)
    wait(lambda: len(job.steps) >= 1, what="the first step")
    mgr.stop(job)
    wait(lambda: not job.active, what="the stop")
    assert job.state == "stopped" and "the weights as they were are saved" in job.message, job.message
    assert job.steps[-1]["epoch"] < 1  # it never got to the end of the first epoch
    saved = Run(job.run_dir).checkpoint()["epoch"]  # the weights on disk are those of the stop it reported
    assert job.steps[-1]["epoch"] <= saved < 1 and f"stopped by the user at epoch {saved:.2f}" in job.message


def fake(device="cuda", need_gb=1.0, need_s=60.0, eta=None) -> Job:
    j = Job("j", "o", TINY, TrainConfig(), device=device, need_bytes=int(need_gb * 2**30), need_s=need_s)
    if eta is not None:
        j.state, j.started = "running", 1000.0
        j.steps.append({"eta": eta, "elapsed": 0.0})
    return j


def test_admission_by_estimated_memory():
    budget = 3 * 2**30  # room for three 1 GB runs
    running = [fake(), fake()]
    assert fits(running, fake(), budget)
    assert not fits(running + [fake()], fake(), budget)
    assert not fits(running, fake(need_gb=1.5), budget)
    assert fits([], fake(need_gb=100), budget)  # alone, a job always starts: the queue never stalls
    assert not fits([fake("cpu")], fake("cpu"), budget)  # a CPU runs one at a time
    assert fits([fake("cpu")], fake(), budget)  # a CPU job does not hold GPU memory


def test_estimated_starts_follow_the_jobs_ahead():
    now = 1000.0
    # one GPU with room for two 1 GB runs: a running job with 30 s left, then three queued of 60 s
    budget = 2 * 2**30
    running = [fake(eta=30.0)]
    starts = estimated_starts(running, [fake(), fake(), fake()], budget, now)
    assert starts == [0.0, 30.0, 60.0]  # beside the running one; when it ends; when the first queued ends
    # a CPU: one after another
    starts = estimated_starts([fake("cpu", eta=30.0)], [fake("cpu", need_s=10), fake("cpu")], None, now)
    assert starts == [30.0, 40.0]


def test_two_jobs_run_at_once_when_the_budget_allows(mgr, monkeypatch):
    """A simulated budget that holds two CPU jobs: both processes train at the same time."""
    monkeypatch.setattr(mgr, "budget_bytes", 2000)
    monkeypatch.setattr(mgr, "shared", ("cpu",))
    monkeypatch.setattr(mgr, "_estimate", lambda *a: (1000, 10.0))
    a, b = mgr.submit("ann", TINY, LONG), mgr.submit("bob", TINY, LONG)
    wait(lambda: a.steps and b.steps, what="both jobs training")
    na, nb = len(a.steps), len(b.steps)
    wait(lambda: len(a.steps) > na and len(b.steps) > nb, what="both jobs making progress")
    assert a.state == b.state == "running" and mgr.place(a) == mgr.place(b) == 0
    third = mgr.submit("cy", TINY, LONG)
    time.sleep(0.5)
    assert third.state == "queued" and mgr.estimated_start(third) is not None
    for j in (a, b, third):
        mgr.stop(j)
    wait(lambda: not (a.active or b.active), what="both stops")


@pytest.mark.parametrize("method", METHODS)
def test_the_training_process_does_not_run_the_page_script_again(method, tmp_path, monkeypatch):
    """Streamlit makes the page script __main__; a child (forked from the fork server, or spawned) must
    not import (and so draw) it."""
    import sys
    import types

    marker = tmp_path / "page-ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    w = Worker(method)
    assert sys.modules["__main__"] is page  # put back once the process has started
    w.close()  # end-of-file: the waiting child quits
    w.end(60)
    assert w.proc.exitcode == 0 and not marker.exists()


def test_a_run_takes_the_servers_environment_and_folder_of_its_start_not_the_fork_servers(mgr, tmp_path,
                                                                                          monkeypatch):
    """The fork server keeps the environment and folder it started with; each run gets the server's of
    the moment: here a relative runs folder in another folder, and another cache (where the measured
    precision is kept)."""
    start_factory()  # up already (the manager started it), under an earlier environment
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALEXNET_VIZ_RUNS", "relative-runs")
    monkeypatch.setenv("ALEXNET_VIZ_CACHE", str(tmp_path / "later-cache"))
    job = mgr.submit("ann", TINY, TrainConfig(epochs=1, batch_size=16, max_batches=2, device="cpu"))
    wait(lambda: not job.active, what="the job's end")
    assert job.state == "finished", job.message
    assert Path(job.run_dir).parts[0] == "relative-runs" and (tmp_path / job.run_dir / "weights.pt").is_file()
    assert (tmp_path / "later-cache" / "precision.json").is_file()
