"""Issue 17, part 1: the runs that ship with the app (alexnet_viz/assets/runs/, runs/examples.py).

A trained mini28 and a ReLU-vs-sigmoid experiment: complete, small, loadable, listed after one's
own runs, never changed (not by a delete, not by a resume), and the CLI's default model.
"""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from alexnet_viz.__main__ import main
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.data import CLASSES, MEAN, STD, load_fashion_mnist
from alexnet_viz.runs.examples import EXAMPLES, copy_example, example_run, example_runs, is_example
from alexnet_viz.runs.store import Run, RunError, best_first, delete_run, list_runs, runs_dir
from alexnet_viz.training.experiments import collect_results, experiment_runs, summarize_experiment

from tests.conftest import ROOT
from tests.test_training import TINY

MINI28 = EXAMPLES / "mini28"
IMAGES = sorted((ROOT / "alexnet_viz" / "assets" / "examples").glob("fashion-*.png"))
MB = 2**20


def folder_hash(path: Path) -> str:
    """Every file's relative path and bytes: any change, addition or removal shows."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*")):
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def epochs_of(run: Run) -> list[dict]:
    return [m for m in run.metrics() if m.get("kind") == "epoch"]


# --- what ships -----------------------------------------------------------------------------------

def test_the_shipped_mini28_is_a_complete_finished_run():
    run = example_run()
    assert run is not None and run.path == MINI28
    arch, t, raw = run.config()
    assert arch == get_preset("mini28") and raw["data"].startswith("Fashion-MNIST, full")
    assert t.precision == "fp32" and t.seed == 0
    assert run.status()["state"] == "finished"
    epochs = epochs_of(run)
    assert [e["epoch"] for e in epochs] == list(range(1, t.epochs + 1))
    assert epochs[-1]["test_acc"] >= 0.90
    ck = run.checkpoint()  # torch.load(weights_only=True)
    assert ck["epoch"] == t.epochs and ck["optimizer"]["state"]  # resumable: Adam's moments are there
    labels = [s["label"] for s in run.snapshots()]
    assert labels[0] == "before training"
    assert {"step 1", "step 4", "step 16", "step 64"} <= set(labels)
    assert [x for x in labels if x.startswith("epoch")] == [f"epoch {e}" for e in range(1, t.epochs + 1)]
    inside = run.internals()
    assert len(inside) >= 100 and inside[0]["layers"][0] == "conv1" and inside[-1]["epoch"] > t.epochs - 1
    preds = run.test_preds()
    assert preds is not None and preds.shape == (10_000,) and set(np.unique(preds)) <= set(range(10))


def test_snapshots_are_small_and_load_as_fp32_models():
    run = example_run()
    state, label = run.snapshot_state(0)
    assert label == "before training"
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}  # stored halved
    before, after = run.load_model(0), run.load_model()
    assert next(before.parameters()).dtype == torch.float32
    w0, w1 = before.features.conv1.weight, after.features.conv1.weight
    assert not torch.allclose(w0, w1)  # training moved conv1
    x = torch.rand(4, 1, 28, 28)
    final_snapshot = run.load_model(float(len(epochs_of(run))))
    assert torch.allclose(final_snapshot(x), after(x), atol=2e-2)  # the last snapshot is the final model, in fp16


def test_what_ships_is_within_its_sizes():
    assert folder_bytes(MINI28) <= 10 * MB
    assert folder_bytes(EXAMPLES) <= 15 * MB
    assert folder_bytes(EXAMPLES.parent) <= 15 * MB  # the bundled sample and the example images too


def test_the_shipped_experiment_has_two_variants_two_seeds_and_no_snapshots():
    runs = [r for r in example_runs() if r.path != MINI28]
    assert len(runs) == 4
    for r in runs:
        _, t, raw = r.config()
        assert raw["tags"]["experiment"] == "relu-vs-sigmoid" and t.precision == "fp32"
        assert not (r.path / "snapshots").exists() and r.status()["state"] == "finished"
        assert (r.path / "weights.pt").stat().st_size < 0.5 * MB
        assert r.load_model()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert sorted((r.raw_config()["tags"]["variant"], r.raw_config()["tags"]["seed"]) for r in runs) == [
        ("ReLU", 0), ("ReLU", 1), ("sigmoid", 0), ("sigmoid", 1)]


@pytest.mark.slow
def test_the_shipped_weights_score_what_their_metrics_say_on_the_real_test_set(real_data):
    ds = load_fashion_mnist()
    assert not ds.is_sample and len(ds.test_y) == 10_000
    run = example_run()
    model = run.load_model()
    x = (ds.test_x.float() / 255 - MEAN) / STD
    with torch.no_grad():
        preds = torch.cat([model(x[i:i + 1000, None]).argmax(1) for i in range(0, len(x), 1000)])
    acc = (preds == ds.test_y).float().mean().item()
    recorded = epochs_of(run)[-1]["test_acc"]
    assert abs(acc - recorded) <= 0.005, (acc, recorded)
    assert acc >= 0.90
    saved = torch.from_numpy(run.test_preds().astype(np.int64))
    assert (saved == ds.test_y).float().mean().item() == pytest.approx(recorded, abs=1e-6)


def build_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_examples", ROOT / "tools" / "build_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_samples_internals_at_its_fixed_interval(tmp_path):
    """What made the shipped internals (steps 1, 21, 41, …): the build's own training, on a tiny net."""
    from tests.test_training import synthetic
    build = build_script()
    t = TrainConfig(epochs=1, batch_size=32, max_batches=3 * build.INTERNALS_EVERY, device="cpu", precision="fp32")
    run = build.train_one(TINY, t, synthetic(32 * t.max_batches, 32), tmp_path, {}, lambda text: None)
    every = build.INTERNALS_EVERY
    assert [r["step"] for r in run.internals()] == [1, 1 + every, 1 + 2 * every]
    shipped = [r["step"] for r in example_run().internals()]
    assert shipped == list(range(1, shipped[-1] + 1, every))


