"""Precision chosen by measurement: forced choices, the threshold rule, the cache, and the engine's record."""
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
    assert f"{speedup:.1f}" in first.reason and "measured 2026-11-24" in first.reason
    assert choose("cpu", TINY) == first and len(calls) == 1          # the second answer comes from disk
    saved = json.loads((cache_dir() / "precision.json").read_text())
    (key,) = saved
    assert shape_class(TINY) in key and torch.__version__ in key


def test_real_measurement_times_both_precisions(monkeypatch):
    monkeypatch.setattr(precision, "MEASURE_S", 0.02)
    m = precision.measure(TINY)
    assert m["fp32_s"] > 0 and m["bf16_s"] > 0
    assert m["rounds"] >= 5 and m["speedup"] > 0


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
