"""Data, engine and runs: synthetic data for behaviour, the real Fashion-MNIST where the data matters."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_viz.training import engine
from alexnet_viz.config import ArchConfig, ConvSpec, TrainConfig, default_training, get_preset
from alexnet_viz.data import Dataset, DeviceData, load_fashion_mnist, random_crop_flip
from alexnet_viz.runs.store import Run, RunError, list_runs
from alexnet_viz.training.engine import confusion, train

from tests.conftest import ROOT

TINY = ArchConfig(name="tiny", in_channels=1, input_size=12,
                  convs=(ConvSpec(4, 3, 1, 1, pool_kernel=2, pool_stride=2),), hidden=(16,), dropout=0.0)


def synthetic(n_train=512, n_test=128, seed=0) -> Dataset:
    """Class c = a bright 4×4 square in cell c of a 2×5 grid, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
        for i, c in enumerate(y.tolist()):
            r, q = divmod(c, 5)
            x[i, 4 + r * 12:12 + r * 12, 2 + q * 5:6 + q * 5] = 255
        return x, y
    return Dataset(*make(n_train), *make(n_test), source="synthetic", is_sample=False)


def test_loss_decreases_on_synthetic_data():
    t = TrainConfig(epochs=4, batch_size=32, lr=0.1, optimizer="momentum", device="cpu")
    epochs = [r for r in train(TINY, t, synthetic()) if r.kind == "epoch"]
    assert len(epochs) == 4
    assert epochs[-1].train_loss < 0.7 * epochs[0].train_loss
    assert epochs[-1].test_acc > 0.5


def test_records_are_immutable_and_complete():
    recs = list(train(TINY, TrainConfig(epochs=1, batch_size=64, device="cpu"), synthetic()))
    assert recs[-1].kind == "end" and recs[-1].status == "finished"
    steps = [r for r in recs if r.kind == "step"]
    assert steps and steps[-1].progress == pytest.approx(1.0) and steps[-1].epoch == pytest.approx(1.0)
    with pytest.raises(AttributeError):
        steps[0].loss = 0


def test_stop_flag_stops_within_one_batch(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)  # a Step after every batch
    stop = threading.Event()
    run = Run.create(TINY, TrainConfig(), "synthetic", tmp_path)
    recs = []
    for r in train(TINY, TrainConfig(epochs=3, batch_size=16, device="cpu"), synthetic(), stop=stop, run=run):
        recs.append(r)
        if r.kind == "step" and r.step == 5:
            stop.set()
    assert recs[-1].kind == "end" and recs[-1].status == "stopped"
    assert [r.step for r in recs if r.kind == "step"][-1] == 5  # no batch after the flag
    assert run.status()["state"] == "stopped"
    # the weights as they were at the stop are on disk: those of step 5, the epoch its record says
    step5 = [r for r in recs if r.kind == "step"][-1]
    assert run.checkpoint()["epoch"] == pytest.approx(step5.epoch) == pytest.approx(recs[-1].epochs_done)
    assert run.load_model()(torch.zeros(1, 1, TINY.input_size, TINY.input_size)).shape == (1, TINY.num_classes)


def test_max_batches_caps_each_epoch():
    t = TrainConfig(epochs=2, batch_size=16, max_batches=3, device="cpu")
    steps = [r for r in train(TINY, t, synthetic()) if r.kind == "step"]
    assert steps[-1].step == 6


def test_run_folder_and_resume(tmp_path):
    t = TrainConfig(epochs=1, batch_size=64, lr=0.1, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)
    list(train(TINY, t, synthetic(), run=run))
    assert run.status()["state"] == "finished"
    assert [m["kind"] for m in run.metrics()].count("epoch") == 1
    assert run.test_preds().shape == (128,)
    t2 = replace(t, epochs=3)
    recs = list(train(TINY, t2, synthetic(), run=run, resume=run))
    assert [r.epoch for r in recs if r.kind == "epoch"] == [2, 3]
    assert run.checkpoint()["epoch"] == 3.0
    (info,) = list_runs(tmp_path)
    assert info.state == "finished" and info.epochs_done == 3 and info.test_acc is not None


