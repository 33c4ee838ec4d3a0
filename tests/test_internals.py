"""Training internals: the right shapes, numbers that agree with independent computations, and the
vanishing gradient of an all-sigmoid LeNet-5 made visible."""
from dataclasses import replace

import pytest
import torch
from torch import nn

from alexnet_viz.config import TrainConfig, get_preset, with_conv
from alexnet_viz.training.internals import BINS, Probe
from alexnet_viz.model import build_model
from alexnet_viz.runs.store import Run
from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.training.engine import make_optimizer, train, train_step

from tests.test_training import TINY, synthetic


def test_engine_records_internals_with_the_right_shapes(tmp_path):
    t = TrainConfig(epochs=1, batch_size=16, lr=0.1, device="cpu", max_batches=5)
    run = Run.create(TINY, t, "synthetic", tmp_path)
    recs = [r for r in train(TINY, t, synthetic(128, 32), run=run, internals_every=1) if r.kind == "internals"]
    model = build_model(TINY)
    weighted = [(n, m) for n, m in leaf_layers(model) if isinstance(m, (nn.Conv2d, nn.Linear))]
    relus = [n for n, m in leaf_layers(model) if isinstance(m, nn.ReLU)]
    assert [r.step for r in recs] == [1, 2, 3, 4, 5]
    for r in recs:
        assert r.layers == tuple(n for n, _ in weighted) and r.relus == tuple(relus)
        assert len(r.grad_norm) == len(r.update_ratio) == len(r.weight_norm) == len(weighted)
        assert len(r.dead) == len(relus) and all(0 <= d <= 1 for d in r.dead)
        for (n, m), wh, gh in zip(weighted, r.w_hist, r.g_hist):
            assert len(wh) == len(gh) == BINS
            assert sum(wh) == sum(gh) == m.weight.numel()  # small layers: every element counted once
    assert [m["step"] for m in run.internals()] == [1, 2, 3, 4, 5]  # appended to internals.jsonl


def _one_probed_step(model, x, y, lr=0.1):
    opt = make_optimizer(model, TrainConfig(lr=lr, optimizer="sgd"))
    probe = Probe(model, every=1)
    probe.before(1)
    train_step(model, opt, x, y, None)
    return probe.after(1, 0.1)


def test_update_ratio_and_dead_units_agree_with_independent_computations():
    torch.manual_seed(0)
    model = build_model(TINY)
    ds = synthetic(32, 8)
    x = ((ds.train_x[:32].float() / 255 - 0.5) / 0.5)[:, None]
    x = nn.functional.interpolate(x, size=TINY.input_size)
    y = ds.train_y[:32]
    with torch.no_grad():  # dead units of relu_fc1 on this batch, before the step
        h = model.classifier[:2](model.flatten(model.features(x)))
        dead_fc1 = (h == 0).all(0).float().mean().item()
    r = _one_probed_step(model, x, y, lr=0.1)
    # plain SGD: Δw = −lr·g, so ‖Δw‖/‖w‖ · ‖w‖ = lr · ‖g‖
    for ratio, wn, gn in zip(r.update_ratio, r.weight_norm, r.grad_norm):
        assert ratio * wn == pytest.approx(0.1 * gn, rel=1e-4)
    assert r.dead[r.relus.index("relu_fc1")] == pytest.approx(dead_fc1)
    with torch.no_grad():
        model.features.conv1.bias.fill_(-100.0)  # every conv1 unit negative: relu1 all dead
    r = _one_probed_step(model, x, y)
    assert r.dead[r.relus.index("relu1")] == 1.0
    assert r.grad_norm[r.layers.index("conv1")] == 0.0  # dead units pass no gradient back


def test_sigmoid_lenet5_shows_the_vanishing_gradient():
    """All-sigmoid LeNet-5: the first layer's gradient norm is far below the last's; the same net with
    ReLU has them within an order of magnitude (the contrast that AlexNet's ReLU made)."""
    lenet = get_preset("lenet5")
    relu = replace(with_conv(with_conv(lenet, 0, activation="relu"), 1, activation="relu"), fc_activation="relu")
    t = TrainConfig(epochs=1, batch_size=64, lr=0.9, device="cpu", max_batches=3)
    ratios = {}
    for name, arch in (("sigmoid", lenet), ("relu", relu)):
        recs = [r for r in train(arch, t, synthetic(192, 16), internals_every=1) if r.kind == "internals"]
        assert len(recs) == 3
        ratios[name] = [r.grad_norm[0] / r.grad_norm[-1] for r in recs]
    assert max(ratios["sigmoid"]) < 1 / 50
    assert min(ratios["relu"]) > 1 / 10
