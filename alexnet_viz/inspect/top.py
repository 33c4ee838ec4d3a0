"""What a channel responds to: the test images that excite it most (DVT's "top images").

One batched pass over the test set per (model, layer) keeps, for every image and channel, the
strongest value and where it is; a channel's top 9 are then a sort, and each is cropped to the
receptive field around its strongest position. The passes are cached per model object (weakly:
when the app drops a model, its indexes go too) and stop at the layer asked for.

A pass takes seconds (mini28) to a minute (d2l): too long for a slider step, so the page runs it
in the background (inspect/background.py) and shows the images when they are found.

A big network at 224×224 would need minutes for all 10,000 test images on a CPU, so a pass is
capped at MAX_MACS multiply-accumulates: it then looks at a class-balanced subset (the first
images of each class) and says how many it saw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from alexnet_viz.cost.budget import server_budget
from alexnet_viz.data import prepare_images
from alexnet_viz.inspect.display import draw_box
from alexnet_viz.inspect.modelcache import PerObjectCache
from alexnet_viz.inspect.receptive import Box, unit_box
from alexnet_viz.inspect.walk import output_at, summarized

MAX_MACS = 2e12    # about 40 s of one pass on a 2-core laptop CPU at ~50 G multiply-accumulates/s
BATCH_MACS = 4e10  # images per batch: about a second of work between progress reports
BATCH_BYTES = 8 * 2**20  # ...and a batch's largest map within a CPU's cache (mini28: 1.3-1.6× faster than 512)

_PASSES = PerObjectCache()  # per model: the passes themselves run in parallel, outside its lock
_PRINTS = PerObjectCache()  # per test-set tensor: its fingerprint


def _fingerprint(t: torch.Tensor) -> tuple[int, int]:
    """(length, sum) of a test set, computed once per tensor object (a sum of 10,000 images is ~20 ms)."""
    fp = _PRINTS.get(t, "fingerprint")
    if fp is None:
        fp = (len(t), int(t.sum()))
        _PRINTS.put(t, "fingerprint", fp)
    return fp


@dataclass(frozen=True, eq=False)
class ChannelIndex:
    """For one layer over the test images: each image's strongest value per channel, and where."""
    layer: str
    images: torch.Tensor   # n indices into the test set
    best: torch.Tensor     # n×C float32
    where: torch.Tensor    # n×C int64: row * W + col of that value
    side: tuple[int, int]  # the layer's H, W
    total: int             # images in the test set (n ≤ total)


@dataclass(frozen=True)
class TopImage:
    index: int             # in the test set
    label: int
    value: float           # the channel's strongest value on this image
    row: int
    col: int
    seen: np.ndarray       # the whole image as the network saw it (size×size uint8)
    box: Box               # the receptive field of (row, col) on it (the part that exists)

    @property
    def crop(self) -> np.ndarray:
        """The receptive field around (row, col): the pixels the unit reads."""
        b = self.box
        return self.seen[b.top:b.bottom + 1, b.left:b.right + 1]


def framed(t: TopImage, side: int = 128) -> np.ndarray:
    """The image around a top unit's field, enlarged with sharp pixels to about `side`, the field's
    box drawn in red: the whole image for a small input, else a window of twice the field's size."""
    b, n = t.box, t.seen.shape[0]
    if n <= 64:
        return draw_box(t.seen, (b.top, b.left, b.bottom, b.right), side)
    half = max(b.height, b.width)  # the field's own size of context on each side
    top, left = max(0, b.top - half), max(0, b.left - half)
    bottom, right = min(n - 1, b.bottom + half), min(n - 1, b.right + half)
    window = t.seen[top:bottom + 1, left:right + 1]
    return draw_box(window, (b.top - top, b.left - left, b.bottom - top, b.right - left), side)


def _upto(cfg, layer: str) -> tuple[int, int]:
    """(multiply-accumulates, bytes of the largest output) of one image up to and including `layer`."""
    macs, largest = 0, 0
    for r in summarized(cfg).rows:
        macs += r.macs
        largest = max(largest, 4 * math.prod(r.output_shape))
        if r.name == layer:
            return max(macs, 1), largest
    raise ValueError(f"no layer named {layer!r}")


