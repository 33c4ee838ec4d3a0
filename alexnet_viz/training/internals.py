"""Training internals, as TensorBoard shows them: per weighted layer the gradient norm, the
update-to-weight ratio ‖Δw‖/‖w‖ of one step, weight and gradient histograms; per ReLU the
fraction of dead units.

A `Probe` belongs to the engine's own model (no other session sees it), so it may hook its
ReLUs; hooks are attached only for the sampled steps. Its cost is kept within BUDGET of the
step time: after each sampled step it measures what it cost and waits long enough before the
next one (`bench internals` checks the figure).

Definitions
- dead unit: one output element of a ReLU (a channel at one position, or one neuron of a fully
  connected layer) that is exactly 0 for every image of the batch.
- weight histogram: BINS fixed bins per layer over ±2·max|w| of the layer at its first sampled
  step; later values beyond land in the edge bins.
- gradient histogram: BINS bins of log10|g| over GRAD_LOG10 (the same for every layer, so layers
  can be compared: a vanishing gradient sits low); exact zeros land in the lowest bin.
- Layers over MAX_SAMPLED elements are histogrammed, and their update ratio measured, on an evenly
  strided subset of that many (so d2l's 26 M-weight fc1 is not copied at every sample); gradient and
  weight norms are always over every element.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

BUDGET = 0.03                 # aim: 3% of the step time, so that the overhead measured stays within 5%
BINS = 32
GRAD_LOG10 = (-10.0, 0.0)
MAX_SAMPLED = 1 << 14


@dataclass(frozen=True)
class Internals:
    step: int                            # batches done since the run began
    epoch: float
    layers: tuple[str, ...]              # weighted layers (conv, linear), in forward order
    grad_norm: tuple[float, ...]         # ‖∂loss/∂w‖ of each layer's weight
    weight_norm: tuple[float, ...]       # ‖w‖ before the step
    update_ratio: tuple[float, ...]      # ‖w_after − w_before‖ / ‖w_before‖
    w_range: tuple[tuple[float, float], ...]   # each layer's weight-histogram range
    w_hist: tuple[tuple[int, ...], ...]        # BINS counts per layer
    g_hist: tuple[tuple[int, ...], ...]        # BINS counts of log10|g| over g_range, per layer
    g_range: tuple[float, float]               # GRAD_LOG10: exact zeros land in the lowest bin
    relus: tuple[str, ...]               # ReLU layers (none in a sigmoid net)
    dead: tuple[float, ...]              # fraction of dead units per ReLU
    every: int                           # steps until the next sample
    cost_s: float                        # what this sample cost (its hooks' share of the step included)
    kind: str = "internals"

    def to_dict(self) -> dict:
        return asdict(self)


def _leaf_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _sample(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().reshape(-1)
    return flat[::-(-flat.numel() // MAX_SAMPLED)].float()


def _hist(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """BINS counts of x over [lo, hi]; values beyond go to the edge bins (cheaper than torch.histc)."""
    i = ((x - lo) * (BINS / (hi - lo))).long().clamp_(0, BINS - 1)
    return torch.bincount(i, minlength=BINS)


class Probe:
    """Samples a model's internals every few steps: call before(step) and after(step, epoch) around
    each training step (step = this batch's number, from 1); after() returns a record or None."""

    def __init__(self, model: nn.Module, every: int | None = None):
        mods = list(model.named_modules())
        self.weighted = [(_leaf_name(n), m) for n, m in mods if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.relus = [(_leaf_name(n), m) for n, m in mods if isinstance(m, nn.ReLU)]
        self.fixed = every  # a fixed interval of steps; None: the one the measured cost allows
        self.next = 1
        self.ranges: list[tuple[float, float]] | None = None
        self._before: list[torch.Tensor] | None = None
        self._hooks: list = []
        self._dead: dict[str, torch.Tensor] = {}
        self._cost = 0.0
        self._t0: float | None = None
        self._plain_s, self._plain_n = 0.0, 0

    def before(self, step: int) -> None:
        self._t0 = t = time.perf_counter()
        if step < self.next:
            return
        self._before = [_sample(m.weight).clone() for _, m in self.weighted]
        self._norms = torch.stack([m.weight.detach().float().norm() for _, m in self.weighted])
        self._hooks = [m.register_forward_hook(partial(self._hook, n)) for n, m in self.relus]
        self._cost = time.perf_counter() - t

    def _hook(self, name, _m, _i, y) -> None:
        self._dead[name] = (y.detach() == 0).all(0).float().mean()

    def after(self, step: int, epoch: float, offset: int = 0) -> Internals | None:
        if self._before is None:  # a plain step: timed from before() to here
            if self._t0 is not None:
                self._plain_s, self._plain_n = self._plain_s + time.perf_counter() - self._t0, self._plain_n + 1
            return None
        t = time.perf_counter()
        hooked = t - self._t0 - self._cost  # the sampled step itself: its hooks made it slower
        for h in self._hooks:
            h.remove()
        rec = self._measure(step + offset, epoch)
        extra = max(hooked - self._plain_s / self._plain_n, 0.0) if self._plain_n else 0.0
        cost = self._cost + time.perf_counter() - t + extra
        every = self.fixed or self._interval(cost)
        self.next, self._before, self._hooks, self._dead = step + every, None, [], {}
        return Internals(**rec, every=every, cost_s=cost)

    def _interval(self, cost: float) -> int:
        """Steps between samples so that their cost stays within BUDGET of the plain steps' time;
        5 until a few plain steps have been timed."""
        if self._plain_n < 3:
            return 5
        return max(1, math.ceil(cost / (BUDGET * self._plain_s / self._plain_n)))

    @torch.no_grad()
    def _measure(self, step: int, epoch: float) -> dict:
        ws = [m.weight.detach() for _, m in self.weighted]
        gs = [m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight) for _, m in self.weighted]
        if self.ranges is None:
            self.ranges = [(-2 * float(w.abs().max()) or -1.0, 2 * float(w.abs().max()) or 1.0) for w in ws]
        now = [_sample(w) for w in ws]
        parts = [torch.stack([g.float().norm() for g in gs]), self._norms,
                 torch.stack([(w - b).norm() / b.norm().clamp_min(1e-30) for w, b in zip(now, self._before)])]
        lo, hi = GRAD_LOG10
        w_hist = [_hist(w, a, b) for w, (a, b) in zip(now, self.ranges)]
        g_hist = [_hist(_sample(g).abs().clamp_min(1e-30).log10(), lo, hi) for g in gs]
        dead = [self._dead[n] for n, _ in self.relus if n in self._dead]
        flat = torch.cat([p.float() for p in parts] + [torch.stack(dead) if dead else torch.zeros(0, device=self._norms.device)]
                         + [h.float() for h in w_hist + g_hist]).tolist()  # the one device sync
        n, r, k = len(ws), len(dead), BINS
        hists = [tuple(int(c) for c in flat[3 * n + r + i * k:3 * n + r + (i + 1) * k]) for i in range(2 * n)]
        return dict(step=step, epoch=epoch, layers=tuple(n_ for n_, _ in self.weighted),
                    grad_norm=tuple(flat[:n]), weight_norm=tuple(flat[n:2 * n]),
                    update_ratio=tuple(flat[2 * n:3 * n]), w_range=tuple(self.ranges),
                    w_hist=tuple(hists[:n]), g_hist=tuple(hists[n:]), g_range=GRAD_LOG10,
                    relus=tuple(n_ for n_, _ in self.relus if n_ in self._dead), dead=tuple(flat[3 * n:3 * n + r]))
