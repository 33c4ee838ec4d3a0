"""Plotly figures from plain data. Pure functions: no torch, no streamlit."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

KIND_COLORS = {"Conv2d": "#1f77b4", "Linear": "#d62728", "MaxPool2d": "#2ca02c", "AvgPool2d": "#2ca02c",
               "AdaptiveAvgPool2d": "#2ca02c", "BatchNorm2d": "#9467bd", "LocalResponseNorm": "#9467bd"}
_VIRIDIS = np.array([[int(c) for c in s[4:-1].split(",")]
                     for s in sample_colorscale("Viridis", np.linspace(0, 1, 256).tolist())], np.uint8)


MARGIN = dict(l=10, r=10, t=40, b=10)


def _figure(data: list[dict], title: str = "", height: int = 320, **layout) -> go.Figure:
    """A figure from plain dicts, validated once. Every figure here is built so: make_subplots and
    update_layout's path parsing cost the server 4-5× as much on every script run (18.7 ms against
    3.9 ms for the layer statistics, 132 ms against 6 ms for the kernel products' 12 panels)."""
    return go.Figure(data=data, layout=dict(title=dict(text=title), height=height, margin=MARGIN, showlegend=False)
                     | layout)


def per_layer_bars(rows: list[dict], key: str, title: str, unit: str = "") -> go.Figure:
    """Bars of one column (params, macs, memory) for layers where it is non-zero; share in the hover."""
    rows = [r for r in rows if r[key]]
    total = sum(r[key] for r in rows) or 1
    bar = dict(type="bar", x=[r["name"] for r in rows], y=[r[key] for r in rows],
               marker_color=[KIND_COLORS.get(r["type"], "#7f7f7f") for r in rows],
               text=[f"{r[key] / total:.0%}" for r in rows], textposition="outside",
               hovertemplate="%{x}: %{y:,}" + unit + " (%{text} of total)<extra></extra>")
    return _figure([bar], title, yaxis=dict(title=dict(text=unit or None)))


LOSS_AXIS = dict(title=dict(text="cross-entropy"), rangemode="tozero")
ACC_AXIS = dict(title=dict(text="fraction correct"), range=[0, 1.02])


def _two_panels(titles: tuple[str, str], left: dict, right: dict, shared_x: bool = False) -> dict:
    """The layout of two panels side by side over epochs, as make_subplots(1, 2) lays them out."""
    epoch = dict(title=dict(text="epoch"), rangemode="tozero")
    label = dict(xref="paper", yref="paper", y=1.0, yanchor="bottom", showarrow=False, font=dict(size=16))
    return dict(xaxis=epoch | dict(domain=[0, 0.46]),
                xaxis2=epoch | dict(domain=[0.54, 1], anchor="y2") | (dict(matches="x") if shared_x else {}),
                yaxis=left, yaxis2=right | dict(anchor="x2"),
                annotations=[label | dict(text=titles[0], x=0.23), label | dict(text=titles[1], x=0.77)])


