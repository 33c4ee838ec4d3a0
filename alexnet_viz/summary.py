"""Per-layer rows computed from the model itself: shapes on the meta device, params by numel.

Conventions:
- MACs (multiply-accumulates) for one image: Conv2d = C_out*H_out*W_out * (C_in/groups)*k*k,
  Linear = in*out. Activations, pooling, normalization, dropout count 0 (they are elementwise or
  comparisons, a rounding error next to the convs and Linears).
- Activation memory: the layer's output for one image in float32 (4 bytes per value).
- Receptive field: side of the input window one output pixel sees, and its jump (the input
  distance between neighbouring output pixels). Layers after flatten see the whole input.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .config import ArchConfig
from .model import build_model


SHAPE_KEEPING = (nn.BatchNorm2d, nn.LocalResponseNorm, nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.Dropout)


@dataclass(frozen=True)
class LayerRow:
    name: str                      # conv1, relu1, pool1, fc1 ...
    type: str                      # the nn.Module class name
    output_shape: tuple[int, ...]  # for one image, no batch dimension
    params: int                    # learnable parameters
    macs: int                      # multiply-accumulates for one image
    memory: int                    # bytes of the output for one image (float32)
    rf: int | None                 # receptive field side in input pixels; None = whole input
    jump: int | None               # input pixels between neighbouring outputs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


@dataclass(frozen=True)
class Summary:
    cfg: ArchConfig
    rows: tuple[LayerRow, ...]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_memory(self) -> int:
        return sum(r.memory for r in self.rows)

    def to_dict(self) -> dict:
        return {"layers": [r.to_dict() for r in self.rows],
                "total_params": self.total_params, "total_macs": self.total_macs}


def leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in forward order, with their short names (conv1, avgpool, fc1 ...)."""
    out = [(n, m) for n, m in model.features.named_children()]
    if not isinstance(model.avgpool, nn.Identity):
        out.append(("avgpool", model.avgpool))
    out.append(("flatten", model.flatten))
    out += list(model.classifier.named_children())
    return out


def _window(m: nn.Module, side_in: int, side_out: int) -> tuple[int, int]:
    """(kernel, stride) of a spatial layer; an adaptive pool's equivalent window."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        s = max(side_in // side_out, 1)
        return side_in - (side_out - 1) * s, s
    k, s = m.kernel_size, m.stride
    return (k[0] if isinstance(k, tuple) else k), (s[0] if isinstance(s, tuple) else s)


def summarize(cfg: ArchConfig) -> Summary:
    """Rows for every layer; costs no memory (meta device). Raises ConfigError on a bad config."""
    model = build_model(cfg, device="meta").eval()  # BatchNorm in train mode refuses 1×1 maps of 1 image
    x = torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    rows, rf, jump = [], 1, 1
    with torch.no_grad():
        for name, m in leaf_layers(model):
            side_in = x.shape[-1] if x.dim() == 4 else None
            # elementwise layers keep the shape; on meta, BatchNorm alone costs ~2 ms a call (prims)
            y = x if isinstance(m, SHAPE_KEEPING) else m(x)
            macs = 0
            if isinstance(m, nn.Conv2d):
                macs = y[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.Linear):
                macs = m.in_features * m.out_features
            if y.dim() == 4 and isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                k, s = _window(m, side_in, y.shape[-1])
                rf, jump = rf + (k - 1) * jump, jump * s
            whole = y.dim() != 4
            rows.append(LayerRow(name, type(m).__name__, tuple(y.shape[1:]),
                                 sum(p.numel() for p in m.parameters()), macs, y[0].numel() * 4,
                                 None if whole else rf, None if whole else jump))
            x = y
    return Summary(cfg, tuple(rows))


def human(n: float, unit: str = "") -> str:
    """12_345_678 -> '12.3 M'."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f} {p}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def shape_str(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def table(summary: Summary) -> list[dict]:
    """Rows formatted for display (the UI and the CLI share it)."""
    out = []
    for r in summary.rows:
        out.append({"layer": r.name, "type": r.type, "output (C×H×W)": shape_str(r.output_shape),
                    "params": r.params, "MACs": r.macs, "memory": human(r.memory, "B"),
                    "receptive field": "whole input" if r.rf is None else f"{r.rf}×{r.rf} (jump {r.jump})"})
    return out
