"""Class experiments: joining (a seed per session, kept across reloads), the class file, queuing a seat,
pooling every finished seed, and what the class costs."""
import json
import threading
from dataclasses import replace

import numpy as np
import pytest

from alexnet_viz.config import PRESETS
from alexnet_viz.runs.store import Run, list_runs
from alexnet_viz.training import classroom
from alexnet_viz.training.classroom import (CLASS_BUDGET, ClassError, class_progress, class_runs, join_class,
                                            load_class, pool_results, pooled_summary, queue_seat, seat_plan,
                                            start_class)
from alexnet_viz.training.experiments import Budget


def finished_seat(cls, seed: int, accs: dict, state: str = "finished") -> list[Run]:
    """The runs of one seat on disk, finished with made-up final test accuracies (variant -> acc)."""
    runs = []
    for a, t, tags in seat_plan(cls, seed):
        if tags["variant"] not in accs:
            continue
        run = Run.create(a, t, "synthetic", owner=f"student{seed}", tags=tags)
        acc = accs[tags["variant"]]
        run.append_metric({"kind": "epoch", "epoch": 1, "train_loss": 1 - acc, "train_acc": acc, "test_acc": acc,
                           "examples_per_sec": 1000.0, "elapsed": 1.0})
        if state != "running":  # "running" with this (live) process's pid is what Run.create left
            run.set_status(state, "", epochs_done=1)
        runs.append(run)
    return runs


def test_two_sessions_get_two_seeds_and_a_reload_keeps_its_own():
    cls = start_class("relu-vs-sigmoid")
    assert classroom.CODE_RE.fullmatch(cls.code) and cls.seats == {} and cls.budget == CLASS_BUDGET
    _, a = join_class(cls.code, "sid-a")
    _, b = join_class(cls.code, "sid-b")
    again, a2 = join_class(cls.code, "sid-a")  # a reload: the same session id
    assert (a, b, a2) == (0, 1, 0)
    assert again.seats == {"sid-a": 0, "sid-b": 1}
    on_disk = json.loads((classroom.classes_dir() / f"{cls.code}.json").read_text())
    assert on_disk["seats"] == {"sid-a": 0, "sid-b": 1} and on_disk["experiment"] == "relu-vs-sigmoid"
    assert load_class(cls.code) == again


def test_sessions_joining_at_once_each_get_their_own_seed():
    cls = start_class("dropout", Budget(1, 5, "cpu"))
    seeds, threads = {}, []
    for i in range(12):
        threads.append(threading.Thread(target=lambda i=i: seeds.__setitem__(i, join_class(cls.code, f"s{i}")[1])))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seeds.values()) == list(range(12))
    assert load_class(cls.code).seats == {f"s{i}": seeds[i] for i in range(12)}


def test_a_full_class_and_a_bad_code_are_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(classroom, "MAX_SEATS", 2)
    cls = start_class("relu-vs-sigmoid")
    join_class(cls.code, "a"), join_class(cls.code, "b")
    with pytest.raises(ClassError, match="full"):
        join_class(cls.code, "c")
    assert join_class(cls.code, "a")[1] == 0  # a seated session still gets its seat
    with pytest.raises(ClassError, match="not a class code"):
        load_class("../../etc")
    with pytest.raises(ClassError, match="no class experiment ZZZZZ"):
        load_class("ZZZZZ")
    for junk in ("{oops", "[]", json.dumps({**cls.to_dict(), "experiment": "nope"}),
                 json.dumps({**cls.to_dict(), "budget": {"epochs": 10**9, "max_batches": 0, "device": "cpu"}})):
        (classroom.classes_dir() / f"{cls.code}.json").write_text(junk)
        with pytest.raises(ClassError, match=f"class {cls.code}"):
            load_class(cls.code)
    with pytest.raises(Exception, match="unknown experiment"):
        start_class("all")


class FakeManager:
    """Keeps what was submitted, as jobs that stay queued."""

    def __init__(self):
        self.jobs = []

    def submit(self, owner, arch, t, resume_dir=None, tags=None):
        from alexnet_viz.jobs.queue import Job
        self.jobs.append(Job(f"j{len(self.jobs)}", owner, arch, t, tags=dict(tags or {})))
        return self.jobs[-1]

    def jobs_for(self, owner):
        return [j for j in self.jobs if j.owner == owner]