def training_curves(steps: list[dict], epochs: list[dict], title: str = "",
                    reference: dict | None = None) -> go.Figure:
    """d2l's animated plot in two panels: train loss (left), train and test accuracy (right), against
    epochs. `reference` ({"epoch", "train_loss", "train_acc", "test_acc"}) adds the book's published
    figures as marked points. A constant uirevision keeps the user's zoom while the data grows."""
    x = [s["epoch"] for s in steps]
    mode = "lines+markers" if len(steps) < 30 else "lines"  # a short run reports a few times: a line alone hides them
    left, right = dict(xaxis="x", yaxis="y"), dict(xaxis="x2", yaxis="y2")
    data = [dict(type="scatter", x=x, y=[s["loss"] for s in steps], name="train loss", mode=mode,
                 line=dict(color="#1f77b4"), **left),
            dict(type="scatter", x=x, y=[s["acc"] for s in steps], name="train acc", mode=mode,
                 line=dict(color="#ff7f0e", dash="dash"), **right),
            dict(type="scatter", x=[e["epoch"] for e in epochs], y=[e["test_acc"] for e in epochs], name="test acc",
                 mode="lines+markers", line=dict(color="#2ca02c", dash="dot"), **right)]
    if reference:
        marks = [("train_loss", "book: train loss", "#1f77b4", left), ("train_acc", "book: train acc", "#ff7f0e", right),
                 ("test_acc", "book: test acc", "#2ca02c", right)]
        for key, name, color, axes in marks:
            data.append(dict(
                type="scatter", x=[reference["epoch"]], y=[reference[key]], name=name, mode="markers+text",
                text=[f"d2l {reference[key]:.3f}"], textposition="bottom left" if key == "test_acc" else "top left",
                marker=dict(symbol="star", size=14, color=color, line=dict(color="#333", width=1)),
                hovertemplate=f"d2l's published {key.replace('_', ' ')} after %{{x}} epochs: %{{y}}<extra></extra>",
                **axes))
    return _figure(data, title, 380, showlegend=True, legend=dict(orientation="h", y=-0.25), uirevision="keep",
                   **_two_panels(("loss", "accuracy"), LOSS_AXIS, ACC_AXIS))


def experiment_curves(series: dict[str, list[tuple[list[dict], list[dict]]]], title: str = "") -> go.Figure:
    """Variants of one experiment on shared axes: test accuracy per epoch (left) and train loss (right).
    `series` maps a variant's label to (steps, epochs) of each of its runs (one per seed)."""
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    data = []
    for k, (label, runs) in enumerate(series.items()):
        color = palette[k % len(palette)]
        for j, (steps, epochs) in enumerate(runs):
            seed = f"{label}, run {j + 1}" if len(runs) > 1 else label
            line = dict(type="scatter", name=label, legendgroup=label, line=dict(color=color),
                        hovertemplate=f"{seed}: %{{y:.3f}}<extra></extra>")
            data += [line | dict(x=[e["epoch"] for e in epochs], y=[e["test_acc"] for e in epochs], showlegend=j == 0,
                                 mode="lines+markers", xaxis="x", yaxis="y"),
                     line | dict(x=[s["epoch"] for s in steps], y=[s["loss"] for s in steps], showlegend=False,
                                 mode="lines", opacity=0.8, xaxis="x2", yaxis="y2")]
    return _figure(data, title, 360, showlegend=True, legend=dict(orientation="h", y=-0.25), uirevision="keep",
                   **_two_panels(("test accuracy", "train loss"), ACC_AXIS, LOSS_AXIS, shared_x=True))


def compare_runs(curves: dict[str, list[dict]], key: str = "test_acc") -> go.Figure:
    """One line per run: its per-epoch values of `key`."""
    data = [dict(type="scatter", x=[e["epoch"] for e in epochs], y=[e[key] for e in epochs], name=name,
                 mode="lines+markers") for name, epochs in curves.items()]
    return _figure(data, f"Runs compared: {key.replace('_', ' ')}", 340, showlegend=True,
                   xaxis=dict(title=dict(text="epoch")),
                   yaxis=dict(title=dict(text=key.replace("_", " ")), range=[0, 1] if key.endswith("acc") else None))


