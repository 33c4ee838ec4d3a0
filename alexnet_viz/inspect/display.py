"""What Explore draws, computed: boxes mapped onto a shown copy of the user's image, contrast
stretching, sharp-pixel enlargement, a box drawn on a small image, the layer sentences.

Pure numpy and PIL, no streamlit: the pages call these and only place the results.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from alexnet_viz.architect.summary import describe_layers
from alexnet_viz.config import ArchConfig
from alexnet_viz.inspect.walk import summarized

MAX_MOSAIC_PIXELS = 2_000_000  # a layer's mosaic shows every channel unless that is more pixels than this


def scale_box(box: tuple[float, float, float, float], size: tuple[int, int],
              shown: tuple[int, int]) -> tuple[float, float, float, float]:
    """A (left, top, right, bottom) box on an image of `size` (w, h) mapped onto a resized copy of `shown` (w, h)."""
    kx, ky = shown[0] / size[0], shown[1] / size[1]
    x0, y0, x1, y1 = box
    return x0 * kx, y0 * ky, x1 * kx, y1 * ky


def stretch_contrast(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """uint8 pixels spread over 0..255 (a flat image stays as it is); with the (low, high) it had."""
    lo, hi = int(a.min()), int(a.max())
    if hi <= lo:
        return a.astype(np.uint8), lo, hi
    return ((a.astype(np.float32) - lo) / (hi - lo) * 255).round().astype(np.uint8), lo, hi


def enlarge(a: np.ndarray, side: int) -> np.ndarray:
    """Sharp pixels (nearest neighbour, a whole factor) until the long side reaches `side`: browsers
    blur a small image they stretch."""
    k = max(1, side // max(a.shape[:2]))
    return np.repeat(np.repeat(a, k, 0), k, 1) if k > 1 else a


def draw_box(a: np.ndarray, box: tuple[int, int, int, int], side: int,
             color: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """An image (H×W or H×W×3 uint8) enlarged to `side` with sharp pixels, and the box (top, left,
    bottom, right, inclusive, in the image's pixels) drawn around exactly those pixels: RGB uint8."""
    rgb = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a
    big = enlarge(rgb, side)
    k = big.shape[0] // rgb.shape[0]
    t, l, b, r = box
    im = Image.fromarray(np.ascontiguousarray(big))
    width = max(1, min(3, k // 3))
    # the outline lies on the box's outermost enlarged pixels, inside it: nothing outside is covered
    ImageDraw.Draw(im).rectangle([l * k, t * k, (r + 1) * k - 1, (b + 1) * k - 1], outline=color, width=width)
    return np.asarray(im)


def mosaic_channels(shape: tuple[int, ...]) -> int:
    """How many channels a C×H×W layer's mosaic shows: all of them, unless that would be huge."""
    C, H, W = shape
    return min(C, max(16, MAX_MOSAIC_PIXELS // (H * W)))


@functools.lru_cache(maxsize=32)
def layer_sentences(cfg: ArchConfig) -> dict[str, str]:
    """Each layer's one-sentence explanation with its own numbers (the summary is computed once per network)."""
    s = summarized(cfg)
    return dict(zip([r.name for r in s.rows], describe_layers(s)))


def spatial_layers(maps) -> list[str]:
    """The layers whose output is a stack of maps (C×H×W), in order: what the layer slider offers."""
    return [n for n, t in maps.items() if t.dim() == 3]


def default_layer(layers: list[str]) -> str:
    return "relu1" if "relu1" in layers else layers[0]
