"""Upload-to-results: decode, preprocess, all feature maps, top-5, Grad-CAM — vs a bare forward pass.
Then one unit: a click (receptive field + arithmetic) and a channel's top-9 test images (first time
and cached) — vs a plain forward pass of the same images through the same layers."""
import io
import time

import numpy as np
import torch
from PIL import Image

from alexnet_viz.inspect.analysis import analyze, feature_maps, preprocess, untrained
from alexnet_viz.data import ASSETS, load_fashion_mnist, prepare_images
from alexnet_viz.inspect.arithmetic import explain_unit
from alexnet_viz.inspect.receptive import effective_field, unit_box
from alexnet_viz.inspect.top import index_layer, top_images
from alexnet_viz.config import get_preset
from alexnet_viz.inspect.images import open_image

from alexnet_viz.bench import print_table, timeit

ASSETS_EXAMPLE = ASSETS / "examples" / "photo-cat.jpg"   # the page's default image


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
    page_main(quick)


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


@torch.no_grad()
def forward(m, x):
    return m.model(x)


PAGE = "from alexnet_viz.ui import explore\nfrom alexnet_viz.ui.common import guarded\nguarded(explore.page)()\n"


def page_main(quick: bool = False) -> None:
    """Each Explore interaction as the server runs it (Streamlit's AppTest: one script run per change),
    on d2l's network untrained (the Architect's default) and on the shipped mini28; beside it, in the same
    run, the bare forward pass of the image and the top-9 pass a layer change used to wait for."""
    from streamlit.testing.v1 import AppTest

    from alexnet_viz.inspect.choice import Source
    rows = []
    ds = load_fashion_mnist()
    for preset, source in (("d2l", Source.UNTRAINED), ("mini28", None)):
        at = AppTest.from_string(PAGE, default_timeout=600)
        at.session_state["last_valid"] = get_preset(preset)
        if source is not None:
            at.session_state["model_kind"] = source
        m = untrained(get_preset(preset))
        x = preprocess(m, open_image(ASSETS_EXAMPLE.read_bytes()))
        bare = timeit(lambda: forward(m, x), 3, 1)
        layers = ("relu2", "relu5", "pool1", "conv3") if preset == "d2l" else ("relu2", "relu4", "pool2", "conv3")
        steps = [("first view (cold: builds the model)", lambda: None), ("rerun, nothing changed", lambda: None)]
        for layer in layers[: 2 if quick else 4]:
            steps.append((f"layer → {layer}", lambda v=layer: at.select_slider(key="layer").set_value(v)))
            steps.append(("channel → 3rd", lambda v=layer: at.selectbox(key=f"ch-{v}").set_value(
                at.selectbox(key=f"ch-{v}").options[2])))
            steps.append(("unit row → 1", lambda: at.number_input(key="unit_row").set_value(1)))
        steps += [("image → test set", lambda: at.radio(key="source").set_value("Test set")),
                  ("test image → #5", lambda: at.number_input(key="test_idx").set_value(5)),
                  ("Grad-CAM class → Coat", lambda: at.selectbox(key="cam_class").set_value("Coat"))]
        times = {}
        for name, change in steps:
            change()
            t = time.perf_counter()
            at.run()
            times.setdefault(name.split(" → ")[0], []).append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"{name}: {at.exception[0].value}")
        layer = layers[0]
        t = time.perf_counter()
        index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std, max_macs=2e11 if quick else 2e12)
        top9 = time.perf_counter() - t
        for name, ts in times.items():
            worst = max(ts)
            verdict = "" if name.startswith("first") else "yes" if worst <= 1.0 else "NO"
            rows.append([preset, name, len(ts), f"{sorted(ts)[len(ts) // 2]:.2f}", f"{worst:.2f}", verdict,
                         f"{bare * 1e3:.0f}", f"{top9:.1f}"])
    print_table(f"explore page: seconds per interaction (one script run, AppTest); baselines: the image's bare "
                f"forward pass, and the top-9 pass over the test set{' (capped at 2e11 MACs: --quick)' if quick else ''} "
                f"that a layer change no longer waits for (target: each d2l interaction ≤ 1 s)",
                ["preset", "interaction", "n", "median s", "worst s", "≤ 1 s", "bare forward ms", "top-9 pass s"], rows)
