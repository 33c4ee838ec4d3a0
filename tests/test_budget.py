"""One memory budget for the whole server: reservations from threads within a small fake budget, the
line ("N ahead"), refusals, allocation failures in friendly words, RLIMIT_AS read, and the four kinds
of work (analysis, feature visualization, top-9 pass, training job) taking their share."""
import subprocess
import sys
import threading
import time

import pytest
import torch

from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.cost import budget
from alexnet_viz.cost.budget import MemoryBudget, OutOfMemory, OverBudget, is_allocation_failure

from tests.conftest import ROOT

ALLOCATOR_WORDS = ("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: "
                   "you tried to allocate 7516192768 bytes. Error code 12 (Cannot allocate memory)")


def fixed(n: int) -> MemoryBudget:
    return MemoryBudget(capacity=lambda: n, address_space=lambda: None)


def test_threads_never_hold_more_than_the_budget_together():
    b = fixed(100)
    lock, held, peak, done = threading.Lock(), [0], [0], []

    def work(i, n):
        with b.reserve(n, f"work {i}", wait_s=30):
            with lock:
                held[0] += n
                peak[0] = max(peak[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= n
        done.append(i)

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate([40, 60, 30, 70, 50, 10, 90, 20] * 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(24)) and 90 <= peak[0] <= 100  # all ran, never beyond the budget
    assert b.in_use() == 0  # every reservation given back


def test_work_waits_in_line_saying_how_many_are_ahead():
    b = fixed(100)
    first = b.join(80, "an analysis")
    assert first.admitted
    said = {"B": [], "C": []}
    order = []

    def later(name, n):
        with b.reserve(n, name, on_wait=said[name].append, wait_s=30):
            order.append(name)

    tb = threading.Thread(target=later, args=("B", 50))
    tb.start()
    time.sleep(0.2)
    tc = threading.Thread(target=later, args=("C", 10))  # it would fit beside the first, but B is ahead: none passes
    tc.start()
    time.sleep(0.3)
    assert said["B"][:1] == [0] and said["C"][:1] == [1] and not order  # C fits beside the first, yet waits
    assert budget.waiting_words(1) == "waiting for memory: 1 ahead"
    first.release()
    tb.join(10)
    tc.join(10)
    assert sorted(order) == ["B", "C"]               # both fit once the first is done: admitted together
    assert said["B"][-1] is None and said["C"][-1] is None  # told when its turn came


def test_work_that_can_never_fit_is_refused_at_once():
    b = fixed(100)
    with pytest.raises(OverBudget, match=r"this analysis needs about 150 B, more than this server has for all its "
                                         r"work \(100 B\) — lower the input size"):
        with b.reserve(150, "this analysis", "lower the input size"):
            pytest.fail("ran")
    assert b.in_use() == 0


def test_waiting_too_long_is_refused_for_now():
    b = fixed(100)
    hog = b.join(100, "a training job")
    with pytest.raises(OverBudget, match="waited 0 s for memory"):
        with b.reserve(10, "this analysis", wait_s=0.2):
            pytest.fail("ran")
    hog.release()
    with b.reserve(10, "this analysis", wait_s=0.2) as r:
        assert r.admitted  # its place was given up: the next one goes straight in


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(ALLOCATOR_WORDS), torch.cuda.OutOfMemoryError("CUDA out of memory")])
def test_an_allocation_failure_inside_ends_in_the_friendly_message(error):
    b = fixed(100)
    with pytest.raises(OutOfMemory) as e:
        with b.reserve(10, "this analysis", "lower the input size"):
            raise error
    assert str(e.value) == "this analysis ran out of memory — lower the input size"
    assert "alloc_cpu" not in str(e.value) and b.in_use() == 0
    with pytest.raises(ValueError, match="a bug"):  # anything else is not dressed up as memory
        with b.reserve(10, "this analysis"):
            raise ValueError("a bug")
    assert not is_allocation_failure(ValueError("a bug")) and is_allocation_failure(RuntimeError(ALLOCATOR_WORDS))


def test_the_budget_follows_the_machine_while_work_runs():
    free = [1000]
    b = MemoryBudget(capacity=lambda: free[0], address_space=lambda: None)
    assert b.capacity() == 1000
    r = b.join(400, "a run")
    free[0] = 600           # the run has allocated its 400: free memory plus what is held is the same
    assert b.capacity() == 1000
    free[0] = 100           # another program took 500
    assert b.capacity() == 500
    r.release()
    free[0] = 2000          # idle again: what is free now
    assert b.capacity() == 2000


def test_in_process_work_must_also_fit_the_address_space():
    b = MemoryBudget(capacity=lambda: 1000, address_space=lambda: 300)
    with pytest.raises(OverBudget, match=r"more than this server has for all its work \(300 B\)"):
        b.join(400, "this analysis")
    child = b.join(400, "a training job", in_process=False)  # its own process, its own address space
    assert child.admitted
    assert b.join(300, "this analysis").admitted


