"""An input optimized to excite one unit (feature visualization, as in Olah et al. 2017).

Gradient ascent on the input's pixels for one unit's value, from faint seeded noise. One unit, not
the channel's mean over its whole map: for an early layer the mean is satisfied by a flat bright
image (every position wants the same thing), while one unit reads only its receptive field, and
the picture inside that field is the pattern it looks for. Two regularizers keep it readable: a
random jitter (shift) of a few pixels at every step, scaled to the field, so the result does not
rely on one exact alignment; and a small Gaussian blur every few steps, which damps the high
frequencies the gradient alone fills the image with. Each step moves the pixels by `lr` (in the
normalized space) at their RMS gradient inside the field. A ReLU that is off everywhere passes no
gradient; as in Lucid, such a ReLU lets through the gradient that would switch it on.

A fixed number of steps, seeded: the same unit gives the same picture. Cached per model object.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.cost.budget import server_budget
from alexnet_viz.cost.estimate import estimate_analysis
from alexnet_viz.inspect.modelcache import PerObjectCache
from alexnet_viz.inspect.receptive import Box, unit_box
from alexnet_viz.inspect.walk import private_copy, summarized

_RESULTS = PerObjectCache()  # per model
NOISE = 0.02  # the starting noise's spread, in pixels of 0..1, around mid grey


@dataclass(frozen=True)
class Visualization:
    image: np.ndarray     # the whole optimized input, H×W or H×W×3 uint8, in pixel space
    field: Box            # the unit's receptive field on the input (the part that exists)
    row: int              # the unit optimized
    col: int
    start: float          # the unit's value on the starting noise
    reached: float        # ... on the optimized input
    start_spread: float   # std of the starting noise's pixels inside the field (0..255)
    spread: float         # ... of the result's
    steps: int

    @property
    def crop(self) -> np.ndarray:
        """The result inside the receptive field: the only pixels the unit reads."""
        f = self.field
        return self.image[f.top:f.bottom + 1, f.left:f.right + 1]


@dataclass(frozen=True)
class Kernel:
    """The weights that make a channel: of the conv at or before its layer."""
    conv: str             # that conv's name
    weights: np.ndarray   # k×k (or k×k×3 for an RGB first conv), scaled to 0..1
    input_channel: int | None  # which input map this slice reads (None: the image itself)
    inputs: int           # how many input maps the kernel reads


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward, when nothing gets through (the unit is off everywhere), passes the
    gradient that would raise its input (Lucid's redirected ReLU)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        through = g * (x > 0)
        if through.abs().sum() > 0:
            return through
        return g * (g > 0)


def _unit_value(net: nn.Module, x: torch.Tensor, layer: str, channel: int, row: int, col: int) -> torch.Tensor:
    for name, m in leaf_layers(net):
        x = _RedirectedReLU.apply(x) if isinstance(m, nn.ReLU) else m(x)
        if name == layer:
            return x[0, channel, row, col]
    raise ValueError(f"no layer named {layer!r}")


def map_side(cfg, layer: str) -> tuple[int, int]:
    """(H, W) of a layer's maps."""
    for r in summarized(cfg).rows:
        if r.name == layer:
            return tuple(r.output_shape[-2:])
    raise ValueError(f"no layer named {layer!r}")


def visualize_unit(model: nn.Module, layer: str, channel: int, mean: tuple, std: tuple,
                   row: int | None = None, col: int | None = None, steps: int = 64, seed: int = 0,
                   lr: float = 0.05, jitter: int | None = None, blur_every: int = 4,
                   on_wait: Callable[[int | None], None] | None = None) -> Visualization:
    """The input (kept to valid pixels) that maximizes unit (row, col) of `channel` at `layer`; the
    map's centre unless given. Its memory (one image's forward and backward) is reserved from the
    server's budget first (on_wait(ahead) while it waits its turn)."""
    cfg = model.cfg
    H, W = map_side(cfg, layer)
    row, col = (H // 2 if row is None else row), (W // 2 if col is None else col)
    key = (layer, channel, row, col, mean, std, steps, seed, lr, jitter, blur_every)
    hit = _RESULTS.get(model, key)
    if hit is not None:
        return hit
    field = unit_box(model, layer, row, col).clipped
    C, n = cfg.in_channels, cfg.input_size
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    lo, hi = (0 - m) / s, (1 - m) / s                       # valid pixels, normalized
    gen = torch.Generator().manual_seed(seed)
    x = ((0.5 + NOISE * torch.randn(1, C, n, n, generator=gen)) - m) / s
    first = _pixels(x, m, s)
    j = jitter if jitter is not None else max(field.height, field.width) // 16
    inside = (slice(None), slice(None), slice(field.top, field.bottom + 1), slice(field.left, field.right + 1))
    net = private_copy(model)
    start = None
    est = estimate_analysis(cfg)  # one image forward and backward, as Grad-CAM's
    need = est.breakdown["Grad-CAM's forward and backward"]
    device = next(model.parameters()).device
    with server_budget(device).reserve(need, "this feature visualization", est.advice, on_wait), torch.enable_grad():
        for k in range(steps):
            dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=gen)) if j else (0, 0)
            xs = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
            act = _unit_value(net, xs, layer, channel, row, col)
            if start is None:
                start = float(act.detach())
            g, = torch.autograd.grad(act, xs)
            g = torch.roll(g, (-dy, -dx), (2, 3))
            x = x + lr * g / g[inside].pow(2).mean().sqrt().clamp_min(1e-12)
            if (k + 1) % blur_every == 0:
                x = gaussian_blur(x, kernel_size=3, sigma=0.5)
            x = torch.maximum(torch.minimum(x, hi), lo).detach()
    with torch.no_grad():
        reached = float(_unit_value(net, x, layer, channel, row, col))
    img = _pixels(x, m, s)
    crop = (slice(field.top, field.bottom + 1), slice(field.left, field.right + 1))
    out = Visualization(img, field, row, col, start, reached, float(first[crop].std()), float(img[crop].std()), steps)
    _RESULTS.put(model, key, out)
    return out


def _pixels(x: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> np.ndarray:
    a = ((x * s + m)[0].clamp(0, 1) * 255).round().byte()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def kernel_of(model: nn.Module, layer: str, channel: int) -> Kernel:
    """The kernel that makes `channel` at `layer` (the conv at or before it: BatchNorm, activations,
    LRN and pooling keep channels apart); for a conv reading maps, its slice of the strongest input map."""
    conv = None
    for name, mod in leaf_layers(model):
        if isinstance(mod, nn.Conv2d):
            conv = (name, mod)
        if name == layer:
            break
    if conv is None:
        raise ValueError(f"no conv at or before {layer!r}")
    name, mod = conv
    w = mod.weight.detach().float().cpu()[channel]          # C_in/groups × k × k
    first = name == next(n for n, q in leaf_layers(model) if isinstance(q, nn.Conv2d))
    if first and w.shape[0] in (1, 3):
        a, which = (w[0] if w.shape[0] == 1 else w.permute(1, 2, 0)), None
    else:
        j = int(w.flatten(1).norm(dim=1).argmax())
        group = channel // (mod.out_channels // mod.groups)
        a, which = w[j], group * w.shape[0] + j
    a = a.numpy()
    lo, hi = float(a.min()), float(a.max())
    return Kernel(name, (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a), which, mod.in_channels)
