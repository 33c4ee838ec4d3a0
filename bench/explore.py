"""Upload-to-results: decode, preprocess, all feature maps, top-5, Grad-CAM — vs a bare forward pass."""
import io

import numpy as np
import torch
from PIL import Image

from alexnet_viz.activations import analyze, preprocess, untrained
from alexnet_viz.config import get_preset
from alexnet_viz.images import open_image

from . import print_table, timeit


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