def confusion_matrix(cm: np.ndarray, classes: tuple[str, ...]) -> go.Figure:
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    heat = dict(type="heatmap", z=frac, x=list(classes), y=list(classes), colorscale="Blues", zmin=0, zmax=1,
                text=cm, texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>")
    return _figure([heat], "Confusion matrix (test set)", 480, xaxis=dict(title=dict(text="predicted")),
                   yaxis=dict(autorange="reversed", title=dict(text="true label")))


def topk_bars(top: list[tuple[str, float]], truth: str | None = None) -> go.Figure:
    """Horizontal bars, best on top; the true label (when known) in green and marked."""
    top = top[::-1]
    bar = dict(type="bar", x=[p for _, p in top], y=[c + (" ✓ true label" if c == truth else "") for c, _ in top],
               orientation="h", text=[f"{p:.1%}" for _, p in top], textposition="auto",
               marker_color=["#2ca02c" if c == truth else "#1f77b4" for c, _ in top])
    return _figure([bar], "Top predictions", 280, xaxis=dict(range=[0, 1], tickformat=".0%"))


def layer_stats_chart(stats: list[dict]) -> go.Figure:
    names = [s["layer"] for s in stats]
    data = [dict(type="bar", x=names, y=[s["zeros"] for s in stats], name="fraction of zeros", opacity=0.5,
                 marker_color="#7f7f7f", yaxis="y2"),
            dict(type="scatter", x=names, y=[s["mean"] for s in stats], name="mean", mode="lines+markers"),
            dict(type="scatter", x=names, y=[s["max"] for s in stats], name="max", mode="lines+markers")]
    return _figure(data, "Activation statistics per layer", 340, showlegend=True, legend=dict(orientation="h", y=-0.3),
                   yaxis=dict(title=dict(text="activation")),
                   yaxis2=dict(title=dict(text="zeros"), range=[0, 1], tickformat=".0%", overlaying="y", side="right"))


def colorize(a: np.ndarray, min_side: int = 0) -> np.ndarray:
    """2-D array in 0..1 (NaN = gap) -> H×W×3 uint8 viridis image, gaps white; enlarged with
    sharp pixels until its width reaches `min_side` (browsers blur small images they stretch)."""
    idx = np.nan_to_num(np.clip(a, 0, 1) * 255, nan=0).astype(np.uint8)
    out = _VIRIDIS[idx]
    out[np.isnan(a)] = 255
    k = max(1, min_side // max(out.shape[1], 1))
    return np.repeat(np.repeat(out, k, 0), k, 1) if k > 1 else out


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Grad-CAM over the input: image H×W or H×W×3 uint8, cam H×W in 0..1 -> H×W×3 uint8."""
    base = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    heat = _jet(cam)
    return (base * (1 - alpha) + heat * alpha).astype(np.uint8)


def _jet(a: np.ndarray) -> np.ndarray:
    """The classic 'jet' map, as in the Grad-CAM paper: blue (cold) to red (hot)."""
    a = np.clip(a, 0, 1)[..., None]
    r = np.clip(1.5 - np.abs(4 * a - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * a - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * a - 1), 0, 1)
    return np.concatenate([r, g, b], -1) * 255


def filter_grid(filters: np.ndarray, cols: int = 16, scale: int = 4) -> np.ndarray:
    """N×k×k or N×k×k×3 filters in 0..1 -> one uint8 image: tiles with white gaps, enlarged by `scale`."""
    n, k = filters.shape[0], filters.shape[1]
    rows = -(-n // cols)
    f = np.repeat(np.repeat(filters, scale, 1), scale, 2)
    K, gap = k * scale, 2
    shape = (rows * (K + gap) - gap, min(n, cols) * (K + gap) - gap) + f.shape[3:]
    out = np.ones(shape, np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        out[r * (K + gap):r * (K + gap) + K, q * (K + gap):q * (K + gap) + K] = f[i]
    return (out * 255).astype(np.uint8)


def channel_heatmap(a: np.ndarray, selected: tuple[int, int] | None, title: str) -> go.Figure:
    """One channel's map (H×W raw values) to click on: a heat map, and under each cell an invisible
    marker (Plotly selects markers, not heat-map cells; Streamlit passes on selections only); the selected
    unit framed in red."""
    H, W = a.shape
    rr, cc = np.mgrid[0:H, 0:W]
    data = [dict(type="heatmap", z=a, colorscale="Viridis", colorbar=dict(title=dict(text="value"), thickness=12),
                 hoverinfo="skip"),
            # a marker per cell answers hover and click (the nearest wins; a "skip" trace would get no click).
            # Only one is drawn (maxdisplayed): Plotly finds the nearest point in the data, not among the drawn
            # ones, and drawing 3,025 SVG markers (a 55×55 map) cost a browser core 0.5–0.8 s per redraw
            dict(type="scatter", x=cc.ravel(), y=rr.ravel(), mode="markers", showlegend=False, customdata=a.ravel(),
                 hovertemplate="row %{y}, column %{x}: %{customdata:.4f}<extra></extra>",
                 marker=dict(symbol="square", size=max(3, 160 // max(H, W)), opacity=0.01, color="white",
                             maxdisplayed=1))]
    shapes = [] if selected is None else [dict(type="rect", x0=selected[1] - 0.5, x1=selected[1] + 0.5,
                                               y0=selected[0] - 0.5, y1=selected[0] + 0.5,
                                               line=dict(color="red", width=3))]
    return _figure(data, title, 460, shapes=shapes, clickmode="event+select", dragmode=False,
                   yaxis=dict(autorange="reversed", scaleanchor="x", constrain="domain", title=dict(text="row")),
                   xaxis=dict(constrain="domain", title=dict(text="column")))


def field_overlay(image: np.ndarray, erf: np.ndarray, box: tuple[int, int, int, int],
                  cover: tuple[float, float, float, float], n: int) -> np.ndarray:
    """A unit's receptive field on the image: |∂unit/∂input| as a heat overlay where it is non-zero,
    and the theoretical box in red. erf and box (top, left, bottom, right, inclusive) are in the
    network's n×n input; cover is the (left, top, right, bottom) of the image that input covers."""
    from PIL import Image, ImageDraw
    base = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    h, w = base.shape[:2]
    x0, y0, x1, y1 = cover
    sx, sy = (x1 - x0) / n, (y1 - y0) / n
    hi = float(erf.max())
    out = base.astype(np.float32)
    if hi > 0:
        left, top = int(np.floor(x0)), int(np.floor(y0))
        bw, bh = max(1, int(np.ceil(x1)) - left), max(1, int(np.ceil(y1)) - top)
        e = np.asarray(Image.fromarray((erf / hi).astype(np.float32)).resize((bw, bh), Image.Resampling.BILINEAR))
        full = np.zeros((h, w), np.float32)
        t0, l0 = max(top, 0), max(left, 0)
        full[t0:min(top + bh, h), l0:min(left + bw, w)] = e[t0 - top:min(top + bh, h) - top,
                                                            l0 - left:min(left + bw, w) - left]
        alpha = 0.65 * np.clip(full, 0, 1)[..., None] ** 0.5
        out = out * (1 - alpha) + _jet(full) * alpha
    im = Image.fromarray(out.astype(np.uint8))
    t, lft, b, r = box
    bx0, by0 = x0 + lft * sx, y0 + t * sy
    bx1, by1 = max(bx0, x0 + (r + 1) * sx - 1), max(by0, y0 + (b + 1) * sy - 1)  # ≥ 1 px on a 1-px image
    ImageDraw.Draw(im).rectangle([bx0, by0, bx1, by1], outline=(255, 0, 0), width=max(1, min(h, w) // 150))
    return np.asarray(im)


def kernel_products(terms: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> go.Figure:
    """For each shown input channel: the patch, the kernel and their element-wise products, as
    heat maps with the numbers written in (CNN Explainer's view).

    One heat map on one pair of axes, the panels laid out in it with blank cells between them: twelve
    subplots cost the server 130 ms to build and the browser twelve axes to draw. Each panel is
    coloured on its own scale (divided by its largest |value|, so 0 is white and the sign is the
    colour); the numbers written in and hovered are the real ones."""
    names = ("input patch", "kernel", "patch × kernel")
    k = terms[0][1].shape[0]
    gap = max(1, -(-k // 5))  # blank cells between panels: room for a title above each
    step = k + gap
    shape = (len(terms) * step, len(names) * step - gap)
    colour, value = np.full(shape, np.nan), np.full(shape, np.nan)
    text = np.full(shape, "", dtype=object)
    titles = []
    for i, (label, *panels) in enumerate(terms):
        for j, (name, z) in enumerate(zip(names, panels)):
            r, c = i * step + gap, j * step
            lim = float(np.abs(z).max()) or 1.0
            colour[r:r + k, c:c + k], value[r:r + k, c:c + k] = z / lim, z
            text[r:r + k, c:c + k] = [[f"{v:.2f}" for v in row] for row in np.round(z, 2)]
            titles.append(dict(text=f"{label}: {name}", x=c + (k - 1) / 2, y=r - 0.5, xref="x", yref="y",
                               xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=11)))
    trace = dict(type="heatmap", z=colour, customdata=value, zmin=-1, zmax=1, colorscale="RdBu", showscale=False,
                 hoverongaps=False, hovertemplate="%{customdata:.4f}<extra></extra>")
    if k <= 7:
        trace |= dict(text=text, texttemplate="%{text}")
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="")
    return _figure([trace], "", 60 + 230 * len(terms), annotations=titles,
                   xaxis=axis | dict(range=[-0.5, shape[1] - 0.5]), yaxis=axis | dict(range=[shape[0] - 0.5, -0.5]))


def attribution_panels(image: np.ndarray, maps: dict[str, np.ndarray], cover: tuple[float, float, float, float],
                       label: str) -> go.Figure:
    """Each method's map (n×n, scaled to −1..1) over the user's original image, side by side, on one
    colour scale with its legend. cover: the (left, top, right, bottom) of the image the maps cover.
    The panels share one pair of axes, each photo shifted right by its panel's place (one axis pair
    is a fifth of the browser's and the server's work of five subplots)."""
    base = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    h, w = base.shape[:2]
    step = w * 1.04  # each panel's photo starts here after the last one's, a small gap between
    # cover is in pixel edges (0..w); Plotly centres image pixel i on i, so its edges are at −0.5 .. w − 0.5
    x0, y0, x1, y1 = (v - 0.5 for v in cover)
    data, titles = [], []
    for i, (name, a) in enumerate(maps.items()):
        n, shift = a.shape[0], i * step
        sx, sy = (x1 - x0) / a.shape[1], (y1 - y0) / n
        data += [dict(type="image", z=base, x0=shift, hoverinfo="skip"),
                 dict(type="heatmap", z=a, x0=shift + x0 + sx / 2, dx=sx, y0=y0 + sy / 2, dy=sy, coloraxis="coloraxis",
                      opacity=0.6, zsmooth="best", hovertemplate="%{z:.2f} of the largest<extra></extra>")]
        titles.append(dict(text=name, x=shift + (w - 1) / 2, y=-0.5, xref="x", yref="y", xanchor="center",
                           yanchor="bottom", showarrow=False, font=dict(size=13)))
    colorbar = dict(title=dict(text="attribution<br>(÷ largest |value|)", side="right"), thickness=12,
                    tickvals=[-1, 0, 1], ticktext=[f"−1: against {label}", "0", f"+1: for {label}"])
    return _figure(data, "", 340, annotations=titles,
                   coloraxis=dict(colorscale="RdBu_r", cmin=-1, cmax=1, colorbar=colorbar),
                   xaxis=dict(visible=False, range=[-0.5, (len(maps) - 1) * step + w - 0.5]),
                   yaxis=dict(visible=False, range=[h - 0.5, -0.5], scaleanchor="x"))


def internals_lines(records: list[dict], key: str, title: str, log_y: bool = False) -> go.Figure:
    """One line per layer of an internals series over steps: key = grad_norm, update_ratio (per
    weighted layer) or dead (per ReLU)."""
    names = "relus" if key == "dead" else "layers"
    data = []
    if records:
        layers = records[-1][names]
        colors = sample_colorscale("Viridis", np.linspace(0, 0.9, max(len(layers), 2)).tolist())
        for j, layer in enumerate(layers):
            pts = [(r["step"], r[key][r[names].index(layer)]) for r in records if layer in r[names]]
            data.append(dict(type="scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], name=layer, mode="lines",
                             line=dict(color=colors[j]),
                             hovertemplate=f"{layer}, step %{{x}}: %{{y:.3g}}<extra></extra>"))
    return _figure(data, title, 300, showlegend=True, legend=dict(orientation="h", y=-0.3), uirevision="keep",
                   xaxis=dict(title=dict(text="step")),
                   yaxis=dict(type="log" if log_y else "linear", range=[0, 1] if key == "dead" else None,
                              tickformat=".0%" if key == "dead" else None))


def internals_heatmap(records: list[dict], layer: str, which: str = "w") -> go.Figure:
    """TensorBoard's distributions: x = step, y = bin, colour = count, for one layer's weights
    (which="w", bins over its fixed range) or gradients (which="g", bins over log10|g|)."""
    rows = [r for r in records if layer in r["layers"]]
    if which == "w":
        lo, hi = rows[-1]["w_range"][rows[-1]["layers"].index(layer)] if rows else (-1.0, 1.0)
        ytitle, title = "weight", f"{layer}: weights over time"
    else:
        (lo, hi), ytitle, title = (rows[-1]["g_range"] if rows else (-10, 0)), "log10 |gradient|", \
            f"{layer}: gradients over time"
    z = np.array([r[f"{which}_hist"][r["layers"].index(layer)] for r in rows], float).T if rows else np.zeros((1, 0))
    centers = lo + (np.arange(len(z)) + 0.5) * (hi - lo) / len(z)
    heat = dict(type="heatmap", x=[r["step"] for r in rows], y=centers, z=np.log1p(z), customdata=z,
                colorscale="Viridis", showscale=False,
                hovertemplate="step %{x}, " + ytitle + " ≈ %{y:.3g}: %{customdata:,.0f}<extra></extra>")
    return _figure([heat], title + " (colour: log count)", 280, uirevision="keep",
                   xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text=ytitle)))


def embedding_scatter(frames: list[tuple[str, np.ndarray]], labels: np.ndarray, index: np.ndarray,
                      classes: tuple[str, ...]) -> go.Figure:
    """2-D projections of the same images at several snapshots, one Plotly frame each, with a slider
    (client-side: scrubbing needs no server round trip). Colour = true class; hover = class and index."""
    colors = sample_colorscale("Turbo", np.linspace(0.05, 0.95, len(classes)).tolist())

    def traces(xy):
        return [dict(type="scattergl", x=xy[labels == c, 0], y=xy[labels == c, 1], mode="markers", name=name,
                     marker=dict(size=5, color=colors[c], opacity=0.75), customdata=index[labels == c],
                     hovertemplate=f"test #%{{customdata}}: {name}<extra></extra>")
                for c, name in enumerate(classes)]
    lim = max(float(np.abs(xy).max()) for _, xy in frames) * 1.05
    steps = [dict(method="animate", label=lab, args=[[lab], dict(mode="immediate", frame=dict(duration=300, redraw=True),
                                                                 transition=dict(duration=250))])
             for lab, _ in frames]
    play = dict(label="▶ play", method="animate", args=[None, dict(frame=dict(duration=700, redraw=True),
                                                                   transition=dict(duration=400), fromcurrent=False)])
    fig = _figure(traces(frames[-1][1]), "Penultimate-layer features of test images, projected to 2-D", 620,
                  showlegend=True, legend=dict(itemsizing="constant"),
                  xaxis=dict(range=[-lim, lim], title=dict(text="PC 1"), zeroline=False),
                  yaxis=dict(range=[-lim, lim], title=dict(text="PC 2"), zeroline=False, scaleanchor="x"),
                  sliders=[dict(active=len(frames) - 1, steps=steps, currentvalue=dict(prefix="snapshot: "),
                                x=0.12, len=0.88, y=-0.1, yanchor="top")],
                  updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.13, xanchor="left", yanchor="top",
                                    buttons=[play])])
    fig.frames = [go.Frame(data=traces(xy), name=lab) for lab, xy in frames]
    return fig
