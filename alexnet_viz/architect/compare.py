"""Two networks side by side: per-layer parameters and MACs, and what changed, in one sentence of numbers."""
from __future__ import annotations

from alexnet_viz.architect.summary import Summary, shape_str
from alexnet_viz.units import approx

_KEPT = ("Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Linear")


def side_by_side(a: Summary, b: Summary) -> list[dict]:
    """One row per layer name found in either network (convs, pools, flatten, fcs), in forward order."""
    ra = {r.name: r for r in a.rows if r.type in _KEPT}
    rb = {r.name: r for r in b.rows if r.type in _KEPT}
    names = sorted(set(ra) | set(rb), key=_order)
    out = []
    for n in names:
        x, y = ra.get(n), rb.get(n)
        out.append({"layer": n,
                    "A shape": shape_str(x.output_shape) if x else "—", "B shape": shape_str(y.output_shape) if y else "—",
                    "A params": x.params if x else 0, "B params": y.params if y else 0,
                    "Δ params": (y.params if y else 0) - (x.params if x else 0),
                    "A MACs": x.macs if x else 0, "B MACs": y.macs if y else 0,
                    "Δ MACs": (y.macs if y else 0) - (x.macs if x else 0)})
    return out


def _order(name: str) -> tuple:
    """Features (conv3 before pool3 before conv4), the adaptive pool, flatten, then fc1, fc2 ..."""
    stage = 0 if name.startswith(("conv", "pool")) else 1 if name == "avgpool" else 2 if name == "flatten" else 3
    return stage, int("".join(ch for ch in name if ch.isdigit()) or 0), name.startswith("pool")


def _ratio(x: int, y: int) -> str:
    if not x or not y:
        return ""
    r = max(y / x, x / y)
    text = f"{r:,.0f}" if r >= 100 else f"{r:.3g}"
    return "" if text == "1" else f" (×{text})" if y > x else f" (÷{text})"


def _set(values) -> str:
    return "/".join(dict.fromkeys(values))


def what_changed(a: Summary, b: Summary) -> str:
    """From a to b: the design choices that differ and what they did to parameters and compute."""
    ca, cb = a.cfg, b.cfg
    parts = []

    def diff(label: str, x, y) -> None:
        if x != y:
            parts.append(f"{label} {x} → {y}")

    diff("input", f"{ca.in_channels}×{ca.input_size}×{ca.input_size}", f"{cb.in_channels}×{cb.input_size}×{cb.input_size}")
    diff("conv layers", len(ca.convs), len(cb.convs))
    diff("first kernel", f"{ca.convs[0].kernel}×{ca.convs[0].kernel} stride {ca.convs[0].stride}",
         f"{cb.convs[0].kernel}×{cb.convs[0].kernel} stride {cb.convs[0].stride}")
    diff("widest conv", max(c.out_channels for c in ca.convs), max(c.out_channels for c in cb.convs))
    diff("activation", _set(c.activation for c in ca.convs), _set(c.activation for c in cb.convs))
    diff("pooling", _set(c.pool for c in ca.convs if c.pool != "none") or "none",
         _set(c.pool for c in cb.convs if c.pool != "none") or "none")
    diff("normalization", _set(c.norm for c in ca.convs if c.norm != "none") or "none",
         _set(c.norm for c in cb.convs if c.norm != "none") or "none")
    diff("groups", max(c.groups for c in ca.convs), max(c.groups for c in cb.convs))
    diff("adaptive pool", ca.adaptive_pool or "none", cb.adaptive_pool or "none")
    diff("hidden widths", ", ".join(map(str, ca.hidden)) or "none", ", ".join(map(str, cb.hidden)) or "none")
    diff("dropout", f"{ca.dropout:g}", f"{cb.dropout:g}")
    diff("classes", ca.num_classes, cb.num_classes)
    changes = "; ".join(parts) if parts else "nothing in the design"
    return (f"From {ca.name} to {cb.name}: {changes}. Parameters {approx(a.total_params)} → "
            f"{approx(b.total_params)}{_ratio(a.total_params, b.total_params)}, multiply-accumulates per image "
            f"{approx(a.total_macs)} → {approx(b.total_macs)}{_ratio(a.total_macs, b.total_macs)}.")