def pass_bytes(cfg, layer: str, images: int, batch: int) -> int:
    """Memory a pass holds at its peak: a batch's input and two layer outputs at once (output_at frees
    each earlier one), and every image's strongest value and position per channel (float32 + int64)."""
    _, largest = _upto(cfg, layer)
    channels = next(r.output_shape[-3] for r in summarized(cfg).rows if r.name == layer)
    pixels = cfg.in_channels * cfg.input_size ** 2 + 28 * 28
    return batch * (4 * pixels + 2 * largest) + images * channels * 12


def pass_size(model: nn.Module, n_test: int, layer: str, max_macs: float = MAX_MACS) -> tuple[int, float]:
    """(images a pass looks at, its multiply-accumulates): to warn before a long one."""
    per_image, _ = _upto(model.cfg, layer)
    n = min(n_test, int(max_macs // per_image))
    return n, n * per_image


def balanced_subset(labels: torch.Tensor, n: int) -> torch.Tensor:
    """n test indices, the first ones of each class in turn (all of them when n ≥ len)."""
    if n >= len(labels):
        return torch.arange(len(labels))
    rank = torch.zeros_like(labels)
    for c in labels.unique():
        m = labels == c
        rank[m] = torch.arange(int(m.sum()))
    order = torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)
    return order[:n].sort().values


@torch.no_grad()
def index_layer(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, layer: str, mean: tuple, std: tuple,
                progress: Callable[[float], None] | None = None, max_macs: float = MAX_MACS,
                only_cached: bool = False, on_wait: Callable[[int | None], None] | None = None) -> ChannelIndex | None:
    """One batched pass over the test images up to `layer` (cached per model, layer and test set);
    with only_cached, None instead of a pass. Its memory is reserved from the server's budget first
    (on_wait(ahead) while it waits its turn)."""
    key = (layer, _fingerprint(test_x), mean, std, max_macs)
    hit = _PASSES.get(model, key)
    if hit is not None or only_cached:
        return hit
    cfg = model.cfg
    per_image, largest = _upto(cfg, layer)
    idx = balanced_subset(test_y, int(max_macs // per_image))
    batch = int(max(1, min(512, BATCH_MACS // per_image, max(16, BATCH_BYTES // largest))))
    bests, wheres = [], []
    device = next(model.parameters()).device
    with server_budget(device).reserve(pass_bytes(cfg, layer, len(idx), min(batch, len(idx))), f"the top-9 pass over {layer}",
                                       "pick an earlier layer, or try again when others have finished", on_wait):
        for k in range(0, len(idx), batch):
            x = prepare_images(test_x[idx[k:k + batch]], cfg.in_channels, cfg.input_size, mean, std)
            y = output_at(model, x.contiguous(memory_format=torch.channels_last), layer)  # B×C×H×W
            # channels last, each image's H·W positions × C is a view: the strongest position per channel
            # (the first of equals, row * W + col) without copying the maps
            v, w = y.permute(0, 2, 3, 1).reshape(len(y), -1, y.shape[1]).max(1)
            bests.append(v)
            wheres.append(w)
            if progress:
                progress(min(1.0, (k + batch) / len(idx)))
    H, W = y.shape[-2:]
    out = ChannelIndex(layer, idx, torch.cat(bests), torch.cat(wheres), (H, W), len(test_x))
    _PASSES.put(model, key, out)
    return out


def top_images(model: nn.Module, index: ChannelIndex, test_x: torch.Tensor, test_y: torch.Tensor, channel: int,
               k: int = 9) -> list[TopImage]:
    """The k images whose strongest value in `channel` is highest, each with its strongest unit's
    receptive field."""
    cfg = model.cfg
    vals = index.best[:, channel]
    order = vals.argsort(descending=True, stable=True)[:k].tolist()
    out = []
    for j in order:
        i = int(index.images[j])
        r, q = divmod(int(index.where[j, channel]), index.side[1])
        box = unit_box(model, index.layer, r, q).clipped
        seen = prepare_images(test_x[i:i + 1], 1, cfg.input_size, (0.0,), (1.0,))[0, 0]   # 0..1, as the net sees it
        out.append(TopImage(i, int(test_y[i]), float(vals[j]), r, q, (seen.clamp(0, 1) * 255).round().byte().numpy(),
                            box))
    return out

