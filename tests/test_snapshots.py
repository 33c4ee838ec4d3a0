"""Snapshots: written at the right moments, within the disk budget, loaded safely, used by predict --at."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_viz.runs import snapshots
from alexnet_viz.__main__ import main
from alexnet_viz.inspect.analysis import ModelUnavailable, from_run, predict
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.inspect.embedding import align, project_run
from alexnet_viz.model import build_model
from alexnet_viz.runs.store import Run, RunError
from alexnet_viz.training.engine import init_weights, train

from tests.test_training import TINY, synthetic


N_TRAIN, BATCH = 128, 8   # 16 steps an epoch: early snapshots at steps 1 and 4


def trained(tmp_path, epochs=2, **kw):
    t = TrainConfig(epochs=epochs, batch_size=BATCH, lr=0.1, device="cpu", **kw)
    run = Run.create(TINY, t, "synthetic", tmp_path)
    recs = list(train(TINY, t, synthetic(N_TRAIN, 32), run=run))
    assert recs[-1].status == "finished"
    return run, t, recs


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def test_snapshots_at_the_planned_moments(tmp_path):
    run, t, recs = trained(tmp_path)
    snaps = run.snapshots()
    per_epoch = N_TRAIN // BATCH
    early = [s for s in (1, 4, 16, 64) if s < per_epoch]
    assert [s["step"] for s in snaps] == [0, *early, per_epoch, 2 * per_epoch]
    assert [s["epoch"] for s in snaps] == [0.0, *(s / per_epoch for s in early), 1.0, 2.0]
    assert snaps[0]["label"] == "before training" and snaps[-1]["label"] == "epoch 2"
    assert [r.label for r in recs if r.kind == "snapshot"] == [s["label"] for s in snaps]
    # before training = a fresh model built with the run's seed and init (an independent rebuild)
    torch.manual_seed(t.seed)
    fresh = build_model(TINY)
    init_weights(fresh)
    assert same_state(run.load_model(0).state_dict(), fresh.state_dict())
    # the last epoch's snapshot = the final weights; the first differs from them
    final = run.load_model().state_dict()
    assert same_state(run.load_model("epoch 2").state_dict(), final)
    assert not same_state(run.load_model("step 1").state_dict(), final)
    assert {p.name for p in (run.path / "snapshots").glob("*.pt")} == {s["file"] for s in snaps}


def test_disk_budget_drops_early_steps_first_then_thins_epochs(tmp_path, monkeypatch):
    torch.save(build_model(TINY).state_dict(), tmp_path / "one.pt")
    one = (tmp_path / "one.pt").stat().st_size   # a snapshot file, measured (a zip: more than its tensors)
    monkeypatch.setattr(snapshots, "MIN_BUDGET", int(4.5 * one))  # room for 4 snapshots
    run, _, _ = trained(tmp_path, epochs=5, max_batches=2)
    snaps = run.snapshots()
    files = list((run.path / "snapshots").glob("*.pt"))
    assert len(files) == len(snaps) == 4
    assert sum(f.stat().st_size for f in files) <= snapshots.budget(snapshots.state_bytes(build_model(TINY)))
    assert snaps[0]["label"] == "before training" and snaps[-1]["label"] == "epoch 5"
    assert all(s["label"].startswith("epoch") for s in snaps[1:])  # early steps went first
    gaps = [b["epoch"] - a["epoch"] for a, b in zip(snaps, snaps[1:])]
    assert max(gaps) - min(gaps) <= 1  # the kept epochs stay evenly spread


def test_a_big_net_keeps_fewer_snapshots_than_a_small_one():
    """The rule in snapshots.py with the presets' real sizes: d2l's 47 M parameters keep fewer."""
    def kept(name):
        fp32 = snapshots.state_bytes(build_model(get_preset(name)))
        return snapshots.budget(fp32) // snapshots.snapshot_bytes(fp32)
    assert kept("d2l") == snapshots.MIN_KEPT < kept("mini28")
    d2l = snapshots.state_bytes(build_model(get_preset("d2l")))
    assert snapshots.storage_dtype(d2l) == torch.bfloat16
    assert snapshots.planned_early(469, 10, d2l) == []          # the epochs alone fill its budget
    assert snapshots.planned_early(469, 1, snapshots.state_bytes(build_model(get_preset("mini28")))) == \
        [1, 4, 16, 64, 256]


def test_resume_adds_epoch_snapshots_only(tmp_path):
    run, t, _ = trained(tmp_path, epochs=1)
    before = run.snapshots()
    list(train(TINY, replace(t, epochs=2), synthetic(N_TRAIN, 32), run=run, resume=run))
    after = run.snapshots()
    assert after[:len(before)] == before
    assert [(s["label"], s["step"]) for s in after[len(before):]] == [("epoch 2", 2 * N_TRAIN // BATCH)]


def test_unknown_snapshot_and_pickled_code_are_refused(tmp_path):
    run, _, _ = trained(tmp_path, epochs=1)
    with pytest.raises(RunError, match="no snapshot 'step 3'.*kept: before training"):
        run.load_model("step 3")
    with pytest.raises(ModelUnavailable, match="no snapshot"):
        from_run(run.path, "epoch 9")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    torch.save({"conv1.weight": Evil()}, run.path / "snapshots" / run.snapshots()[0]["file"])
    with pytest.raises(RunError, match="damaged"):
        run.load_model(0)
    assert not (tmp_path / "pwned").exists()


def test_predict_at_differs_between_first_and_last_snapshot(tmp_path, capsys):
    run, _, _ = trained(tmp_path)
    img = synthetic(n_train=1, n_test=1, seed=5).test_x[0].numpy()
    Image.fromarray(img).save(tmp_path / "item.png")
    out = {}
    for at in ("0", "2"):
        assert main(["predict", str(tmp_path / "item.png"), "--run", str(run.path), "--at", at,
                     "--topk", "10", "--json", "--no-invert"]) == 0
        res = json.loads(capsys.readouterr().out)
        out[at] = {p["class"]: p["prob"] for p in res["predictions"]}
        assert res["model"].endswith("(before training)" if at == "0" else "(epoch 2)")
    # independently: the two snapshots' own forward passes, through the same preprocessing
    first, last = from_run(run.path, 0), from_run(run.path, 2)
    assert max(abs(out["0"][c] - out["2"][c]) for c in out["0"]) > 0.05
    assert dict(predict(first, Image.open(tmp_path / "item.png"), invert=False, k=10)) == pytest.approx(out["0"])
    assert dict(predict(last, Image.open(tmp_path / "item.png"), invert=False, k=10)) == pytest.approx(out["2"])


def test_projection_has_one_point_per_test_image_at_each_snapshot(tmp_path):
    run, _, _ = trained(tmp_path)
    ds = synthetic(N_TRAIN, 32)
    frames, labels, idx = project_run(run.path, ds, n=len(ds.test_y))
    assert [lab for lab, _ in frames] == [s["label"] for s in run.snapshots()]
    assert all(xy.shape == (len(ds.test_y), 2) and np.isfinite(xy).all() for _, xy in frames)
    assert sorted(idx.tolist()) == list(range(len(ds.test_y))) and (labels == ds.test_y.numpy()[idx]).all()
    # trained: same-class images sit closer together at the last snapshot than before training
    def spread(xy):
        return np.mean([xy[labels == c].std(0).sum() for c in np.unique(labels)])
    assert spread(frames[-1][1]) < spread(frames[0][1])


def test_a_projection_is_kept_with_the_run_and_made_again_when_the_run_or_the_images_change(tmp_path, monkeypatch):
    from alexnet_viz.inspect import embedding
    run, _, _ = trained(tmp_path)
    ds = synthetic(N_TRAIN, 32)
    made = []
    real = embedding._project
    monkeypatch.setattr(embedding, "_project", lambda *a: made.append(1) or real(*a))
    first, labels, idx = project_run(run.path, ds, n=20)
    (kept,) = run.path.glob("embedding-*.npz")
    again, labels2, idx2 = project_run(run.path, ds, n=20)
    assert len(made) == 1  # read back, not made again
    assert [lab for lab, _ in again] == [lab for lab, _ in first] and (labels2 == labels).all() and (idx2 == idx).all()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again))
    project_run(run.path, ds, n=10)  # other images: another file
    assert len(made) == 2 and len(list(run.path.glob("embedding-*.npz"))) == 2
    index = run.path / "snapshots" / "index.json"  # the run trained on (a snapshot more): made again
    entries = json.loads(index.read_text())
    index.write_text(json.dumps(entries[:-1]))
    frames, _, _ = project_run(run.path, ds, n=20)
    assert len(made) == 3 and len(frames) == len(first) - 1
    kept.write_bytes(kept.read_bytes()[:100])  # cut short (a crash mid-write elsewhere): made again
    project_run(run.path, ds, n=20)
    assert len(made) == 4 and not list(run.path.glob(".*tmp"))
    project_run(run.path, ds, n=20, keep=False)
    assert len(made) == 4  # the file made just before is read


def test_the_shipped_run_keeps_its_projection_for_the_sample_and_a_fresh_one_is_the_same():
    """The shipped mini28 opens its embedding at once offline; what it ships is what it would compute."""
    from alexnet_viz.data import load_sample
    from alexnet_viz.inspect import embedding
    from alexnet_viz.runs.examples import example_run
    run = example_run()
    before = {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()}
    frames, labels, idx = project_run(run.path, load_sample())  # read from the shipped file
    made = embedding._project(run, embedding.prepare_images(load_sample().test_x[idx], 1, 28))
    assert [lab for lab, _ in frames] == [lab for lab, _ in made] and len(frames) == len(run.snapshots())
    assert all(np.allclose(a, b, atol=1e-4) for (_, a), (_, b) in zip(frames, made))
    assert {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()} == before  # nothing written there


def test_procrustes_undoes_a_rotation_and_a_reflection():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(50, 2, generator=g)
    th = 1.1
    r = torch.tensor([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], dtype=torch.float32)
    a = b @ r @ torch.tensor([[1.0, 0], [0, -1.0]])
    assert torch.allclose(align(a, b), b, atol=1e-5)


def test_a_disk_nearly_full_skips_snapshots_says_so_and_keeps_the_weights(tmp_path, monkeypatch):
    """The issue's case: a 3 MB disk, mini28's snapshots 0.66 MB each. Weights come first: no snapshot is
    written while the room for the next epoch's checkpoint would be gone, each skip is noted in the run's
    log, and the run ends with its weights."""
    from types import SimpleNamespace
    disk = 3 * 2**20
    used = lambda: sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())  # noqa: E731
    monkeypatch.setattr(snapshots.shutil, "disk_usage", lambda p: SimpleNamespace(total=disk, used=used(),
                                                                                    free=disk - used()))
    mini = get_preset("mini28")
    t = TrainConfig(epochs=2, batch_size=BATCH, max_batches=5, device="cpu")
    run = Run.create(mini, t, "synthetic", tmp_path)
    recs = list(train(mini, t, synthetic(64, 28), run=run))
    assert recs[-1].status == "finished" and run.checkpoint()["epoch"] == 2
    assert used() <= disk and not list(tmp_path.rglob("*.tmp"))
    notes = [m["message"] for m in run.metrics() if m["kind"] == "note"]
    assert notes and all("skipped" in n and "free on the disk" in n for n in notes)
    assert {n.split("'")[1] for n in notes} >= {"before training", "step 1", "step 4", "epoch 1", "epoch 2"}
    assert run.snapshots() == []


def test_with_room_on_the_disk_no_snapshot_is_skipped(tmp_path):
    run, t, recs = trained(tmp_path)
    assert not [m for m in run.metrics() if m["kind"] == "note"] and run.snapshots()
