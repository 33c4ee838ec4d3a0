"""A unit's receptive field on the input: the exact box, and the effective field |∂unit/∂input|.

The box is the summary's rf/jump made exact: walking back from the unit through every conv and
pool, an output range [a, b] comes from the input range [a·s − p, b·s − p + k − 1] (kernel k,
stride s, padding p); an adaptive pool's window i covers [⌊i·n/o⌋, ⌈(i+1)·n/o⌉). Padding pushes
the box past the image's edge: `exact` keeps those rows and columns, `clipped` is what exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.inspect.walk import as_pair, output_at, summarized


@dataclass(frozen=True)
class Box:
    """Rows top..bottom and columns left..right of the input, inclusive."""
    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    @property
    def width(self) -> int:
        return self.right - self.left + 1


@dataclass(frozen=True)
class Field:
    exact: Box      # may reach past the image (into the zero padding)
    clipped: Box    # the input pixels that exist


def _back(m: nn.Module, a: int, b: int, axis: int, side_in: int, side_out: int) -> tuple[int, int]:
    """The input range [a', b'] that the output range [a, b] of layer m reads (one axis)."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return a * side_in // side_out, math.ceil((b + 1) * side_in / side_out) - 1
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = as_pair(m.kernel_size)[axis], as_pair(m.stride)[axis], as_pair(m.padding)[axis]
        d = as_pair(getattr(m, "dilation", 1))[axis]
        return a * s - p, b * s - p + d * (k - 1)
    return a, b


def unit_box(model: nn.Module, layer: str, row: int, col: int) -> Field:
    """The receptive field of unit (row, col) of `layer` (any channel: they all see the same box)."""
    cfg = model.cfg
    rows = summarized(cfg).rows
    names = [r.name for r in rows]
    if layer not in names:
        raise ValueError(f"no layer named {layer!r}")
    i = names.index(layer)
    if rows[i].rf is None:
        raise ValueError(f"{layer} sees the whole input (it comes after flatten)")
    H, W = rows[i].output_shape[-2:]
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"{layer} is {H}×{W}: unit ({row}, {col}) is outside it")
    mods = dict(leaf_layers(model))
    (t, b), (l, r) = (row, row), (col, col)
    for j in range(i, -1, -1):
        out_hw = rows[j].output_shape[-2:]
        in_hw = rows[j - 1].output_shape[-2:] if j else (cfg.input_size, cfg.input_size)
        t, b = _back(mods[names[j]], t, b, 0, in_hw[0], out_hw[0])
        l, r = _back(mods[names[j]], l, r, 1, in_hw[1], out_hw[1])
    n = cfg.input_size
    exact = Box(t, l, b, r)
    return Field(exact, Box(max(t, 0), max(l, 0), min(b, n - 1), min(r, n - 1)))


def effective_field(model: nn.Module, x: torch.Tensor, layer: str, channel: int, row: int, col: int) -> np.ndarray:
    """|∂unit/∂input| summed over the input's channels: H×W, in the input's units (not scaled)."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        y = output_at(model, xg, layer)
        g, = torch.autograd.grad(y[0, channel, row, col], xg)
    return g.abs().sum(1)[0].numpy()
