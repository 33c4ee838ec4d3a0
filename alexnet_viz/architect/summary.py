"""Per-layer rows computed from the model itself: shapes on the meta device, params by numel.

Conventions:
- MACs (multiply-accumulates) for one image: Conv2d = C_out*H_out*W_out * (C_in/groups)*k*k,
  Linear = in*out. Activations, pooling, normalization, dropout count 0 (they are elementwise or
  comparisons, a rounding error next to the convs and Linears).
- Activation memory: the layer's output for one image in float32 (4 bytes per value).
- Receptive field: side of the input window one output pixel sees, and its jump (the input
  distance between neighbouring output pixels). Layers after flatten see the whole input. An
  adaptive pool follows PyTorch's window rule (window i spans floor(i*in/out) .. ceil((i+1)*in/out)),
  so its windows can differ in size: `rf` is then the largest and `rf_min` the smallest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from alexnet_viz.config import ArchConfig
from alexnet_viz.model import LRN, build_model
from alexnet_viz.units import approx, human


# The rows of the table's "only layers with weights or pooling" view: where the shapes and weights change.
STRUCTURAL = ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten")
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
    rf_min: int | None = None      # smallest receptive field when windows differ in size, else None

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

    def share(self, layer_type: str, field: str) -> float:
        """The fraction of the network's params / macs / memory in layers of one type ("Linear", "Conv2d")."""
        total = sum(getattr(r, field) for r in self.rows)
        return sum(getattr(r, field) for r in self.rows if r.type == layer_type) / total if total else 0.0

    def largest(self, field: str) -> LayerRow:
        """The layer with the most params / macs / memory (the first of equals, in forward order)."""
        return max(self.rows, key=lambda r: getattr(r, field))

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


