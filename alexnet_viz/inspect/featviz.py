"""An input optimized to excite one channel (feature visualization, as in Olah et al. 2017).

Gradient ascent on the input's pixels for the channel's mean activation, from faint seeded noise,
with the two regularizers that keep the picture readable: a random jitter (shift) at every step,
so the result does not rely on one exact pixel alignment, and a small Gaussian blur every few
steps, which damps the high frequencies the gradient alone would fill the image with. A fixed
number of steps, seeded: the same channel gives the same picture. Cached per model object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from alexnet_viz.inspect.modelcache import PerObjectCache
from alexnet_viz.inspect.walk import output_at

_RESULTS = PerObjectCache()  # per model


@dataclass(frozen=True)
class Visualization:
    image: np.ndarray     # H×W or H×W×3 uint8, the optimized input in pixel space
    start: float          # the channel's mean activation on the starting noise
    reached: float        # ... on the optimized input
    steps: int


def visualize_channel(model: nn.Module, layer: str, channel: int, mean: tuple, std: tuple,
                      steps: int = 64, seed: int = 0, lr: float = 0.05, jitter: int | None = None,
                      blur_every: int = 4) -> Visualization:
    """The input (in the model's normalized space, kept to valid pixels) that maximizes the channel."""
    key = (layer, channel, mean, std, steps, seed, lr, jitter, blur_every)
    hit = _RESULTS.get(model, key)
    if hit is not None:
        return hit
    cfg = model.cfg
    C, n = cfg.in_channels, cfg.input_size
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    lo, hi = (0 - m) / s, (1 - m) / s                       # valid pixels, normalized
    gen = torch.Generator().manual_seed(seed)
    x = ((0.5 + 0.02 * torch.randn(1, C, n, n, generator=gen)) - m) / s
    j = jitter if jitter is not None else max(1, n // 14)
    with torch.enable_grad():
        start = None
        for k in range(steps):
            dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=gen))
            xs = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
            act = output_at(model, xs, layer)[0, channel].mean()
            if start is None:
                start = float(act.detach())
            g, = torch.autograd.grad(act, xs)
            g = torch.roll(g, (-dy, -dx), (2, 3))
            x = x + lr * g / g.std().clamp_min(1e-12)
            if (k + 1) % blur_every == 0:
                x = gaussian_blur(x, kernel_size=3, sigma=0.5)
            x = torch.maximum(torch.minimum(x, hi), lo).detach()
        with torch.no_grad():
            reached = float(output_at(model, x, layer)[0, channel].mean())
    a = ((x * s + m)[0].clamp(0, 1) * 255).round().byte()
    img = a[0].numpy() if C == 1 else a.permute(1, 2, 0).numpy()
    out = Visualization(img, start, reached, steps)
    _RESULTS.put(model, key, out)
    return out
