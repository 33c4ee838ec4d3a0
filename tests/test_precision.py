"""Precision chosen by measurement: forced choices, the threshold rule, timing robust to load, the cache
(per shape class and batch class), and the engine's record."""
import json

import pytest
import torch

from alexnet_viz.training import precision
from alexnet_viz.config import ArchConfig, ConvSpec, TrainConfig, get_preset
from alexnet_viz.data import cache_dir
from alexnet_viz.training.precision import PAYS, choose, shape_class
from alexnet_viz.runs.store import Run
from alexnet_viz.training.engine import train

from tests.test_training import TINY, synthetic


def test_forced_choices_are_obeyed_without_measuring(monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("a forced choice must not measure"))
    assert choose("cpu", TINY, "fp32").dtype is None
    c = choose("cpu", TINY, "bf16")
    assert c.dtype is torch.bfloat16 and c.name == "bf16" and "user" in c.reason
    assert choose("meta", TINY).dtype is None  # neither CPU nor CUDA: full precision
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        choose("cpu", TINY, "fp16")


def test_shape_class_rounds_input_and_width_up_to_powers_of_two():
    assert shape_class(get_preset("d2l")) == "256px-512ch"        # 224 px, widest conv 384
    assert shape_class(get_preset("mini28")) == "32px-64ch"
    wider = ArchConfig(name="w", in_channels=1, input_size=30, convs=(ConvSpec(40, 3, 1, 1),), hidden=(8,))
    assert shape_class(wider) == shape_class(get_preset("mini28"))  # same class: one measurement serves both


@pytest.mark.parametrize("speedup", [0.4, PAYS - 0.05, PAYS + 0.1, 2.0])
def test_bf16_only_when_it_pays_and_the_answer_is_cached(monkeypatch, speedup):
    calls = []

    def fake(arch, batch=None):
        calls.append(arch)
        return {"fp32_s": speedup, "bf16_s": 1.0, "speedup": speedup, "batch": 4, "date": "2026-11-24"}
    monkeypatch.setattr(precision, "measure", fake)
    first = choose("cpu", TINY)
    assert first.dtype == (torch.bfloat16 if speedup >= PAYS else None)
    assert f"{speedup:.2f}×" in first.reason and "measured 2026-11-24" in first.reason
    assert choose("cpu", TINY) == first and len(calls) == 1          # the second answer comes from disk
    saved = json.loads((cache_dir() / "precision.json").read_text())
    (key,) = saved
    assert shape_class(TINY) in key and torch.__version__ in key


def test_real_measurement_times_both_precisions(monkeypatch):
    monkeypatch.setattr(precision, "MEASURE_S", 0.02)
    m = precision.measure(TINY, batch=8)
    assert m["fp32_s"] > 0 and m["bf16_s"] > 0 and m["batch"] == 8
    assert m["rounds"] >= precision.MIN_ROUNDS and m["speedup"] == pytest.approx(m["fp32_s"] / m["bf16_s"])


def test_damaged_cache_is_measured_again(monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda arch, batch=None: {"speedup": 3.0, "date": "today"})
    (cache_dir()).mkdir(parents=True, exist_ok=True)
    (cache_dir() / "precision.json").write_text("{not json")
    assert choose("cpu", TINY).dtype is torch.bfloat16


def test_engine_says_its_precision_first_and_keeps_it_in_the_run(tmp_path):
    t = TrainConfig(epochs=1, batch_size=64, max_batches=2, device="cpu", amp=False)
    run = Run.create(TINY, t, "synthetic", tmp_path)
    recs = list(train(TINY, t, synthetic(), run=run))
    assert recs[0].kind == "precision" and recs[0].dtype == "fp32" and recs[0].device == "cpu"
    assert recs[-1].status == "finished"
    assert run.metrics()[0] == recs[0].to_dict()
    forced = list(train(TINY, TrainConfig(epochs=1, batch_size=64, max_batches=2, device="cpu", precision="bf16"),
                        synthetic()))
    assert forced[0].dtype == "bf16" and forced[-1].status == "finished"


class FakeClock:
    """Time that moves only when a fake step says so: each step costs its precision's true seconds, plus
    a burst of load on the rounds named (other work on the machine, landing on one precision)."""

    def __init__(self, cost: dict[str, float], bursts: dict[str, set[int]]):
        self.now, self.cost, self.bursts, self.order = 0.0, cost, bursts, []

    def __call__(self) -> float:
        return self.now

    def steps(self) -> dict:
        def step(name):
            def run():
                k = sum(1 for n in self.order if n == name)  # this precision's k-th call (0: the warm-up)
                self.order.append(name)
                self.now += self.cost[name] + (0.2 if k in self.bursts.get(name, ()) else 0.0)
            return run
        return {n: step(n) for n in self.cost}


