"""Looking inside one unit or channel: receptive fields, the arithmetic, top images, feature
visualization, and analyses that share a model without waiting on each other."""
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.inspect.analysis import feature_maps, grad_cam, untrained
from alexnet_viz.config import ArchConfig, ConvSpec, get_preset
from alexnet_viz.inspect.arithmetic import explain_unit
from alexnet_viz.inspect.featviz import visualize_unit
from alexnet_viz.inspect.receptive import effective_field, unit_box
from alexnet_viz.inspect.top import balanced_subset, index_layer, top_images
from alexnet_viz.inspect.walk import layer_outputs, private_copy
from alexnet_viz.model import build_model
from alexnet_viz.architect.summary import summarize

# tanh and average pooling pass a non-zero gradient to every pixel a unit reads, so the set of
# pixels with a gradient is exactly the receptive field; the padding makes the border boxes clip.
SMOOTH = ArchConfig(name="smooth", in_channels=3, input_size=19, convs=(
    ConvSpec(3, 3, 1, 1, activation="tanh", pool="avg", pool_kernel=3, pool_stride=2),
    ConvSpec(3, 3, 2, 2, activation="tanh", pool="none"),
    ConvSpec(2, 2, 1, 0, activation="tanh", pool="avg", pool_kernel=2, pool_stride=1)),
    hidden=(), dropout=0.0, num_classes=3)


def gradient_support(model, x, layer, r, q) -> set:
    g = effective_field(model, x, layer, 0, r, q)
    return set(zip(*np.nonzero(g)))


def box_pixels(b) -> set:
    return {(i, j) for i in range(b.top, b.bottom + 1) for j in range(b.left, b.right + 1)}


@pytest.mark.parametrize("cfg", [SMOOTH, ArchConfig(**{**SMOOTH.__dict__, "adaptive_pool": 2, "name": "adaptive"})])
def test_receptive_box_is_the_set_of_pixels_with_a_gradient(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).double()
    model.cfg = cfg
    x = torch.randn(1, 3, 19, 19, dtype=torch.float64)
    rows = {r.name: r for r in summarize(cfg).rows}
    clipped_somewhere = False
    for layer in ("pool1", "conv2", "pool3") + (("avgpool",) if cfg.adaptive_pool else ()):
        H, W = rows[layer].output_shape[-2:]
        for r in range(H):
            for q in range(W):
                f = unit_box(model, layer, r, q)
                assert gradient_support(model, x, layer, r, q) == box_pixels(f.clipped), (layer, r, q)
                if layer != "avgpool":  # the summary's rf is the box's side where nothing is clipped
                    assert f.exact.height == f.exact.width == rows[layer].rf
                clipped_somewhere |= f.exact != f.clipped
    assert clipped_somewhere  # the border units' boxes reach into the padding and are clipped


def test_receptive_box_at_the_corner_of_d2l():
    model = untrained(get_preset("d2l")).model
    f = unit_box(model, "conv1", 0, 0)  # kernel 11, stride 4, padding 1
    assert (f.exact.top, f.exact.left, f.exact.bottom, f.exact.right) == (-1, -1, 9, 9)
    assert (f.clipped.top, f.clipped.left, f.clipped.bottom, f.clipped.right) == (0, 0, 9, 9)
    last = unit_box(model, "conv1", 53, 53).exact  # 53·4 − 1 = 211 .. 221
    assert (last.top, last.bottom) == (211, 221)
    with pytest.raises(ValueError, match="outside"):
        unit_box(model, "conv1", 54, 0)


