"""Explore's layers and one unit: every layer's maps, a clickable channel, the unit's receptive
field on the user's image and the arithmetic that made its value."""
from __future__ import annotations

from typing import Callable

import numpy as np
import streamlit as st

from alexnet_viz.architect.summary import shape_str
from alexnet_viz.inspect.analysis import Analysis, Loaded, input_box, mosaic
from alexnet_viz.inspect.arithmetic import explain_unit, sum_rows
from alexnet_viz.inspect.display import default_layer, layer_sentences, mosaic_channels, scale_box, spatial_layers
from alexnet_viz.inspect.images import denormalize, display_copy
from alexnet_viz.inspect.receptive import effective_field, unit_box
from alexnet_viz.ui.explore_link import take
from alexnet_viz.ui.explore_state import remembered, settle
from alexnet_viz.ui.plots import channel_heatmap, colorize, field_overlay, kernel_products


def layers_ui(m: Loaded, a: Analysis, moved: Callable[[], None]) -> tuple[str, int, int, int]:
    """The chosen layer's maps beside the sentence that explains it; returns (layer, channel, row, col).
    `moved`: called when the layer, channel or unit is changed (before the rerun it causes)."""
    layers = spatial_layers(a.maps)
    take("layer", layers, "layer")
    settle("layer", layers, default_layer(layers))
    layer = st.select_slider("Layer", layers, key="layer", on_change=moved)
    st.info(layer_sentences(m.cfg).get(layer, layer))
    t = a.maps[layer]
    grid, order = mosaic(t, max_channels=mosaic_channels(tuple(t.shape)))
    c = st.columns([3, 2])
    c[0].image(colorize(grid, 800), caption=f"{layer}: {shape_str(tuple(t.shape))} — {len(order)} of {t.shape[0]} "
               f"channels, strongest (highest mean) first", width="stretch", clamp=True)
    with c[1]:
        take("channel", order, f"ch-{layer}")
        settle(f"ch-{layer}", order, order[0])
        ch = st.selectbox("Enlarge channel", order, key=f"ch-{layer}",
                          format_func=lambda k: f"#{k} (rank {order.index(k) + 1})", on_change=moved)
        row, col = unit_picker(t[ch].float().numpy(), layer, ch, moved)
        st.caption(f"channel {ch}: mean {t[ch].mean():.3f}, max {t[ch].max():.3f}, "
                   f"zeros {(t[ch] == 0).float().mean():.0%}. Click a unit (or set its row and column) "
                   f"to see where it looks and how its value was computed.")
    return layer, ch, row, col


def unit_picker(a: np.ndarray, layer: str, ch: int, moved: Callable[[], None]) -> tuple[int, int]:
    """The enlarged channel as a clickable heat map, with row/column inputs that follow the click."""
    H, W = a.shape
    ident = (st.session_state.get("image_digest"), layer, ch)
    # a new image, layer or channel (or back from another page, which drops widget state): its strongest unit
    if st.session_state.get("unit_for") != ident or "unit_row" not in st.session_state \
            or "unit_col" not in st.session_state:
        st.session_state["unit_for"] = ident
        r, c = np.unravel_index(int(a.argmax()), a.shape)
        st.session_state["unit_row"], st.session_state["unit_col"] = int(r), int(c)
        st.session_state.pop("last_pick", None)
    for name, side in (("row", H), ("col", W)):
        take(name, range(side), f"unit_{name}")
    key = f"pick-{layer}-{ch}"
    event = st.session_state.get(key)
    points = [p for p in (event or {}).get("selection", {}).get("points", []) if "x" in p and "y" in p]
    if points:
        pick = (int(round(points[-1]["y"])), int(round(points[-1]["x"])))
        if pick != st.session_state.get("last_pick") and 0 <= pick[0] < H and 0 <= pick[1] < W:
            st.session_state["last_pick"] = pick
            st.session_state["unit_row"], st.session_state["unit_col"] = pick
    st.session_state["unit_row"] = min(int(st.session_state["unit_row"]), H - 1)
    st.session_state["unit_col"] = min(int(st.session_state["unit_col"]), W - 1)
    sel = (st.session_state["unit_row"], st.session_state["unit_col"])
    st.plotly_chart(channel_heatmap(a, sel, f"{layer}, channel {ch} ({H}×{W}): click a unit"), key=key,
                    on_select=moved, selection_mode="points", width="stretch")
    c = st.columns(2)
    row = c[0].number_input("Unit row", 0, H - 1, key="unit_row", on_change=moved)
    col = c[1].number_input("Unit column", 0, W - 1, key="unit_col", on_change=moved)
    return int(row), int(col)


