"""Every layer's output without hooks, and a private copy of a shared model for each analysis.

The app shares one model object between browser sessions. Hooks or a mode switch on it would be
seen by the other sessions, so nothing here touches it: our networks are Sequentials, walked layer
by layer; and what must register hooks (captum) gets its own copy of the module tree, which shares
the parameters (no memory) but has its own hooks and its own train/eval flag.
"""
from __future__ import annotations

import copy
import functools
from collections import OrderedDict

import torch
from torch import nn

from alexnet_viz.architect.summary import Summary, leaf_layers, summarize
from alexnet_viz.config import ArchConfig


@functools.lru_cache(maxsize=32)
def summarized(cfg: ArchConfig) -> Summary:
    """summarize(cfg), computed once per network (30 ms for d2l, asked for at every click)."""
    return summarize(cfg)


def as_pair(v: int | tuple) -> tuple[int, int]:
    """A layer's kernel_size, stride, padding or output_size as (height, width): 3 -> (3, 3)."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def private_copy(model: nn.Module) -> nn.Module:
    """A new module tree over the same parameters and buffers: own hooks, own mode, in eval mode."""
    def dup(m: nn.Module) -> nn.Module:
        c = copy.copy(m)  # a new __dict__ whose values are still the shared containers: replace those
        d = c.__dict__
        for k, v in list(d.items()):
            if "hooks" in k and isinstance(v, dict):
                d[k] = type(v)()
        d["_parameters"] = dict(m._parameters)
        d["_buffers"] = dict(m._buffers)
        d["_modules"] = {n: dup(s) for n, s in m._modules.items() if s is not None}
        d["training"] = False
        return c
    return dup(model)


def layer_outputs(model: nn.Module, x: torch.Tensor, upto: str | None = None) -> "OrderedDict[str, torch.Tensor]":
    """x (B×C×H×W) through the layers in order, keeping each output, stopping after `upto`.

    Runs on a private eval-mode copy; gradients flow when the caller enables them."""
    model = private_copy(model)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    y = x
    for name, m in leaf_layers(model):
        y = m(y)
        out[name] = y
        if name == upto:
            break
    return out


def output_at(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """x through the layers up to and including `layer`, keeping only that output (each earlier one
    is freed as soon as the next exists: a big batch's memory stays at two layers)."""
    y = x
    for name, m in leaf_layers(private_copy(model)):
        y = m(y)
        if name == layer:
            return y
    raise ValueError(f"no layer named {layer!r}")