def test_rlimit_as_is_read():
    """In a child process whose address space is capped 600 MB above what it maps: the budget says so."""
    code = (
        "import resource, torch\n"
        "from alexnet_viz.cost import budget\n"
        "resource.setrlimit(resource.RLIMIT_AS, (budget._vm_size() + 600 * 2**20, resource.RLIM_INFINITY))\n"
        "free = budget.address_space_free()\n"
        "print(free // 2**20, budget.memory_budget('cpu') // 2**20)\n"
        "try:\n"
        "    with budget.MemoryBudget().reserve(100 * 2**20, 'this analysis', 'lower the input size'):\n"
        "        torch.empty(2**32, dtype=torch.uint8).fill_(1)  # 4 GB: the allocator fails\n"
        "except budget.OutOfMemory as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    figures, message = out.stdout.splitlines()
    free, total = figures.split()
    assert 500 <= int(free) <= 600 and int(total) <= int(free)
    assert message == "this analysis ran out of memory — lower the input size"


# --- the work that takes its share ---------------------------------------------------------------
class Recorder(MemoryBudget):
    """A roomy budget that notes each reservation asked of it."""

    def __init__(self):
        super().__init__(capacity=lambda: 2**40, address_space=lambda: None)
        self.asked = []

    def join(self, nbytes, what, in_process=True, advice=budget.ADVICE):
        self.asked.append((what, nbytes, in_process))
        return super().join(nbytes, what, in_process, advice)


@pytest.fixture
def recorder(monkeypatch):
    r = Recorder()
    for module in ("alexnet_viz.inspect.analysis", "alexnet_viz.inspect.featviz", "alexnet_viz.inspect.top"):
        monkeypatch.setattr(f"{module}.server_budget", lambda device="cpu": r)
    return r


def test_analysis_featviz_and_top_pass_reserve_their_estimates(recorder):
    from PIL import Image

    from alexnet_viz.cost.estimate import estimate_analysis
    from alexnet_viz.inspect.analysis import analyze, untrained
    from alexnet_viz.inspect.featviz import visualize_unit
    from alexnet_viz.inspect.top import index_layer, pass_bytes
    from tests.test_training import synthetic
    m = untrained(get_preset("mini28"))
    analyze(m, Image.new("L", (40, 30), 200))
    visualize_unit(m.model, "relu2", 3, m.mean, m.std, steps=2)
    ds = synthetic(64, 48)
    index_layer(m.model, ds.test_x, ds.test_y, "relu2", m.mean, m.std)
    est = estimate_analysis(m.cfg)
    assert recorder.asked == [
        ("this analysis", est.peak_memory_bytes - est.breakdown["weights"], True),
        ("this feature visualization", est.breakdown["Grad-CAM's forward and backward"], True),
        ("the top-9 pass over relu2", pass_bytes(m.cfg, "relu2", 48, 48), True)]
    assert recorder.in_use() == 0


def test_an_analysis_waits_for_memory_then_runs(monkeypatch):
    from PIL import Image

    from alexnet_viz.cost.estimate import estimate_analysis
    from alexnet_viz.inspect import analysis
    m = analysis.untrained(get_preset("mini28"))
    est = estimate_analysis(m.cfg)
    need = est.peak_memory_bytes - est.breakdown["weights"]
    b = fixed(need + 1000)
    monkeypatch.setattr(analysis, "server_budget", lambda device="cpu": b)
    hog = b.join(need, "another student's analysis")
    said, result = [], []
    t = threading.Thread(target=lambda: result.append(analysis.analyze(m, Image.new("L", (28, 28)), on_wait=said.append)))
    t.start()
    time.sleep(0.5)
    assert said[:1] == [0] and not result
    hog.release()
    t.join(60)
    assert result and result[0].top and said[-1] is None
    small = fixed(need // 2)
    monkeypatch.setattr(analysis, "server_budget", lambda device="cpu": small)
    with pytest.raises(OverBudget, match="this analysis needs about .* more than this server has"):
        analysis.analyze(m, Image.new("L", (28, 28)))


def test_a_training_job_waits_for_the_memory_that_analyses_hold():
    from alexnet_viz.jobs.queue import JobManager
    from tests.test_training import TINY, synthetic
    b = fixed(10 * 2**30)
    mgr = JobManager(lambda: synthetic(256, 64), estimate=lambda *a: (6 * 2**30, 1.0), memory=lambda device: b)
    try:
        hog = b.join(8 * 2**30, "another student's analysis")
        job = mgr.submit("ann", TINY, TrainConfig(epochs=1, batch_size=64, max_batches=1, device="cpu"))
        deadline = time.time() + 10
        while time.time() < deadline and job.reservation is None:
            time.sleep(0.05)
        time.sleep(0.3)
        assert job.state == "queued" and "Waiting for memory: 0 ahead" in mgr.admission_rule(job)
        hog.release()
        deadline = time.time() + 120
        while time.time() < deadline and job.active:
            time.sleep(0.1)
        assert job.state == "finished", job.message
        deadline = time.time() + 30
        while time.time() < deadline and b.in_use():  # given back once its process has ended
            time.sleep(0.05)
        assert b.in_use() == 0
        never = mgr.submit("ann", TINY, TrainConfig(epochs=1, batch_size=64, max_batches=1, device="cpu"))
        b2 = fixed(2**30)
        mgr._memory = lambda device: b2  # a server with 1 GB for all its work: 6 GB never fits
        deadline = time.time() + 10
        while time.time() < deadline and never.active:
            time.sleep(0.05)
        assert never.state == "error" and "more than this server has for all its work" in never.message
    finally:
        mgr.close()


def test_a_run_that_runs_out_of_memory_says_what_to_lower():
    from alexnet_viz.training.engine import failure_message
    assert failure_message(RuntimeError(ALLOCATOR_WORDS)) == (
        "the run ran out of memory — lower the batch size, the input size or the hidden widths")
    assert failure_message(MemoryError()).startswith("the run ran out of memory")
