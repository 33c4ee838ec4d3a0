"""Explore: your image through the network — every layer, one unit's receptive field and arithmetic,
what a channel responds to, the prediction, and where the network looked."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from alexnet_viz.inspect.analysis import (ModelUnavailable, analyze, conv1_filters, conv_layers, from_run, input_box, knows_only, layer_stats, mosaic, pretrained, untrained, verdict)
from alexnet_viz.config import ConfigError
from alexnet_viz.data import ASSETS, CLASSES
from alexnet_viz.inspect.modelcache import ModelCache
from alexnet_viz.inspect.images import ImageError, denormalize, display_copy, open_image
from alexnet_viz.inspect.arithmetic import explain_unit
from alexnet_viz.inspect.attribution import METHODS, attributions
from alexnet_viz.inspect.featviz import visualize_channel
from alexnet_viz.inspect.receptive import effective_field, unit_box
from alexnet_viz.inspect.top import index_layer, pass_size, top_images
from alexnet_viz.ui.plots import (attribution_panels, channel_heatmap, colorize, field_overlay, filter_grid, kernel_products, layer_stats_chart, overlay_heatmap, topk_bars)
from alexnet_viz.runs.store import best_first, has_weights, list_runs
from alexnet_viz.architect.summary import describe_layers, shape_str, summarize
from alexnet_viz.ui.common import current_arch, manager, owner_id, snapshot_picker

EXAMPLES = ASSETS / "examples"
SOURCES = ("Upload", "Camera", "Test set", "Example")
SMALL = 64  # input side up to which top-9 images and feature visualizations start by themselves (seconds)


@st.cache_resource
def model_cache() -> ModelCache:
    """Models shared by every session, within a cap on their total bytes (modelcache.py)."""
    return ModelCache()


def cached_run_model(path: str, mtime: float, at: str | None = None):
    return model_cache().get(("run", path, mtime, at), lambda: from_run(path, at))


def cached_pretrained():
    return model_cache().get(("pretrained",), pretrained)


def cached_untrained(cfg):
    return model_cache().get(("untrained", cfg), lambda: untrained(cfg))


def _run_label(r) -> str:
    acc = f"test acc {r.test_acc:.3f}" if r.test_acc is not None else "no test accuracy yet"
    return f"{r.name} · {r.state} · " + (acc if has_weights(r) else "no weights saved yet")


def _load_run(r, at: str | None = None):
    if not has_weights(r):
        raise ModelUnavailable(f"{r.name}: no weights saved yet (they are written at each epoch end)")
    return cached_run_model(r.path, (Path(r.path) / "weights.pt").stat().st_mtime, at)


def model_ui(owner: str):
    """The model to look at (the best finished run by default), or None with a message."""
    runs = best_first([r for r in list_runs(owners={owner, ""}) if r.state != "damaged"])
    kinds = (["A run trained here"] if runs else []) + ["Untrained (the Architect's network)",
                                                         "ImageNet AlexNet (torchvision)"]
    kind = st.radio("Model", kinds, horizontal=True, key="model_kind",
                    help="Compare an untrained network with a trained one to see what training changes.")
    try:
        if kind == "A run trained here":
            r = st.selectbox("Run", runs, format_func=_run_label, key="run",
                             help="Finished runs first, the best test accuracy first.")
            return _load_run(r, snapshot_picker(r.path))
        if kind.startswith("Untrained"):
            return cached_untrained(current_arch())
        return cached_pretrained()
    except (ModelUnavailable, ConfigError) as e:  # ConfigError: OverBudget, a network too big for this machine
        st.warning(f"{e}. The other models still work.")
        return None


def compare_ui(owner: str, m):
    """A second model for the same image and layer: the untrained network or another run."""
    runs = [r for r in best_first(list_runs(owners={owner, ""})) if has_weights(r) and r.state != "damaged"]
    looking_at_untrained = st.session_state.get("model_kind", "").startswith("Untrained")  # model_ui's choice
    kinds = (["Nothing"] + ([] if looking_at_untrained else ["The same network, untrained"])
             + (["A run trained here" if looking_at_untrained else "Another run"] if runs else []))
    if len(kinds) == 1:
        st.caption("Train a run of this network on the Train page to see it here beside the untrained one.")
        return None
    kind = st.radio("Side by side with", kinds, horizontal=True, key="compare_kind")
    try:
        if kind == "The same network, untrained":
            return cached_untrained(m.cfg)
        if kind in ("Another run", "A run trained here"):
            return _load_run(st.selectbox("Other run", runs, format_func=_run_label, key="compare_run"))
    except (ModelUnavailable, ConfigError) as e:
        st.warning(str(e))
    return None


def _keep_upload() -> None:
    """An upload (or its removal) by the user: kept in this session only, in memory, never on disk."""
    f = st.session_state.get("upload")
    st.session_state["kept_upload"] = (f.name, f.getvalue()) if f is not None else None


def image_ui() -> tuple[bytes, str | None] | None:
    """(file bytes, true label if known) from the one source chosen; None until there is one."""
    # the choice outlives a visit to another page (Streamlit forgets the state of widgets not drawn)
    source = st.radio("Image", SOURCES, index=SOURCES.index(st.session_state.get("kept_source", "Example")),
                      horizontal=True, key="source",
                      on_change=lambda: st.session_state.update(kept_source=st.session_state["source"]))
    if source == "Upload":
        # every file type is let through, so that a PDF or a TIFF gets our message (and clears the last
        # results) instead of the uploader's silent refusal
        up = st.file_uploader("An image (PNG, JPEG, WebP, GIF, BMP)", key="upload", on_change=_keep_upload)
        kept = st.session_state.get("kept_upload")
        if up is not None:
            return up.getvalue(), None
        if kept:  # the uploader forgets its file when the user visits another page
            st.caption(f"Using your earlier upload, {kept[0]}.")
            st.button("Forget it", on_click=st.session_state.pop, args=("kept_upload", None))
            return kept[1], None
        st.info("Choose an image file to look at.")
        return None
    if source == "Camera":
        cam = st.camera_input("Take a photo", key="camera")
        if cam is None:
            st.info("Take a photo to look at.")
            return None
        return cam.getvalue(), None
    if source == "Test set":
        ds = manager().data()
        if ds.is_sample:
            st.caption("Offline: these are the test images of the bundled sample in alexnet_viz/assets/.")
        i = st.number_input(f"Test image # (0–{len(ds.test_y) - 1})", 0, len(ds.test_y) - 1, 0, key="test_idx")
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(ds.test_x[i].numpy()).save(buf, "PNG")
        return buf.getvalue(), CLASSES[int(ds.test_y[i])]
    files = sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg"))
    ex = st.selectbox("Example image", files, index=files.index("photo-cat.jpg") if "photo-cat.jpg" in files else 0,
                      key="example")
    return (EXAMPLES / ex).read_bytes(), None


def _new_image(data: bytes) -> None:
    """A different image: what was chosen for the last one (Grad-CAM class, clicked unit) starts over."""
    digest = hashlib.sha1(data).hexdigest()
    if st.session_state.get("image_digest") != digest:
        st.session_state["image_digest"] = digest
        for k in ("cam_class", "unit_for"):
            st.session_state.pop(k, None)


def predictions_ui(m, a, truth: str | None, where) -> None:
    where.plotly_chart(topk_bars(a.top, truth if truth in m.classes else None), width="stretch")
    note = knows_only(m)
    if note:
        where.caption(note)
    if truth and truth in m.classes:
        ok, text = verdict(a, m.classes, truth)
        (where.success if ok else where.error)(text)


def layers_ui(m, a) -> tuple[str, int, int, int]:
    """The chosen layer's maps beside the sentence that explains it; returns (layer, channel, row, col)."""
    maps = a.maps
    spatial = [n for n in maps if maps[n].dim() == 3]
    default = "relu1" if "relu1" in spatial else spatial[0]
    layer = st.select_slider("Layer", spatial, value=default, key="layer")
    sentences = dict(zip([r.name for r in summarize(m.cfg).rows], describe_layers(summarize(m.cfg))))
    st.info(sentences.get(layer, layer))
    t = maps[layer]
    H, W = t.shape[-2:]
    grid, order = mosaic(t, max_channels=min(t.shape[0], max(16, 2_000_000 // (H * W))))  # all, unless huge
    c = st.columns([3, 2])
    c[0].image(colorize(grid, 800), caption=f"{layer}: {shape_str(tuple(t.shape))} — {len(order)} of {t.shape[0]} "
               f"channels, strongest (highest mean) first", width="stretch", clamp=True)
    with c[1]:
        ch = st.selectbox("Enlarge channel", order, key=f"ch-{layer}",
                          format_func=lambda k: f"#{k} (rank {order.index(k) + 1})")
        row, col = unit_picker(t[ch].float().numpy(), layer, ch)
        st.caption(f"channel {ch}: mean {t[ch].mean():.3f}, max {t[ch].max():.3f}, "
                   f"zeros {(t[ch] == 0).float().mean():.0%}. Click a unit (or set its row and column) "
                   f"to see where it looks and how its value was computed.")
    return layer, ch, row, col


def unit_picker(a: np.ndarray, layer: str, ch: int) -> tuple[int, int]:
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
                    on_select="rerun", selection_mode="points", width="stretch")
    c = st.columns(2)
    row = c[0].number_input("Unit row", 0, H - 1, key="unit_row")
    col = c[1].number_input("Unit column", 0, W - 1, key="unit_col")
    return int(row), int(col)


def field_ui(m, a, im, layer: str, ch: int, row: int, col: int) -> None:
    """The unit's receptive field on the user's own image: the box, and the gradient map."""
    f = unit_box(m.model, layer, row, col)
    erf = effective_field(m.model, a.x, layer, ch, row, col)
    shown = display_copy(im, 480)
    k = shown.width / im.width, shown.height / im.height
    x0, y0, x1, y1 = input_box(m, im.size)
    cover = (x0 * k[0], y0 * k[1], x1 * k[0], y1 * k[1])
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


def arithmetic_ui(m, a, layer: str, ch: int, row: int, col: int) -> None:
    """How the clicked unit's value was computed, with the real numbers, adding up."""
    u = explain_unit(m.model, a.x, a.maps, layer, ch, row, col)
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
    rows = [{"term": f"input channel {t.channel}" if cm.input_name != "input" or len(cm.terms) > 1 else "pixels",
             "what": f"Σ patch × kernel ({t.patch.shape[0]}×{t.patch.shape[1]})", "value": f"{t.total:+.4f}"}
            for t in cm.terms]
    if cm.others:
        rows.append({"term": f"the other {cm.others} input channels", "what": "Σ patch × kernel, together",
                     "value": f"{cm.rest:+.4f}"})
    rows.append({"term": "bias", "what": f"{cm.layer}.bias[{ch}]", "value": f"{cm.bias:+.4f}"})
    rows.append({"term": f"= {cm.layer}", "what": "sum (before the activation)", "value": f"{cm.pre:.4f}"})
    for s in u.steps:
        rows.append({"term": f"→ {s.layer}", "what": s.formula, "value": f"{s.value:.4f}"})
    if u.pool:
        rows.append({"term": f"→ {u.pool.layer}", "what": f"{u.pool.kind} of the window", "value": f"{u.pool.value:.4f}"})
    where = "the input" if cm.input_name == "input" else f"{cm.input_name}'s maps"
    st.markdown(f"{cm.layer}, filter {ch}, at row {cm.row}, column {cm.col}: its kernel lies on {where} at rows "
                f"{cm.origin[0]}–{cm.origin[0] + cm.terms[0].patch.shape[0] - 1}, columns {cm.origin[1]}–"
                f"{cm.origin[1] + cm.terms[0].patch.shape[1] - 1} (negative or past the edge: zero padding). "
                + (f"Shown: the {len(cm.terms)} input channels that contribute most." if cm.others else ""))
    st.dataframe(rows, hide_index=True, width="stretch")
    st.plotly_chart(kernel_products([(f"ch {t.channel}", t.patch, t.kernel, t.products) for t in cm.terms]),
                    width="stretch", key="products")


def top_images_ui(m, layer: str, ch: int) -> None:
    """The 9 test images that excite this channel most, each cropped to the receptive field."""
    ds = manager().data()
    n, _ = pass_size(m.model, len(ds.test_y), layer)
    ix = index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std, only_cached=True)
    if ix is None:
        if m.cfg.input_size > SMALL and not st.button(f"Find them: one pass over {n:,} test images up to {layer} "
                                                      f"(up to a minute on a laptop CPU)", key="find_top"):
            return
        bar = st.progress(0.0, text=f"{layer} over {n:,} test images")
        ix = index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std,
                         progress=lambda f: bar.progress(f, text=f"{layer} over {n:,} test images: {f:.0%}"))
        bar.empty()
    tops = top_images(m.model, ix, ds.test_x, ds.test_y, ch)
    seen = f"all {ix.total:,}" if len(ix.images) == ix.total else f"{len(ix.images):,} of the {ix.total:,} (class-balanced)"
    st.caption(f"Strongest of {seen} test images{' (the bundled sample)' if ds.is_sample else ''}, each cropped "
               f"to the receptive field around its strongest unit.")
    cols = st.columns(9)
    for c, t in zip(cols, tops):
        c.image(np.kron(t.crop, np.ones((max(1, 96 // t.crop.shape[0]),) * 2, np.uint8)), width="stretch",
                caption=f"#{t.index} {CLASSES[t.label] if t.label < len(CLASSES) else t.label}: {t.value:.2f}")


def featviz_ui(m, layer: str, ch: int) -> None:
    """An input optimized to excite the channel (seeded, cached)."""
    big = m.cfg.input_size > SMALL
    steps = 32 if big else 64
    if big and not st.toggle("Compute it (about 10 s for a 224-pixel network)", key=f"fv-{layer}-{ch}"):
        return
    with st.spinner("Gradient ascent on the input…"):
        v = visualize_channel(m.model, layer, ch, m.mean, m.std, steps=steps)
    a = v.image.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    a = ((a - lo) / (hi - lo) * 255 if hi > lo else a).astype(np.uint8)   # often near-white: stretch to show it
    k = max(1, 224 // a.shape[0])
    st.image(np.kron(a, np.ones((k, k) + (1,) * (a.ndim - 2), np.uint8)), width=224)
    st.caption(f"{steps} steps of gradient ascent with jitter and blur, seed 0: the channel's mean went from "
               f"{v.start:.3f} (faint noise) to {v.reached:.3f}. Contrast stretched for display "
               f"(pixels {lo:.0f}–{hi:.0f} shown as 0–255).")


def attributions_ui(m, a, im) -> None:
    """captum's five methods for the Grad-CAM class, over the user's original image, one colour scale."""
    cls = m.classes[a.cam_class]
    st.subheader(f"Where the network looked for '{cls}': five attribution methods")
    if m.cfg.input_size > SMALL and not st.toggle("Compute them (10–30 s for a 224-pixel network)", key="attr"):
        return
    with st.spinner("Integrated Gradients, Occlusion, …"):
        black = ((torch.zeros_like(a.x) - torch.tensor(m.mean).view(1, -1, 1, 1))
                 / torch.tensor(m.std).view(1, -1, 1, 1))
        maps = attributions(m.model, a.x, a.cam_class, a.cam_layer, black)
    shown = display_copy(im, 320)
    k = shown.width / im.width, shown.height / im.height
    x0, y0, x1, y1 = input_box(m, im.size)
    st.plotly_chart(attribution_panels(np.asarray(shown.convert("RGB")), maps,
                                       (x0 * k[0], y0 * k[1], x1 * k[0], y1 * k[1]), cls),
                    width="stretch", key="attributions")
    st.caption(" · ".join(f"**{n}**: {d}" for n, d in METHODS.items())
               + f". Grad-CAM and Guided Grad-CAM at {a.cam_layer}; each map divided by its largest |value|.")


def side_by_side(m, a, m2, im, invert, layer: str, cam_layer: str) -> None:
    """The same image and layer through a second model: predictions, maps and Grad-CAM next to each other."""
    a2 = analyze(m2, im, invert=invert, cam_layer=cam_layer if cam_layer in conv_layers(m2.model) else None)
    cols = st.columns(2)
    for i, (c, mm, aa) in enumerate(zip(cols, (m, m2), (a, a2))):
        with c:
            st.markdown(f"**{mm.label}**")
            st.plotly_chart(topk_bars(aa.top), width="stretch", key=f"top-{i}-{mm.label}")
            if layer in aa.maps and aa.maps[layer].dim() == 3:
                grid, _ = mosaic(aa.maps[layer], max_channels=64)
                st.image(colorize(grid, 480), caption=f"{layer}, strongest 64 channels", width="stretch")
            else:
                st.caption(f"this model has no layer {layer}")
            seen = denormalize(aa.x, mm.mean, mm.std)
            st.image(overlay_heatmap(seen, aa.cam), width="stretch",
                     caption=f"Grad-CAM at {aa.cam_layer} for '{mm.classes[aa.cam_class]}'")


def page() -> None:
    owner = owner_id()
    st.title("Explore")
    m = model_ui(owner)
    src = image_ui()
    if m is None or src is None:
        return
    data, truth = src
    _new_image(data)
    try:
        im = open_image(data)
    except ImageError as e:
        st.error(f"That file cannot be used: {e}")
        return
    c = st.columns(3)
    invert = False
    if m.invert:
        choice = c[0].selectbox("Invert brightness", ["auto", "on", "off"], key="invert",
                                help="Fashion-MNIST items are light on black: with 'auto', an image on a light "
                                     "background is inverted for these models.")
        invert = {"auto": None, "on": True, "off": False}[choice]
    convs = conv_layers(m.model)
    cam_layer = c[1].selectbox("Grad-CAM layer", convs, index=len(convs) - 1, key="cam_layer")
    cam_choice = c[2].selectbox("Grad-CAM class", ["predicted class"] + list(m.classes), key="cam_class")
    cam_class = None if cam_choice == "predicted class" else m.classes.index(cam_choice)
    try:
        a = analyze(m, im, invert=invert, cam_layer=cam_layer, cam_class=cam_class)
    except ConfigError as e:  # OverBudget: refused before anything is allocated
        st.error(str(e))
        return
    seen = denormalize(a.x, m.mean, m.std)
    c = st.columns([1, 1, 2])
    c[0].image(display_copy(im, 480), caption=f"your image ({im.width}×{im.height})", width="stretch")
    c[1].image(seen, caption=f"what {m.label} receives: {shape_str(tuple(a.x.shape[1:]))}"
               + (" (resized to 256, centre 224 cropped)" if m.transforms is not None else ""), clamp=True)
    predictions_ui(m, a, truth, c[2])

    st.subheader("Every layer")
    layer, ch, row, col = layers_ui(m, a)
    st.subheader(f"One unit: {layer}, channel {ch}, row {row}, column {col}")
    field_ui(m, a, im, layer, ch, row, col)
    arithmetic_ui(m, a, layer, ch, row, col)
    c = st.columns([3, 1])
    with c[0]:
        st.markdown(f"**What channel {ch} of {layer} responds to: the 9 test images that excite it most**")
        top_images_ui(m, layer, ch)
    with c[1]:
        st.markdown("**An input made to excite it**")
        featviz_ui(m, layer, ch)

    st.subheader("Trained and untrained, side by side")
    m2 = compare_ui(owner, m)
    if m2 is not None:
        side_by_side(m, a, m2, im, invert, layer, cam_layer)

    attributions_ui(m, a, im)
    st.plotly_chart(layer_stats_chart(layer_stats(a.maps)), width="stretch")
    c = st.columns(2)
    with c[0]:
        st.subheader("Grad-CAM")
        st.image(overlay_heatmap(seen, a.cam), width="stretch",
                 caption=f"where {cam_layer} looked for '{m.classes[a.cam_class]}' (red = most)")
    with c[1]:
        st.subheader("conv1 filters")
        f = conv1_filters(m.model)
        st.image(filter_grid(f, cols=12, scale=max(1, 48 // f.shape[1])), width="stretch")
        st.caption(f"{len(f)} learned filters of {f.shape[1]}×{f.shape[2]} px"
                   + (" (untrained: noise)" if m.label.startswith("untrained") else ""))
