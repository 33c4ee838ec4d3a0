"""How one unit's value was computed, with the real numbers, as CNN Explainer shows it.

For a conv unit: the input patch under the kernel (for conv1 the normalized pixels; deeper, the
few input channels that contribute most, the rest summed into one number), the kernel, their
element-wise products and sums, + bias = the value before the activation; then each layer up to
the one clicked (BatchNorm, the activation, LRN). For a pooling unit: its window, which input won
(max) or the mean (average), and the conv arithmetic of the winning input. Sums are done in
float64 from the float32 tensors, so they agree with the network's own outputs to ~1e-5.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.inspect.walk import as_pair

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


@dataclass(frozen=True)
class Term:
    """One input channel's share of a conv unit: patch ⊙ kernel, summed."""
    channel: int
    patch: np.ndarray      # k×k input values under the kernel (zeros where it hangs over the padding)
    kernel: np.ndarray     # k×k weights
    products: np.ndarray   # patch * kernel
    total: float           # products.sum()


@dataclass(frozen=True)
class ConvMath:
    layer: str
    channel: int
    row: int
    col: int
    origin: tuple[int, int]   # the patch's top-left in the conv's input (negative = padding)
    input_name: str           # "input" or the layer the conv reads
    terms: tuple[Term, ...]   # the strongest channels, |total| largest first
    others: int               # how many more input channels
    rest: float               # their products, summed
    bias: float
    pre: float                # Σ terms + rest + bias: the conv's output, before the activation
    actual: float             # the conv's real output for this unit


@dataclass(frozen=True)
class LayerMath:
    """One layer after the conv, applied to the previous value."""
    layer: str
    formula: str    # with the numbers filled in
    value: float    # what the formula gives
    actual: float   # the layer's real output


@dataclass(frozen=True)
class PoolMath:
    layer: str
    kind: str                 # "max" or "average"
    origin: tuple[int, int]   # the window's top-left in the pool's input
    window: np.ndarray        # the values it pools (NaN where it hangs over the edge)
    winner: tuple[int, int]   # the input unit that won (max), or the strongest one (average)
    value: float
    actual: float


@dataclass(frozen=True)
class UnitMath:
    layer: str
    channel: int
    row: int
    col: int
    value: float              # the unit's real value
    conv: ConvMath | None     # None when no conv precedes the layer in its block
    steps: tuple[LayerMath, ...]   # conv output -> ... -> the layer (or the pool's input)
    pool: PoolMath | None


def _conv_math(conv: nn.Conv2d, name: str, inp: torch.Tensor, input_name: str, actual: float,
               c: int, r: int, q: int, show: int) -> ConvMath:
    (kh, kw), (sh, sw), (ph, pw) = as_pair(conv.kernel_size), as_pair(conv.stride), as_pair(conv.padding)
    per_group = conv.in_channels // conv.groups
    g = c // (conv.out_channels // conv.groups)
    chans = range(g * per_group, (g + 1) * per_group)
    x = F.pad(inp[list(chans)].double(), (pw, pw, ph, ph))
    top, left = r * sh, q * sw                      # in the padded map
    patch = x[:, top:top + kh, left:left + kw].numpy()
    w = conv.weight[c].detach().double().numpy()    # per_group×kh×kw
    prod = patch * w
    totals = prod.sum((1, 2))
    order = np.argsort(-np.abs(totals), kind="stable")
    shown = order[:show] if len(order) > show + 1 else order
    terms = tuple(Term(chans[i], patch[i], w[i], prod[i], float(totals[i])) for i in shown)
    rest_idx = np.setdiff1d(order, shown)
    rest = float(totals[rest_idx].sum()) if len(rest_idx) else 0.0
    bias = float(conv.bias[c]) if conv.bias is not None else 0.0
    pre = sum(t.total for t in terms) + rest + bias
    return ConvMath(name, c, r, q, (top - ph, left - pw), input_name, terms, len(rest_idx), rest, bias,
                    pre, actual)


