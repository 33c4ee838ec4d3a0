"""Upload-to-results: decode, preprocess, all feature maps, top-5, Grad-CAM — vs a bare forward pass.
Then one unit: a click (receptive field + arithmetic) and a channel's top-9 test images (first time
and cached) — vs a plain forward pass of the same images through the same layers."""
import io
import time

import numpy as np
import torch
from PIL import Image

from alexnet_viz.inspect.analysis import analyze, feature_maps, preprocess, untrained
from alexnet_viz.data import load_fashion_mnist, prepare_images
from alexnet_viz.inspect.arithmetic import explain_unit
from alexnet_viz.inspect.receptive import effective_field, unit_box
from alexnet_viz.inspect.top import index_layer, top_images
from alexnet_viz.config import get_preset
from alexnet_viz.inspect.images import open_image

from alexnet_viz.bench import print_table, timeit


def photo_bytes() -> bytes:
    """A 640×480 JPEG, like a phone photo scaled for upload."""
    rng = np.random.default_rng(0)
    a = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main(quick: bool = False) -> None:
    data = photo_bytes()
    n = 5 if quick else 20
    rows = []
    for preset in ("d2l", "torchvision", "mini28"):
        m = untrained(get_preset(preset))

        def full():
            analyze(m, open_image(data))

        def bare():
            x = preprocess(m, open_image(data))
            with torch.no_grad():
                m.model(x)
        ours, base = timeit(full, n, 2), timeit(bare, n, 2)
        rows.append([preset, f"{ours * 1e3:.0f}", f"{base * 1e3:.0f}", f"{ours / base:.2f}×",
                     ("yes" if ours <= 0.3 else "NO") if preset == "d2l" else ""])
    print_table(f"explore: median of {n}, 640×480 JPEG upload (target d2l ≤ 300 ms)",
                ["preset", "full analysis ms", "decode + bare forward ms", "overhead", "≤ 300 ms"], rows)
    unit_main(quick)


def click(m, x, maps, layer):
    """What the page computes when a unit is clicked: its box, its gradient map, its arithmetic."""
    C, H, W = maps[layer].shape
    unit_box(m.model, layer, H // 2, W // 2)
    effective_field(m.model, x, layer, C // 2, H // 2, W // 2)
    explain_unit(m.model, x, maps, layer, C // 2, H // 2, W // 2)


def plain_pass(m, ds, idx, layer):
    """The baseline: the same images through the plain Sequential up to the layer, nothing kept."""
    names = [n for n, _ in m.model.features.named_children()]
    head = m.model.features[:names.index(layer) + 1]
    with torch.no_grad():
        for k in range(0, len(idx), 256):
            head(prepare_images(ds.test_x[idx[k:k + 256]], m.cfg.in_channels, m.cfg.input_size, m.mean, m.std))


def unit_main(quick: bool = False) -> None:
    ds = load_fashion_mnist()
    im = open_image(photo_bytes())
    rows = []
    for preset, layer in (("mini28", "relu4"), ("d2l", "relu5")):
        m = untrained(get_preset(preset))
        x = preprocess(m, im)
        maps, _ = feature_maps(m.model, x)
        ours = timeit(lambda: click(m, x, maps, layer), 3 if quick else 10, 1)
        fwd = timeit(lambda: feature_maps(m.model, x), 3 if quick else 10, 1)
        t = time.perf_counter()
        ix = index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std)
        top_images(m.model, ix, ds.test_x, ds.test_y, 0)
        first = time.perf_counter() - t
        cached = timeit(lambda: top_images(m.model, index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std),
                                           ds.test_x, ds.test_y, 1), 5, 1)
        t = time.perf_counter()
        plain_pass(m, ds, ix.images, layer)
        base = time.perf_counter() - t
        first_target, cached_target = (2.0, 0.1) if preset == "mini28" else (60.0, None)
        rows.append([preset, layer, f"{ours * 1e3:.0f}", f"{fwd * 1e3:.0f}", "yes" if ours <= 0.3 else "NO",
                     f"{len(ix.images):,}", f"{first:.2f}", f"{base:.2f}", f"{first / base:.2f}×",
                     "yes" if first <= first_target else "NO", f"{cached * 1e3:.1f}",
                     ("yes" if cached <= cached_target else "NO") if cached_target else ""])
    print_table(f"explore, one unit: click = receptive field + gradient map + arithmetic (median); top-9 for a "
                f"channel over {ds.source.split(' ')[0] if not ds.is_sample else 'the bundled sample'} "
                f"(targets: click ≤ 300 ms; mini28 top-9 ≤ 2 s first, ≤ 100 ms cached; d2l first ≤ 60 s)",
                ["preset", "layer", "click ms", "all maps ms", "≤ 300", "images", "top-9 first s",
                 "plain pass s", "overhead", "≤ target", "cached ms", "≤ 100"], rows)