@pytest.mark.parametrize("fp32_s,bf16_s", [(0.010, 0.008), (0.008, 0.010)])  # bf16 wins, then fp32 wins
def test_interleaved_timing_keeps_each_precisions_best_under_bursts_of_load(fp32_s, bf16_s):
    winner = "bf16" if bf16_s < fp32_s else "fp32"
    # load lands on the winner's first two timed steps: a single sample, or the first round's ratio, says
    # the loser is faster
    clock = FakeClock({"fp32": fp32_s, "bf16": bf16_s}, {winner: {1, 2}})
    times = precision.time_interleaved(clock.steps(), budget_s=0.2, clock=clock)
    assert times["fp32"][0] / times["bf16"][0] != pytest.approx(fp32_s / bf16_s)  # the burst did fool one round
    assert min(times["fp32"]) == pytest.approx(fp32_s) and min(times["bf16"]) == pytest.approx(bf16_s)
    assert precision.MIN_ROUNDS <= len(times["fp32"]) == len(times["bf16"]) <= precision.MAX_ROUNDS
    timed = clock.order[2:]  # after one warm-up each, each round times both, the order alternating
    assert timed[:4] == ["fp32", "bf16", "bf16", "fp32"]


@pytest.mark.parametrize("fp32_s,bf16_s", [(0.012, 0.010), (0.010, 0.012)])
def test_auto_takes_the_faster_precision_with_a_fake_timer(monkeypatch, fp32_s, bf16_s):
    """choose → measure → the interleaved timing, the clock faked: bf16 exactly when it is PAYS× faster."""
    clock = FakeClock({"fp32": fp32_s, "bf16": bf16_s}, {"fp32": {1}, "bf16": {2, 3}})
    real = precision.time_interleaved
    monkeypatch.setattr(precision, "time_interleaved", lambda steps, budget_s, clock_=None, **k: real(
        clock.steps(), budget_s, clock))
    c = choose("cpu", TINY, "auto", batch=32)
    assert (c.dtype is torch.bfloat16) == (fp32_s / bf16_s >= PAYS)
    assert f"{fp32_s / bf16_s:.2f}×" in c.reason and "at batch 32" in c.reason  # the speed-up, as the Train page shows it
    entry = next(iter(json.loads((cache_dir() / "precision.json").read_text()).values()))
    assert entry["speedup"] == pytest.approx(fp32_s / bf16_s) and entry["batch"] == 32


def test_each_batch_class_is_measured_at_its_own_batch(monkeypatch):
    measured = []

    def fake(arch, batch=None):
        measured.append(batch)
        return {"speedup": 1.7 if batch >= 64 else 1.02, "batch": batch, "date": "2026-11-24"}  # AMX's shape
    monkeypatch.setattr(precision, "measure", fake)
    assert choose("cpu", TINY, batch=16).dtype is None
    assert choose("cpu", TINY, batch=128).dtype is torch.bfloat16
    assert choose("cpu", TINY, batch=100).dtype is torch.bfloat16  # 100 is in 128's class: no new measurement
    assert choose("cpu", TINY, batch=9).dtype is None               # 9 is in 16's class
    assert measured == [16, 128]
    assert precision.batch_class(100) == precision.batch_class(128) != precision.batch_class(16)
    keys = json.loads((cache_dir() / "precision.json").read_text())
    assert sorted(k.rsplit("| ", 1)[1] for k in keys) == ["batch 128", "batch 16"]
    assert precision.known_speed("cpu", TINY, "auto", 128)[1] == 1.7  # what the estimates read
    assert precision.known("cpu", TINY, "auto", 256) is None          # not measured: estimates do not wait


def test_engine_measures_at_the_runs_batch(monkeypatch):
    seen = []
    monkeypatch.setattr(precision, "measure", lambda arch, batch=None: seen.append(batch) or {
        "speedup": 1.0, "batch": batch, "date": "today"})
    t = TrainConfig(epochs=1, batch_size=48, max_batches=1, device="cpu", amp=True)
    recs = list(train(TINY, t, synthetic()))
    assert seen == [48] and recs[0].dtype == "fp32" and "at batch 48" in recs[0].reason