def test_a_seat_queues_its_variants_once_with_its_seed_and_the_class_budget():
    cls = start_class("relu-vs-sigmoid", Budget(2, 7, "cpu"))
    cls, seed = join_class(cls.code, "me")
    cls, seed = join_class(cls.code, "you")
    mgr = FakeManager()
    jobs = queue_seat(mgr, cls, "you", seed)
    assert [j.tags["variant"] for j in jobs] == ["ReLU", "sigmoid"]
    assert all((j.train.seed, j.train.epochs, j.train.max_batches, j.train.device) == (1, 2, 7, "cpu") for j in jobs)
    assert all(j.tags["class"] == cls.code and j.tags["set"] == cls.set_id and j.owner == "you" for j in jobs)
    assert queue_seat(mgr, cls, "you", seed) == []  # a reload: its runs are in the queue already
    for j in mgr.jobs:
        j.state = "stopped"  # the server restarted: the queue is gone ...
    finished_seat(cls, 1, {"ReLU": 0.8})  # ... but the ReLU run had finished on disk
    assert [j.tags["variant"] for j in queue_seat(mgr, cls, "you", seed)] == ["sigmoid"]


def test_pooling_gives_numpys_mean_and_spread_and_counts_each_finished_seed_once():
    cls = start_class("relu-vs-sigmoid")
    rng = np.random.default_rng(4)
    relu, sig = rng.uniform(0.7, 0.8, 10), rng.uniform(0.4, 0.6, 10)
    for seed in range(10):
        finished_seat(cls, seed, {"ReLU": 0.11, "sigmoid": 0.12}, state="error")  # failed first tries
    for seed in range(10):
        finished_seat(cls, seed, {"ReLU": relu[seed]} if seed == 9 else {"ReLU": relu[seed], "sigmoid": sig[seed]})
    finished_seat(cls, 0, {"ReLU": relu[0]})  # seed 0's ReLU trained twice (queued again): counted once
    finished_seat(cls, 10, {"ReLU": 0.99, "sigmoid": 0.01}, state="running")  # still training: left out
    other = start_class("relu-vs-sigmoid")
    finished_seat(other, 0, {"ReLU": 0.01, "sigmoid": 0.99})  # another class's
    runs = list_runs()
    results = pool_results(runs, cls)
    assert [len(v) for v in results.values()] == [10, 9]
    rows, sentence = pooled_summary(runs, cls)
    by = {r["variant"]: r for r in rows}
    assert by["ReLU"]["seeds"] == 10 and by["sigmoid"]["seeds"] == 9
    assert by["ReLU"]["test acc"] == pytest.approx(np.mean(relu))
    assert by["ReLU"]["± (seed sd)"] == pytest.approx(np.std(relu, ddof=1))
    assert by["sigmoid"]["test acc"] == pytest.approx(np.mean(sig[:9]))
    assert by["sigmoid"]["± (seed sd)"] == pytest.approx(np.std(sig[:9], ddof=1))
    assert sentence.startswith("ReLU beat sigmoid") and f"{np.mean(relu):.3f}" in sentence
    mine = class_runs(cls)
    assert len(mine) == 2 * 10 + 19 + 1 + 2
    assert class_progress(load_class(cls.code), mine)["finished"] == 19


def test_pooled_numbers_within_noise_are_hedged():
    cls = start_class("max-vs-avg-pool")
    for seed, (a, b) in enumerate([(0.80, 0.81), (0.84, 0.82), (0.78, 0.80)]):
        finished_seat(cls, seed, {"max pool": a, "average pool": b})
    _, sentence = pooled_summary(list_runs(), cls)
    assert "within seed noise" in sentence


def test_the_class_cost_adds_every_run_and_its_start_on_a_cpu():
    from alexnet_viz.cost.estimate import estimate_training
    from alexnet_viz.training.experiments import planned_runs
    budget = Budget(1, 40, "cpu")
    one = sum(estimate_training(a, t, n_train=60_000, device="cpu", n_test=10_000).run_seconds + classroom.START_S
              for a, t, _ in planned_runs(["relu-vs-sigmoid"], budget, [0]))
    total = classroom.estimate_class_seconds("relu-vs-sigmoid", budget, 30, 60_000, 10_000)
    assert total == pytest.approx(30 * one)  # one after another
    assert classroom.estimate_class_seconds("relu-vs-sigmoid", budget, 0, 60_000, 10_000) == 0
    # more batches cost more
    assert classroom.estimate_class_seconds("relu-vs-sigmoid", replace(budget, max_batches=400), 30,
                                            60_000, 10_000) > total


def test_the_default_class_budget_is_the_measured_one():
    # the figures in CLASS_BUDGET's comment were measured with mini28 at its own batch size
    plan = seat_plan(start_class("relu-vs-sigmoid"), 0)
    assert {(t.epochs, t.max_batches, t.batch_size) for _, t, _ in plan} == {(1, 40, 128)}
    assert replace(plan[0][0], name="mini28") == PRESETS["mini28"]