def test_the_build_refuses_the_bundled_sample(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ALEXNET_VIZ_DATA"}
    env |= {"ALEXNET_VIZ_OFFLINE": "1", "ALEXNET_VIZ_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_examples.py"), "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: only the bundled sample is available") and "ALEXNET_VIZ_DATA" in out.stderr
    assert not (tmp_path / "out").exists()


# --- listed, never deleted, resumed as a copy ---------------------------------------------------

def test_examples_are_listed_after_ones_own_runs_and_marked():
    own = Run.create(TINY, TrainConfig(epochs=1), "synthetic", owner="ann")
    own.set_status("finished", epochs_done=1)
    runs = list_runs(owners={"ann"})
    assert runs[0].path == str(own.path) and not runs[0].example
    shipped = runs[1:]
    assert [r.path for r in shipped] == [str(r.path) for r in example_runs()] and all(r.example for r in shipped)
    assert shipped[0].name == "mini28" and shipped[0].test_acc >= 0.90
    assert [r.path for r in list_runs(runs_dir())] == [str(own.path)]  # a folder named by the caller: itself only
    assert len(list_runs(owners={"bob"})) == len(shipped)                # everyone's
    assert [r.example for r in best_first(runs)] == [False] + [True] * len(shipped)
    assert Run(MINI28).example and not own.example
    assert is_example(MINI28 / "snapshots" / ".." / "weights.pt") and not is_example(own.path)


def test_an_example_cannot_be_deleted_or_written():
    before = folder_hash(EXAMPLES)
    with pytest.raises(RunError, match="shipped with the app: it cannot be deleted"):
        delete_run(MINI28)
    with pytest.raises(RunError, match="its files never change"):
        Run(MINI28).set_status("running")
    with pytest.raises(RunError, match="its files never change"):
        Run(MINI28).append_metric({"kind": "note"})
    assert folder_hash(EXAMPLES) == before


def test_a_copy_is_ones_own_run_outside_the_experiment():
    copy = copy_example(MINI28, owner="ann")
    assert copy.path.parent == runs_dir() and not copy.example
    raw = copy.raw_config()
    assert raw["owner"] == "ann" and raw["tags"] == {"copied_from": "mini28 (shipped example)"}
    assert folder_hash(copy.path / "snapshots") == folder_hash(MINI28 / "snapshots")
    assert copy.checkpoint()["epoch"] == 10
    with pytest.raises(RunError, match="not a shipped example"):
        copy_example(copy.path)


