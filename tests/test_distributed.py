"""torchrun + DistributedDataParallel on the CPU (gloo, 2 processes) against a one-process run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from alexnet_viz.config import ConfigError, TrainConfig
from alexnet_viz.data import DeviceData, load_fashion_mnist
from alexnet_viz.training.distributed import split_batch
from alexnet_viz.runs.store import Run, list_runs
from alexnet_viz.training.engine import train

from tests.conftest import ROOT
from tests.test_training import TINY, synthetic

RECIPE = ["--epochs", "2", "--max-batches", "3", "--batch-size", "64", "--lr", "0.1", "--optimizer", "momentum",
          "--precision", "fp32", "--device", "cpu"]


def test_shards_of_every_rank_make_up_the_one_process_batches():
    ds = synthetic(103, 8)  # 103 examples: one is left out so that both ranks take the same steps
    one = DeviceData(ds, torch.device("cpu"), 28, 1)
    ranks = [DeviceData(ds, torch.device("cpu"), 28, 1) for _ in range(2)]
    for r, d in enumerate(ranks):
        d.shard(r, 2)
    assert one.steps_per_epoch(20) == 6 and ranks[0].steps_per_epoch(20) == ranks[1].steps_per_epoch(20) == 6
    whole = [y for _, y in one.train_batches(20, torch.Generator().manual_seed(3))]
    parts = [[y for _, y in d.train_batches(20, torch.Generator().manual_seed(3))] for d in ranks]
    for k, (a, b) in enumerate(zip(*parts)):
        assert len(a) == len(b)
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole[k][:len(a) + len(b)].tolist())
    with pytest.raises(ConfigError, match="multiple of 4"):
        split_batch(66, 4)


def _torchrun(args, **kw):
    env = {**os.environ, "ALEXNET_VIZ_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "alexnet_viz", "train", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_like_one_then_stop_and_resume(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(TINY.to_json())
    runs = tmp_path / "runs"
    p = _torchrun(["--config", str(cfg), *RECIPE, "--run-dir", str(runs), "--json"])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "2 processes (gloo)" in err
    (info,) = list_runs(runs)  # rank 0 alone made a run folder
    assert info.state == "finished" and info.epochs_done == 2
    ddp = [m for m in Run(info.path).metrics() if m["kind"] == "epoch"]

    # the same global batches in one process: the same curve, up to float summation order
    t = TrainConfig(epochs=2, max_batches=3, batch_size=64, lr=0.1, optimizer="momentum", precision="fp32",
                    device="cpu")
    one = [r for r in train(TINY, t, load_fashion_mnist()) if r.kind == "epoch"]
    assert [m["epoch"] for m in ddp] == [r.epoch for r in one] == [1, 2]
    for m, r in zip(ddp, one):
        assert m["train_loss"] == pytest.approx(r.train_loss, abs=1e-4)
        assert m["train_acc"] == pytest.approx(r.train_acc, abs=1e-9)
        assert m["test_acc"] == pytest.approx(r.test_acc, abs=2e-3)
    assert json.loads(out.strip().splitlines()[-1])["train_loss"] == pytest.approx(one[-1].train_loss, abs=1e-4)

    # resume the same folder for many more epochs, then Ctrl-C (to the whole process group, as a terminal does)
    p = _torchrun(["--resume", str(info.path), "--epochs", "500", "--json"], start_new_session=True)
    metrics = Run(info.path).path / "metrics.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and metrics.read_text().count('"kind": "epoch"') < 3:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert "stopped: stopped by the user" in err, err  # rank 0 saved and said so (torchrun adds its own trace)
    (info,) = list_runs(runs)
    assert info.state == "stopped" and "stopped by the user" in info.message
    epochs = [m["epoch"] for m in Run(info.path).metrics() if m["kind"] == "epoch"]
    assert epochs[:3] == [1, 2, 3] and epochs == list(range(1, len(epochs) + 1))  # the curve goes on
    assert Run(info.path).load_model() is not None