def _patch_by_unfold(inp, conv, r, q):
    """The conv's input patch for unit (r, q), by torch's own unfold (an independent answer)."""
    cols = F.unfold(inp[None].double(), conv.kernel_size, padding=conv.padding, stride=conv.stride)
    W = (inp.shape[-1] + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    return cols[0, :, r * W + q].view(inp.shape[0], *conv.kernel_size).numpy()


@pytest.mark.parametrize("preset", ["mini28", "lenet5", "alexnet2012"])
def test_the_arithmetic_adds_up_to_the_real_output(preset):
    cfg = get_preset(preset)
    model = untrained(cfg).model
    for m in model.modules():  # BatchNorm with non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    maps, _ = feature_maps(model, x)
    mods = dict(model.features.named_children())
    for layer, t in maps.items():
        if t.dim() != 3:
            continue
        C, H, W = t.shape
        for c, r, q in [(0, 0, 0), (C - 1, H - 1, W - 1), (C // 2, H // 2, W // 3)]:
            u = explain_unit(model, x, maps, layer, c, r, q)
            assert u.value == pytest.approx(float(t[c, r, q]))
            cm = u.conv
            assert cm is not None
            for term in cm.terms:
                np.testing.assert_array_equal(term.products, term.patch * term.kernel)
                assert term.total == pytest.approx(term.products.sum(), abs=1e-12)
            # what is on screen adds up: the shown channels + the rest + bias = the conv's real output
            assert sum(tm.total for tm in cm.terms) + cm.rest + cm.bias == pytest.approx(cm.pre, abs=1e-9)
            assert abs(cm.pre - float(maps[cm.layer][c, cm.row, cm.col])) < 1e-4
            conv = mods[cm.layer]
            inp = x[0] if cm.input_name == "input" else maps[cm.input_name]
            patch = _patch_by_unfold(inp, conv, cm.row, cm.col)
            per_group = conv.in_channels // conv.groups
            for term in cm.terms:
                np.testing.assert_allclose(term.patch, patch[term.channel], atol=1e-6)
            assert len(cm.terms) + cm.others == per_group
            v = cm.pre
            for s in u.steps:
                assert abs(s.value - s.actual) < 1e-4 and s.actual == pytest.approx(
                    float(maps[s.layer][c, cm.row, cm.col]))
                v = s.value
            if u.pool:
                assert abs(u.pool.value - u.value) < 1e-4
                if u.pool.kind == "max":  # the winner is the input that holds the maximum, and the chain ends at it
                    assert (cm.row, cm.col) == u.pool.winner and abs(v - u.value) < 1e-4
            else:
                assert abs(v - u.value) < 1e-4


def tiny_test_set(n=240):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def test_top_images_are_the_arg_max_over_the_test_set():
    m = untrained(get_preset("mini28"))
    xs, ys = tiny_test_set()
    ix = index_layer(m.model, xs, ys, "relu3", m.mean, m.std)
    assert len(ix.images) == len(xs)
    # independently: the plain Sequential, sliced after relu3, over every image
    names = [n for n, _ in m.model.features.named_children()]
    head = m.model.features[:names.index("relu3") + 1].eval()
    x = ((xs.float() / 255 - m.mean[0]) / m.std[0])[:, None]
    with torch.no_grad():
        y = head(x)                                           # N×C×H×W
    ch = 7
    per_image = y[:, ch].flatten(1).max(1)
    want = per_image.values.argsort(descending=True)[:9]
    tops = top_images(m.model, ix, xs, ys, ch)
    assert [t.index for t in tops] == want.tolist()
    for t in tops:
        assert t.value == pytest.approx(float(per_image.values[t.index]), abs=1e-5)
        assert y[t.index, ch, t.row, t.col] == pytest.approx(t.value, abs=1e-5)
        b = unit_box(m.model, "relu3", t.row, t.col).clipped
        assert t.crop.shape == (b.height, b.width) and t.label == int(ys[t.index])
    assert index_layer(m.model, xs, ys, "relu3", m.mean, m.std) is ix  # cached


def test_a_capped_pass_looks_at_a_class_balanced_subset():
    ys = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert balanced_subset(ys, 3).tolist() == [0, 3, 5]
    assert balanced_subset(ys, 99).tolist() == list(range(9))
    m = untrained(get_preset("mini28"))
    xs, ys = tiny_test_set()
    per_image = summarize(m.cfg).rows[0].macs
    ix = index_layer(m.model, xs, ys, "conv1", m.mean, m.std, max_macs=per_image * 30)
    assert len(ix.images) == 30 and torch.bincount(ys[ix.images]).tolist() == [3] * 10


def test_feature_visualization_excites_its_unit_and_is_seeded():
    m = untrained(get_preset("mini28"))
    a = visualize_unit(m.model, "relu2", 5, m.mean, m.std, steps=24, seed=3)
    assert a.image.shape == (28, 28) and a.image.dtype == np.uint8
    assert (a.row, a.col) == (7, 7)   # relu2 of mini28 is 14×14: its centre
    assert a.reached > a.start
    b = visualize_unit(untrained(get_preset("mini28")).model, "relu2", 5, m.mean, m.std, steps=24, seed=3)
    np.testing.assert_array_equal(a.image, b.image)  # another model object, same weights, same seed


def test_private_copy_shares_weights_but_not_hooks_or_mode():
    model = untrained(get_preset("mini28")).model.train()
    c = private_copy(model)
    c.features.conv1.register_forward_hook(lambda *a: None)
    assert not model.features.conv1._forward_hooks and c.features.conv1._forward_hooks
    assert c.features.conv1.weight is model.features.conv1.weight
    assert model.training and not c.training and not c.features.bn1.training
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(layer_outputs(model, x)["fc2"], model.eval()(x))


class Slow(nn.Module):
    """A layer that takes 0.3 s (asleep, no CPU) and records when each pass was inside it."""
    def __init__(self):
        super().__init__()
        self.spans, self.lock = [], threading.Lock()

    def forward(self, x):
        t0 = time.perf_counter()
        time.sleep(0.3)
        with self.lock:
            self.spans.append((t0, time.perf_counter()))
        return x


def test_two_analyses_of_one_shared_model_overlap_in_time():
    m = untrained(get_preset("mini28"))
    slow = Slow()
    m.model.features.add_module("slow", slow)
    xs = [torch.randn(1, 1, 28, 28) for _ in range(2)]
    want = [grad_cam(m.model, x, "conv2")[0] for x in xs]
    slow.spans.clear()
    got = [None, None]

    def look(i):
        feature_maps(m.model, xs[i])
        got[i] = grad_cam(m.model, xs[i], "conv2")[0]
    threads = [threading.Thread(target=look, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = sorted(slow.spans)[:2]
    assert b0 < a1  # the second analysis was inside the model while the first still was: no lock
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6)


def previous_grad_cam(model, x, layer, cls):
    """The hand-written Grad-CAM that captum's replaced (hooks on the model, as it was)."""
    m = dict(model.features.named_children())[layer]
    saved = {}
    h = m.register_forward_hook(lambda _m, _i, y: saved.__setitem__("a", y))
    try:
        model.eval()
        logits = model(x)
        g, = torch.autograd.grad(logits[0, cls], saved["a"])
    finally:
        h.remove()
    cam = F.relu((g.mean((2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).numpy()


@pytest.mark.parametrize("preset,layer", [("mini28", "conv2"), ("mini28", "conv4"), ("lenet5", "conv2")])
def test_captum_grad_cam_equals_the_previous_implementation(preset, layer):
    m = untrained(get_preset(preset))
    compared = 0
    for seed in range(6):
        x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        cam, cls = grad_cam(m.model, x, layer)
        if cam.std() < 1e-6:   # an all-zero map (no positive evidence): nothing to correlate
            continue
        ref = previous_grad_cam(m.model, x, layer, cls)
        assert np.corrcoef(cam.ravel(), ref.ravel())[0, 1] > 0.999
        compared += 1
    assert compared >= 2


def test_attribution_methods_give_one_scaled_map_each():
    from alexnet_viz.inspect.attribution import METHODS, attributions
    m = untrained(get_preset("mini28"))
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    black = torch.full_like(x, (0 - m.mean[0]) / m.std[0])
    maps = attributions(m.model, x, 3, "conv4", black)
    assert list(maps) == list(METHODS)
    for name, a in maps.items():
        assert a.shape == (28, 28) and np.abs(a).max() == pytest.approx(1.0), name
    assert maps["Saliency"].min() >= 0 and maps["Grad-CAM"].min() >= 0
    # Integrated Gradients' completeness: its sum is the score's change from the black baseline
    from captum.attr import IntegratedGradients
    with torch.enable_grad():
        ig, delta = IntegratedGradients(private_copy(m.model)).attribute(
            x, baselines=black, target=3, n_steps=32, return_convergence_delta=True)
    with torch.no_grad():
        net = private_copy(m.model)
        change = float(net(x)[0, 3] - net(black)[0, 3])
    assert float(ig.sum()) == pytest.approx(change, abs=abs(float(delta)) + 1e-3)
    assert not m.model.features.conv4._forward_hooks and not m.model.features.relu1._backward_hooks