def test_resuming_the_example_from_the_cli_trains_a_copy(capsys):
    before = folder_hash(EXAMPLES)
    rc = main(["train", "--resume", str(MINI28), "--epochs", "11", "--max-batches", "2", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "is an example shipped with the app: resuming a copy of it" in err
    result = json.loads(out.strip().splitlines()[-1])
    copy = Run(result["run_dir"])
    assert copy.path.parent == runs_dir() and copy.status()["state"] == "finished"
    assert [e["epoch"] for e in epochs_of(copy)] == list(range(1, 12))  # the shipped 10, then its own 11th
    assert copy.checkpoint()["epoch"] == 11
    assert folder_hash(EXAMPLES) == before


def test_resuming_the_example_as_a_job_trains_a_copy():
    from alexnet_viz.jobs.queue import JobManager
    from tests.test_training import synthetic
    before = folder_hash(EXAMPLES)
    mgr = JobManager(data_loader=lambda: synthetic(256, 64))
    try:
        arch, t, _ = Run(MINI28).config()
        job = mgr.submit("ann", arch, TrainConfig(**{**t.to_dict(), "epochs": 11, "max_batches": 2, "device": "cpu"}),
                         resume_dir=str(MINI28))
        deadline = time.time() + 180
        while job.active and time.time() < deadline:
            time.sleep(0.1)
        assert job.state == "finished", job.message
    finally:
        mgr.close()
    assert Path(job.run_dir).parent == runs_dir() and not is_example(job.run_dir)
    (info,) = [r for r in list_runs(owners={"ann"}) if not r.example]
    assert info.path == job.run_dir and info.epochs_done == 11 and [e["epoch"] for e in info.epochs][-2:] == [10, 11]
    assert folder_hash(EXAMPLES) == before


# --- the Experiments page has an answer on a fresh start -----------------------------------------

def test_a_fresh_start_has_the_shipped_experiments_answer():
    results = collect_results(list_runs(), "relu-vs-sigmoid")
    assert list(results) == ["ReLU", "sigmoid"] and [len(v) for v in results.values()] == [2, 2]
    rows, sentence = summarize_experiment(results)
    assert sentence.startswith("ReLU beat sigmoid") and rows[0]["test acc"] > rows[1]["test acc"]


def test_ones_own_set_replaces_the_shipped_one():
    def info(set_id, example, label="ReLU"):
        return SimpleNamespace(state="finished", example=example, epochs=({"test_acc": 0.5},),
                               tags={"experiments": {"relu-vs-sigmoid": label}, "set": set_id})
    shipped = [info("shipped", True), info("shipped", True, "sigmoid")]
    mine = [info("0001", False)]
    assert experiment_runs(shipped, "relu-vs-sigmoid") == shipped
    assert experiment_runs(mine + shipped, "relu-vs-sigmoid") == mine


def test_the_experiments_page_shows_the_shipped_answer_before_anyone_trains():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "experiments.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.info and at.info[0].value.startswith("ReLU beat sigmoid")
    assert any(c.value.startswith("These runs ship with the app") for c in at.caption)  # said where the answer comes from
    assert at.dataframe[0].value["seeds"].tolist() == [2, 2]


# --- the CLI's predict: the shipped network by default, several images --------------------------

def test_predict_uses_the_shipped_network_and_answers_each_image_in_order(capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    order = [IMAGES[0], broken, *IMAGES[1:]]
    rc = main(["predict", *map(str, order), "--json", "--topk", "3"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err  # one image failed: non-zero, after all the others
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [d["image"] for d in lines] == [str(p) for p in order]
    assert "error" in lines[1] and "predictions" not in lines[1]
    good = [d for d in lines if "predictions" in d]
    assert all("the shipped mini28" in d["model"] and len(d["predictions"]) == 3 for d in good)
    truth = [CLASSES[int(p.name.split("-")[1])] for p in IMAGES]  # fashion-<class>-<name>.png
    right = sum(d["predictions"][0]["class"] == c for d, c in zip(good, truth))
    assert right >= 8, [(d["image"], d["predictions"][0]["class"]) for d in good]


def test_predict_without_json_names_the_model_once_and_puts_errors_in_place(capsys, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    rc = main(["predict", str(IMAGES[7]), str(broken)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.startswith("model: the shipped mini28") and f"{IMAGES[7]}:" in out
    assert err.count("\n") == 1 and err.startswith(f"error: {broken}: ")
    rc = main(["predict", str(IMAGES[7])])
    assert rc == 0 and "Sneaker" in capsys.readouterr().out


def test_a_new_train_page_session_takes_the_presets_settings_not_the_shipped_runs():
    """The shipped mini28 is listed first on a fresh start, but a new session's draft is the newest
    run of one's own, else the preset's defaults (1 epoch): not the example's 10 epochs in fp32."""
    from streamlit.testing.v1 import AppTest
    from alexnet_viz.config import default_training
    assert Run(MINI28).config()[1].epochs != default_training("mini28").epochs  # else this test tells nothing
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "train.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="tr_epochs").value == default_training("mini28").epochs