def test_corrupted_weights_and_hand_edited_config_give_clear_errors(tmp_path):
    t = TrainConfig(epochs=1, batch_size=64, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)
    list(train(TINY, t, synthetic(), run=run))
    (run.path / "weights.pt").write_bytes(b"not a zip at all")
    with pytest.raises(RunError, match="damaged"):
        run.load_model()
    cfg = json.loads((run.path / "config.json").read_text())
    cfg["arch"]["convs"][0]["kernel"] = 40
    (run.path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="cannot work"):
        run.config()
    (run.path / "config.json").write_text("{")
    assert list_runs(tmp_path)[0].state == "damaged"


def test_unwritable_runs_folder_is_a_run_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="cannot write the run folder"):
        Run.create(TINY, TrainConfig(), "synthetic", blocker / "runs")


def test_pickled_code_in_weights_is_refused(tmp_path):
    """A weights file carrying a pickled object is never unpickled (weights_only=True)."""
    t = TrainConfig(epochs=1, batch_size=64, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)
    list(train(TINY, t, synthetic(), run=run))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    torch.save({"model": Evil()}, run.path / "weights.pt")
    with pytest.raises(RunError):
        run.load_model()
    assert not (tmp_path / "pwned").exists()


def test_a_wrong_data_folder_is_an_error_not_a_silent_fallback(monkeypatch, tmp_path):
    from alexnet_viz.data import DataError
    monkeypatch.setenv("ALEXNET_VIZ_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(DataError, match="ALEXNET_VIZ_DATA=.*nothing-here holds no Fashion-MNIST"):
        load_fashion_mnist()


def test_offline_fallback_to_the_bundled_sample():
    ds = load_fashion_mnist()
    assert ds.is_sample and "bundled sample" in ds.source and "offline" in ds.source
    assert ds.train_x.shape == (10_000, 28, 28) and ds.test_x.shape == (2_000, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [1000] * 10
    assert torch.bincount(ds.test_y).tolist() == [200] * 10


def test_real_fashion_mnist_loads(real_data):
    ds = load_fashion_mnist()
    assert not ds.is_sample
    assert ds.train_x.shape == (60_000, 28, 28) and ds.train_x.dtype == torch.uint8
    assert abs(ds.train_x.float().mean().item() / 255 - 0.2861) < 1e-3


def test_device_batches_resize_and_normalize():
    d = DeviceData(synthetic(64, 16), torch.device("cpu"), size=224, channels=3)
    x, y = next(d.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 224, 224) and y.shape == (8,) and x.dtype == torch.float32
    assert -1 < x.min().item() < 0 < x.max().item()


def test_augmentation_shifts_and_flips_only():
    x = torch.rand(16, 1, 28, 28)
    y = random_crop_flip(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and not torch.equal(x, y)
    assert y.sum() <= x.sum() + 1e-3  # zero padding brings nothing new in


def test_confusion_matrix():
    c = confusion(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert c.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_killed_training_process_keeps_its_run(tmp_path):
    """SIGKILL mid-run: metrics up to the kill, last epoch's weights load, listed as stopped."""
    env = {**os.environ, "ALEXNET_VIZ_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("ALEXNET_VIZ_DATA", None)
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-m", "alexnet_viz", "train", "--preset", "lenet5", "--epochs", "50",
                          "--max-batches", "10", "--batch-size", "64", "--device", "cpu", "--run-dir", str(runs)],
                         env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            found = list(runs.glob("*/weights.pt"))
            # three epoch records: epoch 2's weights are on disk (an epoch's record is written just
            # before its weights, so the kill may land between the two for the last one)
            if found and sum('"kind": "epoch"' in line for line in (found[0].parent / "metrics.jsonl").read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no epoch was saved in 120 s")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    (info,) = list_runs(runs)
    assert info.state == "stopped" and "ended without finishing" in info.message
    run = Run(runs / info.name)
    epochs = [m for m in run.metrics() if m["kind"] == "epoch"]
    assert len(epochs) >= 3
    assert run.checkpoint()["epoch"] >= max(2, len(epochs) - 1)
    assert run.load_model()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_cli_train_json_on_the_sample(tmp_path):
    env = {**os.environ, "ALEXNET_VIZ_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("ALEXNET_VIZ_DATA", None)
    out = subprocess.run([sys.executable, "-m", "alexnet_viz", "train", "--preset", "mini28", "--epochs", "1",
                          "--max-batches", "20", "--run-dir", str(tmp_path), "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"test_acc", "train_loss", "examples_per_sec", "run_dir"} <= set(res)
    assert "bundled sample" in out.stderr and 0.1 < res["test_acc"] <= 1
    assert (Path(res["run_dir"]) / "heartbeat").exists()  # CLI runs say they are alive too
    assert res["precision"] in ("bf16", "fp32") and f"precision on cpu: {res['precision_reason']}" in out.stderr


@pytest.mark.slow
@pytest.mark.early
def test_mini28_one_epoch_on_real_data(real_data):
    """The issue's target: one CPU epoch of mini28 reaches test accuracy ≥ 0.85 (time is in the bench)."""
    recs = list(train(get_preset("mini28"), replace(default_training("mini28"), device="cpu")))
    assert recs[-1].status == "finished"
    assert [r for r in recs if r.kind == "epoch"][-1].test_acc >= 0.85


def test_disk_full_mid_run_ends_cleanly(tmp_path, monkeypatch):
    """A write that fails mid-run (disk full) ends the run with a message, not an exception."""
    t = TrainConfig(epochs=2, batch_size=64, device="cpu")
    run = Run.create(TINY, t, "synthetic", tmp_path)

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Run, "save_checkpoint", full)
    recs = list(train(TINY, t, synthetic(), run=run))
    assert recs[-1].kind == "end" and recs[-1].status == "error"
    assert "disk full" in recs[-1].message and "ALEXNET_VIZ_RUNS" in recs[-1].message
    assert [m["kind"] for m in run.metrics()].count("epoch") == 1  # what was written before stays


def test_ctrl_c_stops_the_cli_run_and_saves_it(tmp_path):
    env = {**os.environ, "ALEXNET_VIZ_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("ALEXNET_VIZ_DATA", None)
    p = subprocess.Popen([sys.executable, "-m", "alexnet_viz", "train", "--preset", "lenet5", "--epochs", "50",
                          "--device", "cpu", "--run-dir", str(tmp_path), "--json"],
                         env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "stopped"
    (info,) = list_runs(tmp_path)
    assert info.state == "stopped" and "stopped by the user" in info.message
    # its weights.pt holds the epoch its status.json says it stopped at (two files, written apart)
    assert Run(info.path).checkpoint()["epoch"] == pytest.approx(info.epochs_done)


FAULTS = """
import resource
import torch
from alexnet_viz.training.engine import hold_freed_memory

def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):  # a step's pattern: blocks allocated, written, all freed at the heap's top
        blocks = [torch.empty(20 << 18).fill_(1) for _ in range(3)]  # 3 x 20 MB
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

default = faults()
print(default, hold_freed_memory(), faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_a_training_process_holds_what_a_step_frees():
    """By default glibc hands the heap's free top back at each step and faults it in again at the next
    (~420 thousand page faults here); held, only the first step faults (~10 thousand). The limits passed
    to mallopt must fit a C int: 4 GiB wrapped to 0, which trimmed at every free (1.5 million faults for
    an epoch, against 180 thousand held)."""
    assert engine.HOLD_BELOW < 2**31 and engine.HOLD_TOP < 2**31
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout.split()
    default, held, after = int(out[0]), out[1] == "True", int(out[2])
    assert held and after < default / 5, out
