"""The network drawn as the AlexNet paper and NN-SVG draw it: an SVG of boxes sized by the shapes.

Each feature map is a box: its height and its depth (drawn obliquely) follow the map's side on a
square-root scale, its thickness the channel count on a log scale, so 54 and 5 look different and
4096-wide layers still fit. Conv kernels are small squares on the map they slide over, with their
size and stride written under the box they make; grouped convs (the paper's two GPUs) are drawn as
towers; the first layer that cannot work is drawn in red with its message. Works on an invalid
config: shapes come from `config.trace`, layer by layer, up to the failing one.
Pure functions, no streamlit; `to_png` renders the same SVG with cairosvg.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from html import escape

from alexnet_viz.config import ArchConfig, trace

MAX_TOWERS = 4     # groups drawn as separate towers; more groups are drawn as 4 and labelled with the count
FONT = 16          # px at scale 1: labels stay >= 14 px when the SVG is shown at its own size
FAMILY = "DejaVu Sans, Helvetica, Arial, sans-serif"
COLORS = {"input": "#d9d9d9", "conv": "#9ecae1", "pool": "#a1d99b", "vector": "#fdd0a2", "failed": "#fcbba1"}
EDGE = {"input": "#636363", "conv": "#3182bd", "pool": "#31a354", "vector": "#e6550d", "failed": "#cb181d"}


def side_px(side: int) -> float:
    """Drawn height of a map side: square-root scale (54 -> 81 px, 5 -> 25 px, 224 -> 165 px)."""
    return 11 * math.sqrt(side)


def channels_px(c: int) -> float:
    """Drawn thickness of c channels: log scale (1 -> 4 px, 96 -> 50 px, 384 -> 64 px)."""
    return 4 + 7 * math.log2(c)


def vector_px(n: int) -> float:
    """Drawn height of a vector of n numbers: log scale (10 -> 48 px, 4096 -> 168 px)."""
    return 14 * math.log2(n + 1)


@dataclass(frozen=True)
class DrawnLayer:
    """One drawn layer output."""
    name: str                    # conv1, pool1, input, flatten, fc1 ...
    kind: str                    # input | conv | pool | vector | failed
    shape: tuple[int, ...]       # C, H, W or (n,); () for a failed layer
    towers: int = 1              # groups of the conv that made it (the paper's two GPUs)
    kernel: tuple[int, int, int] | None = None   # (k, stride, groups) of the conv that made it
    message: str = ""            # the ConfigError of a failed layer


def drawn_layers(cfg: ArchConfig) -> list[DrawnLayer]:
    """The layers to draw, in order, stopping at (and including, in red) the first one that cannot work."""
    t = trace(cfg)
    where = t.where
    if where in ("name", "input", "network"):
        return [DrawnLayer("input", "failed", (), message=str(t.error))]
    out = [DrawnLayer("input", "input", (cfg.in_channels, cfg.input_size, cfg.input_size))]
    h = cfg.input_size
    for i, b in enumerate(cfg.convs, 1):
        if i > len(t.blocks):  # this block failed: draw its conv, or its pool, in red
            if where == f"pool{i}":
                h_conv = (h + 2 * b.padding - b.kernel) // b.stride + 1
                out.append(DrawnLayer(f"conv{i}", "conv", (b.out_channels, h_conv, h_conv),
                                      min(b.groups, MAX_TOWERS), (b.kernel, b.stride, b.groups)))
            name = where if where in (f"conv{i}", f"pool{i}") else f"conv{i}"
            return out + [DrawnLayer(name, "failed", (), message=str(t.error))]
        c, h_conv, h = t.blocks[i - 1]
        towers = min(b.groups, MAX_TOWERS)
        out.append(DrawnLayer(f"conv{i}", "conv", (c, h_conv, h_conv), towers, (b.kernel, b.stride, b.groups)))
        if b.pool != "none":
            out.append(DrawnLayer(f"pool{i}", "pool", (c, h, h), towers))
    if where == "avgpool":
        return out + [DrawnLayer("avgpool", "failed", (), message=str(t.error))]
    if cfg.adaptive_pool:
        a = cfg.adaptive_pool
        out.append(DrawnLayer("avgpool", "pool", (out[-1].shape[0], a, a)))
    out.append(DrawnLayer("flatten", "vector", (t.flat,)))
    widths = (*cfg.hidden, cfg.num_classes)
    for j, w in enumerate(widths, 1):
        if where == f"fc{j}" or (where == "classifier" and j == 1):
            return out + [DrawnLayer(where, "failed", (), message=str(t.error))]
        out.append(DrawnLayer(f"fc{j}", "vector", (w,)))
    return out


def _size(b: DrawnLayer) -> tuple[float, float, float]:
    """(thickness, height, oblique depth) of one tower of a box, in px at scale 1."""
    if b.kind == "failed":
        return 24, 70, 12
    if len(b.shape) == 1:
        return 14, vector_px(b.shape[0]), 8
    c, h, w = b.shape
    return channels_px(max(c // b.towers, 1)), side_px(h), 0.35 * side_px(w)


def _labels(b: DrawnLayer) -> list[str]:
    """Text under a box: its shape, then the kernel that made it."""
    if b.kind == "failed":
        return ["cannot work"]
    if len(b.shape) == 1:
        return [f"{b.shape[0]:,}"]
    lines = [f"{b.shape[0]}×{b.shape[1]}×{b.shape[2]}"]
    if b.kernel:
        k, s, g = b.kernel
        lines += [f"{k}×{k}, stride {s}"] + ([f"{g} groups"] if g > 1 else [])
    return lines


def _text_px(text: str, font: float) -> float:
    return 0.6 * font * len(text)  # DejaVu Sans averages ~0.6 em per character


def network_svg(cfg: ArchConfig, scale: float = 1.0) -> str:
    """The drawing as a standalone SVG document; `scale` enlarges everything (presenter mode)."""
    items = drawn_layers(cfg)
    font, gap = FONT * scale, 14 * scale
    sizes = [tuple(v * scale for v in _size(b)) for b in items]
    tower_gap = 12 * scale
    full = [(t, h * b.towers + tower_gap * (b.towers - 1), d) for b, (t, h, d) in zip(items, sizes)]
    top_pad = font * 2.2 + max(d * 0.6 for _, _, d in full)
    body = max(h for _, h, _ in full)
    mid = top_pad + body / 2
    label_y = top_pad + body + font * 1.4
    n_lines = max(len(_labels(b)) for b in items)
    parts, x = [], gap / 2
    kernel_targets = []
    for b, (t, h, d), (_, total_h, _) in zip(items, sizes, full):
        label_w = max(_text_px(s, font) for s in [b.name, *_labels(b)])
        box_w = t + d * 0.6
        slot = max(box_w, label_w) + gap
        x0 = x + (slot - gap - box_w) / 2
        cls = "layer failed" if b.kind == "failed" else "layer"
        shape_attr = "x".join(map(str, b.shape))
        g = [f'<g class="{cls}" data-layer="{escape(b.name)}" data-kind="{b.kind}" data-shape="{shape_attr}" '
             f'data-towers="{b.towers}">']
        y_top = mid - total_h / 2
        for j in range(b.towers):
            y = y_top + j * (h + tower_gap)
            g.append(_cuboid(x0, y, t, h, d, b.kind, scale))
        cx = x + (slot - gap) / 2
        color = ' fill="#cb181d"' if b.kind == "failed" else ""
        g.append(f'<text x="{cx:.1f}" y="{font * 1.3:.1f}" font-weight="bold"{color}>{escape(b.name)}</text>')
        for k, line in enumerate(_labels(b)):
            g.append(f'<text x="{cx:.1f}" y="{label_y + k * font * 1.25:.1f}"{color}>{escape(line)}</text>')
        g.append("</g>")
        parts.append("\n".join(g))
        kernel_targets.append((x0, mid, t, h, d, total_h))
        x += slot
    # kernels: a small square on the map a conv slides over, with lines to the map it makes
    for i, b in enumerate(items):
        if not b.kernel or i == 0:
            continue
        px0, _, pt, ph, pd, p_total = kernel_targets[i - 1]
        nx0, _, nt, nh, nd, n_total = kernel_targets[i]
        k = min(side_px(b.kernel[0]) * scale, ph * 0.8)
        kx, ky = px0 + pt + pd * 0.3 - k * 0.15, mid - k / 2 + pd * 0.1
        parts.append(f'<g class="kernel" data-layer="{b.name}" data-kernel="{b.kernel[0]}">'
                     f'<rect x="{kx:.1f}" y="{ky:.1f}" width="{k * 0.35 + 2:.1f}" height="{k:.1f}" '
                     f'fill="#fee391" stroke="#993404" stroke-width="1.5"/>'
                     f'<path d="M{kx + k * 0.35 + 2:.1f},{ky:.1f} L{nx0:.1f},{mid:.1f} '
                     f'M{kx + k * 0.35 + 2:.1f},{ky + k:.1f} L{nx0:.1f},{mid:.1f}" stroke="#993404" '
                     f'stroke-width="1.2" stroke-dasharray="4 3" fill="none"/></g>')
    width = x + gap / 2
    height = label_y + n_lines * font * 1.25 + font * 0.6
    note = ("height and depth: √ of the map side · thickness: log₂ of the channels · bars: log₂ of the width · "
            "yellow: the kernel")
    parts.append(f'<text class="note" x="{gap / 2:.1f}" y="{height + font * 0.2:.1f}" text-anchor="start" '
                 f'fill="#555">{escape(note)}</text>')
    height += font * 0.8
    failed = [b for b in items if b.kind == "failed"]
    if failed:
        per_line = max(int(width / (0.6 * font)), 40)
        for k, line in enumerate(textwrap.wrap(failed[0].message, per_line)):
            height += font * 1.35
            parts.append(f'<text class="message" x="{gap / 2:.1f}" y="{height:.1f}" text-anchor="start" '
                         f'fill="#cb181d" font-weight="bold">{escape(line)}</text>')
    width = max(width, _text_px(note, font) + gap)
    height += font * 0.8
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FAMILY}" font-size="{font:.1f}" '
            f'text-anchor="middle" role="img" aria-label="{escape(cfg.name)} drawn layer by layer">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>")


def _cuboid(x: float, y: float, t: float, h: float, d: float, kind: str, scale: float) -> str:
    """A box seen from the front-left: front face t×h, depth d drawn up and to the right."""
    dx, dy = d * 0.6, -d * 0.6
    fill, edge = COLORS[kind], EDGE[kind]
    dash = ' stroke-dasharray="5 3"' if kind == "failed" else ""
    sw = f"{1.4 * scale:.1f}"
    return (f'<polygon class="top" points="{x:.1f},{y:.1f} {x + t:.1f},{y:.1f} {x + t + dx:.1f},{y + dy:.1f} '
            f'{x + dx:.1f},{y + dy:.1f}" fill="{fill}" stroke="{edge}" stroke-width="{sw}"{dash}/>'
            f'<polygon class="side" points="{x + t:.1f},{y:.1f} {x + t + dx:.1f},{y + dy:.1f} '
            f'{x + t + dx:.1f},{y + h + dy:.1f} {x + t:.1f},{y + h:.1f}" fill="{fill}" stroke="{edge}" '
            f'stroke-width="{sw}" fill-opacity="0.75"{dash}/>'
            f'<rect class="front" x="{x:.1f}" y="{y:.1f}" width="{t:.1f}" height="{h:.1f}" fill="{fill}" '
            f'stroke="{edge}" stroke-width="{sw}"{dash}/>')


def to_png(svg: str, scale: float = 2.0) -> bytes:
    """The SVG as a PNG (for slides), rendered by cairosvg (needs the cairo library, no browser)."""
    import cairosvg
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