def adaptive_windows(side_in: int, side_out: int) -> list[tuple[int, int]]:
    """PyTorch's AdaptiveAvgPool windows along one side: [floor(i*in/out), ceil((i+1)*in/out))."""
    return [((i * side_in) // side_out, -((-(i + 1) * side_in) // side_out)) for i in range(side_out)]


def _receptive(m: nn.Module, side_in: int, side_out: int, rf: int, jump: int) -> tuple[int, int, int | None]:
    """(rf, jump, rf_min) after a spatial layer, from the (rf, jump) before it."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        wins = adaptive_windows(side_in, side_out)
        sizes = {rf + (e - b - 1) * jump for b, e in wins}
        steps = [b2 - b1 for (b1, _), (b2, _) in zip(wins, wins[1:])]
        return max(sizes), jump * max(steps + [1]), (min(sizes) if len(sizes) > 1 else None)
    k, s = m.kernel_size, m.stride
    k, s = (k[0] if isinstance(k, tuple) else k), (s[0] if isinstance(s, tuple) else s)
    return rf + (k - 1) * jump, jump * s, None


def summarize(cfg: ArchConfig) -> Summary:
    """Rows for every layer; costs no memory (meta device). Raises ConfigError on a bad config."""
    model = build_model(cfg, device="meta").eval()  # BatchNorm in train mode refuses 1×1 maps of 1 image
    x = torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    rows, rf, jump, rf_min = [], 1, 1, None
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
                # after a varying adaptive pool only flatten follows, so later layers need no rf_min
                rf, jump, rf_min = _receptive(m, side_in, y.shape[-1], rf, jump)
            whole = y.dim() != 4
            rows.append(LayerRow(name, type(m).__name__, tuple(y.shape[1:]),
                                 sum(p.numel() for p in m.parameters()), macs, y[0].numel() * 4,
                                 None if whole else rf, None if whole else jump, None if whole else rf_min))
            x = y
    return Summary(cfg, tuple(rows))


def shape_str(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def table(summary: Summary) -> list[dict]:
    """Rows formatted for display (the UI and the CLI share it)."""
    out = []
    for r in summary.rows:
        out.append({"layer": r.name, "type": r.type, "output (C×H×W)": shape_str(r.output_shape),
                    "params": r.params, "MACs": r.macs, "memory": human(r.memory, "B"),
                    "receptive field": rf_str(r)})
    return out


def rf_str(r: LayerRow) -> str:
    if r.rf is None:
        return "whole input"
    if r.rf_min is not None:
        return f"varies: {r.rf_min}×{r.rf_min} to {r.rf}×{r.rf}"
    return f"{r.rf}×{r.rf} (jump {r.jump})"


_ACT_SENTENCE = {
    "ReLU": "sets every negative value to zero (max(0, x))",
    "Sigmoid": "squashes every value into (0, 1) with 1/(1+e^-x)",
    "Tanh": "squashes every value into (-1, 1)",
    "GELU": "multiplies every value by the chance Φ(x) that a standard normal is below it (a smooth ReLU)",
}


def _block(cfg: ArchConfig, name: str):
    """The ConvSpec a row named conv3 / pool3 / bn3 ... came from."""
    return cfg.convs[int("".join(ch for ch in name if ch.isdigit())) - 1]


def describe_layers(s: Summary) -> list[str]:
    """One plain sentence per row of `s`, in order, with that layer's own numbers."""
    cfg, out = s.cfg, []
    prev_name, prev_shape = "input", (cfg.in_channels, cfg.input_size, cfg.input_size)
    for r in s.rows:
        src = "the input image" if prev_name == "input" else f"the {shape_str(prev_shape)} maps of {prev_name}"
        shp, cost = shape_str(r.output_shape), f"{r.params:,} weights, {approx(r.macs)} multiply-accumulates"
        if r.type == "Conv2d":
            b = _block(cfg, r.name)
            c_in = prev_shape[0]
            src = f"the {shape_str(prev_shape)} input image" if prev_name == "input" else src
            pad = f" (padded by {b.padding})" if b.padding else ""
            split = (f" in {b.groups} groups (each group's {b.out_channels // b.groups} filters see "
                     f"{c_in // b.groups} of the {c_in} maps)" if b.groups > 1 else "")
            text = (f"{b.out_channels} filters of {b.kernel}×{b.kernel}×{c_in // b.groups}{split} slide with "
                    f"stride {b.stride} over {src}{pad}, making {shp} — {cost}")
        elif r.type in ("MaxPool2d", "AvgPool2d"):
            b = _block(cfg, r.name)
            what = "keeps the largest" if r.type == "MaxPool2d" else "keeps the average"
            text = (f"{b.pool_kernel}×{b.pool_kernel} {r.type[:3].lower()} pooling with stride {b.pool_stride} "
                    f"{what} value of each window, shrinking {shape_str(prev_shape)} to {shp} — no weights")
        elif r.type == "AdaptiveAvgPool2d":
            sizes = sorted({e - b for b, e in adaptive_windows(prev_shape[-1], r.output_shape[-1])})
            win = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
            text = (f"adaptive average pooling averages {shape_str(prev_shape)} down to {shp}, whatever the "
                    f"input size (windows {win} pixel{'s' if sizes[-1] > 1 else ''} wide, as PyTorch places "
                    f"them) — no weights")
        elif r.type == "Flatten":
            text = f"the {shape_str(prev_shape)} maps are laid out as one vector of {r.output_shape[0]:,} numbers"
        elif r.type == "Linear":
            n_in, n_out = prev_shape[0], r.output_shape[0]
            role = " class scores" if r is s.rows[-1] else " outputs"
            text = (f"each of the {n_out:,}{role} is a weighted sum of all {n_in:,} numbers from {prev_name}, "
                    f"plus a bias — {cost}")
        elif r.type == "Dropout":
            text = (f"while training, zeroes each of the {r.output_shape[0]:,} values with probability {cfg.dropout:g} and scales "
                    f"the rest by {1 / (1 - cfg.dropout):.3g}; at test time passes them through — no weights")
        elif r.type == "LocalResponseNorm":
            text = (f"local response normalization divides each value of the {shp} maps by the activity of the "
                    f"{LRN['size']} neighbouring channels at that pixel (k={LRN['k']:g}, α={LRN['alpha']:g}, "
                    f"β={LRN['beta']:g}) — no weights")
        elif r.type == "BatchNorm2d":
            c = r.output_shape[0]
            text = (f"batch normalization standardizes each of the {c} channels over the batch, then scales and "
                    f"shifts it — {r.params:,} weights (a scale and a shift per channel)")
        elif r.type in _ACT_SENTENCE:
            what = f"{shp} maps" if len(r.output_shape) == 3 else f"{r.output_shape[0]:,} outputs"
            text = f"{r.type} {_ACT_SENTENCE[r.type]} in the {what} of {prev_name} — no weights"
        else:
            text = f"{r.type} making {shp} — {cost}"
        out.append(f"{r.name}: {text}")
        prev_name, prev_shape = r.name, r.output_shape
    return out