def field_ui(m: Loaded, a: Analysis, im, layer: str, ch: int, row: int, col: int) -> None:
    """The unit's receptive field on the user's own image: the box, and the gradient map."""
    f = unit_box(m.model, layer, row, col)
    erf = remembered("field", (m.model, a), (layer, ch, row, col),
                     lambda: effective_field(m.model, a.x, layer, ch, row, col))
    shown = display_copy(im, 480)
    cover = scale_box(input_box(m, im.size), im.size, shown.size)
    box = (f.clipped.top, f.clipped.left, f.clipped.bottom, f.clipped.right)
    c = st.columns(2)
    arr = np.asarray(shown.convert("RGB"))
    c[0].image(field_overlay(arr, erf, box, cover, m.cfg.input_size), width="stretch",
               caption="on your image: the receptive field (red box) and |∂unit/∂input| (heat)")
    seen = denormalize(a.x, m.mean, m.std)
    c[1].image(field_overlay(seen, erf, box, (0, 0, seen.shape[1], seen.shape[0]), m.cfg.input_size), width="stretch",
               caption=f"what the network receives ({m.cfg.input_size}×{m.cfg.input_size})")
    e = f.exact
    clip = "" if e == f.clipped else (f"; it reaches past the image's edge into the zero padding, so only "
                                       f"{f.clipped.height}×{f.clipped.width} of it exists")
    st.markdown(f"**Receptive field** of {layer} unit (row {row}, column {col}): input rows {e.top}–{e.bottom}, "
                f"columns {e.left}–{e.right} ({e.height}×{e.width} px){clip}. "
                + ("Its gradient is zero everywhere: the unit is 0 after ReLU here, so no pixel moves it."
                   if not erf.any() else
                   f"The heat shows how much each pixel moves it: {np.count_nonzero(erf):,} pixels do."))


def arithmetic_ui(m: Loaded, a: Analysis, layer: str, ch: int, row: int, col: int) -> None:
    """How the clicked unit's value was computed, with the real numbers, adding up."""
    u = remembered("arithmetic", (m.model, a), (layer, ch, row, col),
                   lambda: explain_unit(m.model, a.x, a.maps, layer, ch, row, col))
    st.markdown(f"**How {layer}[{ch}, {row}, {col}] = {u.value:.4f} was computed**")
    if u.pool:
        p = u.pool
        st.markdown(f"{p.layer} takes the {p.kind} of a {p.window.shape[0]}×{p.window.shape[1]} window of the "
                    f"previous map (rows {p.origin[0]}–{p.origin[0] + p.window.shape[0] - 1}, columns "
                    f"{p.origin[1]}–{p.origin[1] + p.window.shape[1] - 1}): "
                    + (f"the winner is row {p.winner[0]}, column {p.winner[1]} with {p.value:.4f}." if p.kind == "max"
                       else f"their mean is {p.value:.4f}; below, the strongest of them, row {p.winner[0]}, "
                            f"column {p.winner[1]}."))
        st.dataframe(np.round(p.window, 4), hide_index=False)
    cm = u.conv
    if cm is None:
        return
    rows = sum_rows(u)
    where = "the input" if cm.input_name == "input" else f"{cm.input_name}'s maps"
    st.markdown(f"{cm.layer}, filter {ch}, at row {cm.row}, column {cm.col}: its kernel lies on {where} at rows "
                f"{cm.origin[0]}–{cm.origin[0] + cm.terms[0].patch.shape[0] - 1}, columns {cm.origin[1]}–"
                f"{cm.origin[1] + cm.terms[0].patch.shape[1] - 1} (negative or past the edge: zero padding). "
                + (f"Shown: the {len(cm.terms)} input channels that contribute most." if cm.others else ""))
    st.dataframe(rows, hide_index=True, width="stretch")
    st.plotly_chart(kernel_products([(f"ch {t.channel}", t.patch, t.kernel, t.products) for t in cm.terms]),
                    width="stretch", key="products")