def _step(m: nn.Module, name: str, prev_map: torch.Tensor, v: float, c: int, r: int, q: int,
          actual: float) -> LayerMath:
    """The layer m applied to v (= prev_map[c, r, q]), as a formula with its numbers."""
    if isinstance(m, nn.ReLU):
        return LayerMath(name, f"ReLU: max(0, {v:.4f})", max(0.0, v), actual)
    if isinstance(m, nn.Sigmoid):
        return LayerMath(name, f"sigmoid: 1 / (1 + e^−({v:.4f}))", 1 / (1 + math.exp(-v)), actual)
    if isinstance(m, nn.Tanh):
        return LayerMath(name, f"tanh({v:.4f})", math.tanh(v), actual)
    if isinstance(m, nn.GELU):
        return LayerMath(name, f"GELU: {v:.4f} · Φ({v:.4f})", v * 0.5 * (1 + math.erf(v / math.sqrt(2))), actual)
    if isinstance(m, nn.BatchNorm2d):
        mu, var = float(m.running_mean[c]), float(m.running_var[c])
        gam = float(m.weight[c]) if m.weight is not None else 1.0
        beta = float(m.bias[c]) if m.bias is not None else 0.0
        y = (v - mu) / math.sqrt(var + m.eps) * gam + beta
        return LayerMath(name, f"BatchNorm: ({v:.4f} − {mu:.4f}) / √({var:.4f} + {m.eps:g}) × {gam:.4f} "
                               f"+ {beta:.4f}", y, actual)
    if isinstance(m, nn.LocalResponseNorm):
        C = prev_map.shape[0]
        lo, hi = max(0, c - m.size // 2), min(C, c + (m.size - 1) // 2 + 1)
        s = float((prev_map[lo:hi, r, q].double() ** 2).sum())
        y = v / (m.k + m.alpha / m.size * s) ** m.beta
        return LayerMath(name, f"LRN: {v:.4f} / ({m.k:g} + {m.alpha:g}/{m.size} × {s:.4f})^{m.beta:g} "
                         f"(Σ of squares over channels {lo}–{hi - 1})", y, actual)
    return LayerMath(name, f"{type(m).__name__}: unchanged", v, actual)  # Dropout in eval, Identity


def _window(m: nn.Module, prev: torch.Tensor, r: int, q: int) -> tuple[tuple[int, int], np.ndarray]:
    """A pool's window for output (r, q): its top-left in the input and its values (NaN off the edge)."""
    H, W = prev.shape[-2:]
    if isinstance(m, nn.AdaptiveAvgPool2d):
        oh, ow = as_pair(m.output_size)
        t, b = r * H // oh, math.ceil((r + 1) * H / oh)
        lft, rt = q * W // ow, math.ceil((q + 1) * W / ow)
    else:
        (kh, kw), (sh, sw), (ph, pw) = as_pair(m.kernel_size), as_pair(m.stride), as_pair(m.padding)
        t, lft = r * sh - ph, q * sw - pw
        b, rt = t + kh, lft + kw
    win = np.full((b - t, rt - lft), np.nan)
    ct, cb, cl, cr = max(t, 0), min(b, H), max(lft, 0), min(rt, W)
    win[ct - t:cb - t, cl - lft:cr - lft] = prev[ct:cb, cl:cr].double().numpy()
    return (t, lft), win


@torch.no_grad()
def explain_unit(model: nn.Module, x: torch.Tensor, maps: "OrderedDict[str, torch.Tensor]", layer: str,
                 channel: int, row: int, col: int, show: int = 3) -> UnitMath:
    """The arithmetic behind maps[layer][channel, row, col]; maps are one image's outputs (C×H×W),
    x the 1×C×H×W input. Deeper convs show the `show` input channels that contribute most."""
    layers = leaf_layers(model)
    names = [n for n, _ in layers]
    mods = dict(layers)
    i = names.index(layer)
    if maps[layer].dim() != 3:
        raise ValueError(f"{layer} is not a feature map")
    prev_of = {n: (maps[names[k - 1]] if k else x[0]) for k, n in enumerate(names)}
    value = float(maps[layer][channel, row, col])
    pool, end, (r, q) = None, i, (row, col)
    if isinstance(mods[layer], POOLS):
        prev = prev_of[layer][channel]
        origin, win = _window(mods[layer], prev, row, col)
        a, b = np.unravel_index(np.nanargmax(win), win.shape)
        r, q = origin[0] + int(a), origin[1] + int(b)
        is_max = isinstance(mods[layer], nn.MaxPool2d)
        if is_max:
            v = float(np.nanmax(win))
        elif isinstance(mods[layer], nn.AvgPool2d) and mods[layer].count_include_pad:
            v = float(np.nansum(win) / win.size)   # the padding's zeros count in the mean
        else:
            v = float(np.nanmean(win))
        pool = PoolMath(layer, "max" if is_max else "average", origin, win, (r, q), v, value)
        end = i - 1
    start = end
    while start >= 0 and not isinstance(mods[names[start]], nn.Conv2d):
        if isinstance(mods[names[start]], POOLS):
            break
        start -= 1
    conv, steps = None, []
    if start >= 0 and isinstance(mods[names[start]], nn.Conv2d):
        cname = names[start]
        conv = _conv_math(mods[cname], cname, prev_of[cname], names[start - 1] if start else "input",
                          float(maps[cname][channel, r, q]), channel, r, q, show)
        v = conv.pre
        for k in range(start + 1, end + 1):
            n = names[k]
            s = _step(mods[n], n, prev_of[n], v, channel, r, q, float(maps[n][channel, r, q]))
            steps.append(s)
            v = s.value
    return UnitMath(layer, channel, row, col, value, conv, tuple(steps), pool)


def sum_rows(u: UnitMath) -> list[dict[str, str]]:
    """The unit's arithmetic as a table that adds up, top to bottom: each input channel's Σ patch ×
    kernel, the rest together, the bias, = the conv's output, then each later layer's formula."""
    cm = u.conv
    if cm is None:
        return []
    rows = [{"term": f"input channel {t.channel}" if cm.input_name != "input" or len(cm.terms) > 1 else "pixels",
             "what": f"Σ patch × kernel ({t.patch.shape[0]}×{t.patch.shape[1]})", "value": f"{t.total:+.4f}"}
            for t in cm.terms]
    if cm.others:
        rows.append({"term": f"the other {cm.others} input channels", "what": "Σ patch × kernel, together",
                     "value": f"{cm.rest:+.4f}"})
    rows.append({"term": "bias", "what": f"{cm.layer}.bias[{cm.channel}]", "value": f"{cm.bias:+.4f}"})
    rows.append({"term": f"= {cm.layer}", "what": "sum (before the activation)", "value": f"{cm.pre:.4f}"})
    rows += [{"term": f"→ {s.layer}", "what": s.formula, "value": f"{s.value:.4f}"} for s in u.steps]
    if u.pool:
        rows.append({"term": f"→ {u.pool.layer}", "what": f"{u.pool.kind} of the window", "value": f"{u.pool.value:.4f}"})
    return rows
