"""Experiments: the right configs queued, a sentence that follows the numbers, config diffs, resume."""
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alexnet_viz.training import engine
from alexnet_viz.config import PRESETS, TrainConfig, default_training, validate
from alexnet_viz.training.experiments import (EXPERIMENTS, Budget, collect_results, diff_configs, distinguishing_labels,
                                     is_d2l_recipe, planned_runs, queue_experiment, summarize_experiment)
from alexnet_viz.jobs.queue import JobManager
from alexnet_viz.model import build_model
from alexnet_viz.runs.store import list_runs

from tests.test_training import TINY, synthetic


class Recorder:
    """Stands in for the job manager: keeps what was submitted."""

    def __init__(self):
        self.calls = []

    def submit(self, owner, arch, t, resume_dir=None, tags=None):
        self.calls.append((owner, arch, t, tags))
        return len(self.calls)


def cfg(arch, t) -> dict:
    return {"arch": arch.to_dict(), "train": t.to_dict()}


# What each experiment may change, as patterns over the flat setting names of diff_configs.
CHANGES = {
    "relu-vs-sigmoid": r"conv\d\.activation|fc_activation",
    "dropout": r"dropout",
    "max-vs-avg-pool": r"conv\d\.pool",
    "overlapping-pool": r"conv\d\.pool_kernel",
    "normalization": r"conv\d\.norm",
    "augmentation": r"augment",
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_variant_differs_from_the_base_in_one_thing_only(name):
    rec = Recorder()
    budget = Budget(epochs=2, max_batches=7, device="cpu")
    queue_experiment(rec, "me", name, budget, seeds=[3, 1])
    assert len(rec.calls) == 2 * len(EXPERIMENTS[name].variants)
    mini = PRESETS["mini28"]
    for owner, arch, t, tags in rec.calls:
        assert owner == "me" and tags["experiment"] == name and tags["seed"] in (1, 3)
        assert (t.epochs, t.max_batches, t.device, t.seed) == (2, 7, "cpu", tags["seed"])  # same budget
        assert replace(t, epochs=1, max_batches=0, device="auto", augment=False, seed=0) == default_training("mini28")
        validate(arch)
        assert build_model(arch)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        changed = {k for k, _, _ in diff_configs(cfg(mini, default_training("mini28")), cfg(arch, t))}
        changed -= {"network", "epochs", "max_batches", "device", "seed"}
        if name in CHANGES:
            assert all(re.fullmatch(CHANGES[name], k) for k in changed), changed
        else:  # LeNet-5 against the AlexNet-style net: the network is everything that differs
            assert not changed or arch.convs == PRESETS["lenet5"].convs
    labels = [tags["variant"] for *_, tags in rec.calls]
    assert labels == [v.label for v in EXPERIMENTS[name].variants] * 2
    assert len({tags["set"] for *_, tags in rec.calls}) == 1


def test_all_experiments_train_the_shared_base_once_per_seed():
    plan = planned_runs(list(EXPERIMENTS), Budget(max_batches=5), seeds=[0])
    configs = [(replace(a, name=""), t) for a, t, _ in plan]
    assert len(set(configs)) == len(configs)  # nothing trained twice
    variants = sum(len(e.variants) for e in EXPERIMENTS.values())
    # every experiment's first variant is the base, and normalization's "BatchNorm" and augmentation's
    # "no augmentation" are the base too (mini28 has BatchNorm and no augmentation)
    assert len(plan) == variants - len(EXPERIMENTS) + 1
    base = [tags for a, t, tags in plan if len(tags["experiments"]) > 1]
    assert len(base) == 1 and set(base[0]["experiments"]) == set(EXPERIMENTS)
    assert base[0]["experiments"]["normalization"] == "BatchNorm"


def final(acc, loss=0.5, train_acc=0.8) -> dict:
    return {"kind": "epoch", "epoch": 1, "test_acc": acc, "train_loss": loss, "train_acc": train_acc}


def test_summary_of_a_clear_difference_names_the_winner_and_the_figures():
    rows, sentence = summarize_experiment({"ReLU": [final(0.85), final(0.86)],
                                           "sigmoid": [final(0.60, 2.0), final(0.62, 2.1)]})
    assert [r["variant"] for r in rows] == ["ReLU", "sigmoid"]
    assert rows[1]["test acc"] == pytest.approx(0.61) and rows[1]["train loss"] == pytest.approx(2.05)
    assert rows[1]["Δ test acc vs ReLU"] == pytest.approx(-0.245)
    assert rows[0]["± (seed sd)"] == pytest.approx(0.0070711, rel=1e-4)
    assert sentence.startswith("ReLU beat sigmoid") and "0.855" in sentence and "0.610" in sentence
    assert "0.245" in sentence and "noise" not in sentence
    # the same numbers the other way round: the sentence follows them
    _, flipped = summarize_experiment({"ReLU": [final(0.60), final(0.62)], "sigmoid": [final(0.85), final(0.86)]})
    assert flipped.startswith("sigmoid beat ReLU")


def test_summary_within_seed_noise_is_hedged():
    rows, sentence = summarize_experiment({"max pool": [final(0.85), final(0.87)],
                                           "average pool": [final(0.86), final(0.84)]})
    assert "within seed noise" in sentence and "beat" not in sentence
    gap = abs(rows[0]["test acc"] - rows[1]["test acc"])
    assert f"{gap:.3f}" in sentence  # 0.010 ≤ 2 × 0.0141


def test_summary_with_one_seed_says_so():
    _, sentence = summarize_experiment({"dropout": [final(0.80)], "no dropout": [final(0.78)]})
    assert sentence.startswith("dropout reached the highest") and "1 seed only" in sentence
    assert "0.020" in sentence


def test_summary_of_three_variants_ranks_all():
    rows, sentence = summarize_experiment({"BatchNorm": [final(0.88), final(0.87)],
                                           "LRN": [final(0.80), final(0.81)],
                                           "no normalization": [final(0.83), final(0.82)]})
    assert len(rows) == 3 and sentence.startswith("BatchNorm beat no normalization")
    assert "LRN 0.805" in sentence
    assert summarize_experiment({}) == ([], "No finished runs yet.")


def test_diff_configs_names_every_difference():
    a = cfg(PRESETS["mini28"], default_training("mini28"))
    b = cfg(replace(PRESETS["mini28"], convs=PRESETS["mini28"].convs[:3], dropout=0.5),
            replace(default_training("mini28"), lr=0.01))
    d = {k: (x, y) for k, x, y in diff_configs(a, b)}
    assert d["dropout"] == (0.3, 0.5) and d["lr"] == (1e-3, 0.01)
    assert d["conv4.kernel"] == (3, None)  # a block only one of them has
    assert diff_configs(a, a) == []
    labels = distinguishing_labels([a, b, a])
    assert labels == ["conv blocks 4 · dropout 0.3 · lr 0.001", "conv blocks 3 · dropout 0.5 · lr 0.01",
                      "conv blocks 4 · dropout 0.3 · lr 0.001"]
    many = cfg(PRESETS["mini28"], replace(default_training("mini28"), lr=0.1, seed=2, epochs=3, batch_size=64,
                                          augment=True))
    assert distinguishing_labels([a, many])[1] == "epochs 3 · batch_size 64 · lr 0.1 · augment True · …"


def test_d2l_recipe_is_recognised():
    d2l = PRESETS["d2l"]
    assert is_d2l_recipe(d2l, TrainConfig())
    assert is_d2l_recipe(d2l, TrainConfig(device="cpu", amp=False, seed=4))
    assert not is_d2l_recipe(d2l, TrainConfig(epochs=2))
    assert not is_d2l_recipe(d2l, TrainConfig(max_batches=10))
    assert not is_d2l_recipe(PRESETS["mini28"], TrainConfig())


def wait(jobs, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and any(j.active for j in jobs):
        time.sleep(0.05)
    assert not any(j.active for j in jobs), [j.state for j in jobs]


@pytest.fixture(scope="module")
def mgr():
    """One job manager for this file's runs (each job is a worker process: starting one costs)."""
    return JobManager(data_loader=lambda: synthetic(256, 64))


def test_an_experiment_runs_end_to_end_and_is_summarized(mgr):
    base = (TINY, TrainConfig(batch_size=32, lr=0.05, optimizer="momentum"))
    jobs = queue_experiment(mgr, "me", "relu-vs-sigmoid", Budget(epochs=1, max_batches=3, device="cpu"),
                            seeds=[0], base=base)
    wait(jobs)
    assert [j.state for j in jobs] == ["finished"] * 2
    runs = list_runs(owners={"me"}, examples=False)
    assert len(runs) == 2 and all(r.tags["experiment"] == "relu-vs-sigmoid" for r in runs)
    assert {r.tags["variant"]: r.config["arch"]["fc_activation"] for r in runs} == {"ReLU": "relu",
                                                                                    "sigmoid": "sigmoid"}
    results = collect_results(runs, "relu-vs-sigmoid")
    assert list(results) == ["ReLU", "sigmoid"] and all(len(v) == 1 for v in results.values())
    rows, sentence = summarize_experiment(results)
    assert [r["test acc"] for r in rows] == [results["ReLU"][0]["test_acc"], results["sigmoid"][0]["test_acc"]]
    assert "1 seed only" in sentence


def test_resume_appends_to_the_same_run(mgr):
    t = TrainConfig(epochs=1, batch_size=32, max_batches=3, device="cpu")
    first = mgr.submit("me", TINY, t, tags={"note": "x"})
    wait([first])
    again = mgr.submit("me", TINY, replace(t, epochs=2), resume_dir=first.run_dir)
    wait([again])
    assert again.state == "finished" and again.run_dir == first.run_dir
    (info,) = list_runs(owners={"me"}, examples=False)
    assert [e["epoch"] for e in info.epochs] == [1, 2] and info.epochs_done == 2
    assert info.tags == {"note": "x"}
    assert json.loads((Path(info.path) / "config.json").read_text())["train"]["epochs"] == 2
    assert [e["epoch"] for e in again.epochs] == [1, 2]  # the live curves start from the old ones
    steps = [s["epoch"] for s in again.steps]
    assert steps == sorted(steps) and steps[-1] == 2


def test_examples_per_sec_leaves_out_evaluation(monkeypatch):
    real = engine.evaluate

    def slow(*a, **k):
        time.sleep(0.5)
        return real(*a, **k)
    monkeypatch.setattr(engine, "evaluate", slow)
    recs = list(engine.train(TINY, TrainConfig(epochs=2, batch_size=32, max_batches=4, device="cpu"),
                             synthetic(256, 64)))
    epochs = [r for r in recs if r.kind == "epoch"]
    # 8 batches of 32 examples; the wall time includes two evaluations of at least 0.5 s each, so
    # the training time is at most elapsed - 1 s (counting the evaluations gave 256 / elapsed)
    assert epochs[-1].elapsed > 1.0
    assert epochs[-1].examples_per_sec >= 256 / (epochs[-1].elapsed - 1.0)


# --- what moved out of the pages (issue 16): costs, ETAs, mistakes, thinning, preset identity ----------

def test_batches_per_epoch_counts_the_partial_last_batch_and_the_cap():
    from alexnet_viz.config import batches_per_epoch
    assert batches_per_epoch(1000, 128) == 8  # 7 full batches of 128 = 896, then 104 left over
    assert batches_per_epoch(1000, 128, max_batches=3) == 3
    assert batches_per_epoch(1000, 128, max_batches=100) == 8
    assert batches_per_epoch(1000, 100) == 10


def test_a_sets_cost_counts_every_batch_and_adds_the_runs():
    from alexnet_viz.training.experiments import describe_set_cost, estimate_set_seconds
    plan = planned_runs(["relu-vs-sigmoid"], Budget(epochs=2, max_batches=3, device="cpu"), seeds=[0, 1])
    line = describe_set_cost(plan, 60_000, 10_000)
    assert line.startswith("4 runs, 24 training batches in all")  # 2 variants × 2 seeds × 2 epochs × 3
    one = estimate_set_seconds(plan[:1], 60_000, 10_000)
    assert one > 0 and estimate_set_seconds(plan[:1] * 3, 60_000, 10_000) == pytest.approx(3 * one)


def test_seconds_left_at_the_measured_pace():
    from alexnet_viz.training.experiments import seconds_left
    left = [TrainConfig(epochs=1, batch_size=10, max_batches=5), TrainConfig(epochs=2, batch_size=10, max_batches=5)]
    # 50 + 100 examples still to train at the mean of 100 and 300 examples per second
    assert seconds_left([100.0, 300.0], left, n_train=1000) == pytest.approx(150 / 200)
    # uncapped: the whole (tiny) training set per epoch
    assert seconds_left([50.0], [TrainConfig(epochs=3, batch_size=64)], n_train=100) == pytest.approx(6.0)
    assert seconds_left([], left, 1000) is None and seconds_left([100.0], [], 1000) is None


def test_mistakes_leave_outputs_beyond_the_classes_out_of_the_matrix_but_count_them_wrong():
    import numpy as np

    from alexnet_viz.training.experiments import class_name, test_mistakes
    labels = np.array([0, 1, 2, 2, 9, 3, 0])
    preds = np.array([0, 2, 2, 537, 9, 3, 11], dtype=np.int16)
    m = test_mistakes(preds, labels)
    expected = np.zeros((10, 10), dtype=int)
    for p, y in zip(preds, labels):
        if p < 10:
            expected[y, p] += 1
    assert (m.confusion == expected).all() and m.confusion.sum() == 5
    assert m.outside == 2 and m.wrong.tolist() == [1, 3, 6]
    assert class_name(537) == "output 537" and class_name(9) == "Ankle boot"
    with pytest.raises(ValueError, match="3 predictions for 7"):
        test_mistakes(preds[:3], labels)


def test_thinning_keeps_at_most_a_charts_worth_evenly():
    from alexnet_viz.training.experiments import thin_records
    recs = list(range(1000))
    thin = thin_records(recs, 400)
    assert thin == list(range(0, 1000, 3)) and len(thin) == 334
    assert thin_records(recs[:400], 400) == recs[:400] and thin_records([], 400) == []
    assert thin_records(recs[:401], 400) == list(range(0, 401, 2))
    assert thin_records(list(range(1001)), 400) == list(range(0, 1001, 3)) + [1000]  # the newest point stays


def test_a_preset_is_recognised_by_its_structure_not_its_name():
    from alexnet_viz.config import preset_of
    mini = PRESETS["mini28"]
    assert preset_of(mini) == "mini28" and preset_of(replace(mini, name="my net")) == "mini28"
    assert preset_of(replace(mini, name="mini28 wide", hidden=(512,))) is None
    assert preset_of(PRESETS["lenet5"]) == "lenet5"
