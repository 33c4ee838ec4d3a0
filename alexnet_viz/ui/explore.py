"""Explore: your image through the network — what it sees, every layer, the prediction, Grad-CAM."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ..activations import (ModelUnavailable, analyze, conv1_filters, conv_layers, from_run, layer_stats, mosaic,
                           pretrained, untrained)
from ..data import ASSETS, CLASSES
from ..images import ImageError, denormalize, open_image
from ..plots import colorize, filter_grid, layer_stats_chart, overlay_heatmap, topk_bars
from ..runs import list_runs
from ..summary import shape_str
from .common import current_arch, owner_id, snapshot_picker

EXAMPLES = ASSETS / "examples"


@st.cache_resource(max_entries=4)
def cached_run_model(path: str, mtime: float, at: str | None = None):
    return from_run(path, at)


@st.cache_resource(max_entries=1)
def cached_pretrained():
    return pretrained()


@st.cache_resource(max_entries=4)
def cached_untrained(cfg):
    return untrained(cfg)


def model_ui(owner: str):
    """The model to look at, or None with a message when it cannot be had."""
    runs = [r for r in list_runs(owners={owner, ""}) if r.state != "damaged"]
    kinds = (["A run trained here"] if runs else []) + ["Untrained (the Architect's network)",
                                                         "ImageNet AlexNet (torchvision)"]
    kind = st.radio("Model", kinds, horizontal=True,
                    help="Compare an untrained network with a trained one to see what training changes.")
    try:
        if kind == "A run trained here":
            r = st.selectbox("Run", runs, format_func=lambda r: f"{r.name} · {r.state} · test acc "
                             + (f"{r.test_acc:.3f}" if r.test_acc is not None else "–"))
            return cached_run_model(r.path, Path(r.path, "weights.pt").stat().st_mtime if
                                    Path(r.path, "weights.pt").exists() else 0.0, snapshot_picker(r.path))
        if kind.startswith("Untrained"):
            return cached_untrained(current_arch())
        return cached_pretrained()
    except ModelUnavailable as e:
        st.warning(f"{e}. The other models still work.")
        return None


def _keep_upload() -> None:
    """An upload (or its removal) by the user: kept in this session only, in memory, never on disk."""
    f = st.session_state.get("upload")
    st.session_state["kept_upload"] = (f.name, f.getvalue()) if f is not None else None


def image_ui() -> tuple[bytes | None, str | None]:
    """(file bytes, true label if known) from upload, camera, test set or examples."""
    tabs = st.tabs(["Upload", "Camera", "Test set", "Examples"])
    with tabs[0]:
        up = st.file_uploader("An image (PNG, JPEG, WebP, GIF, BMP)", type=["png", "jpg", "jpeg", "webp", "gif", "bmp"],
                              key="upload", on_change=_keep_upload)
        kept = st.session_state.get("kept_upload")
        if up is None and kept:  # the uploader forgets its file when the user visits another page
            st.caption(f"Using your earlier upload, {kept[0]}.")
            st.button("Forget it", on_click=st.session_state.pop, args=("kept_upload", None))
    with tabs[1]:
        cam = st.camera_input("Take a photo", key="camera") if st.toggle("Use the camera") else None
    with tabs[2]:
        from .train import manager
        ds = manager().data()
        if ds.is_sample:
            st.caption("Offline: these are the test images of the bundled sample in assets/.")
        i = st.number_input(f"Test image # (0–{len(ds.test_y) - 1})", 0, len(ds.test_y) - 1, 0, key="test_idx")
        use_test = st.checkbox("Use this test image", key="use_test")
        st.image(ds.test_x[i].numpy(), width=112, caption=f"true label: {CLASSES[int(ds.test_y[i])]}")
    with tabs[3]:
        files = sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg"))
        ex = st.selectbox("Example image", files, index=files.index("photo-cat.jpg") if "photo-cat.jpg" in files else 0,
                          key="example")
    if up is not None:
        return up.getvalue(), None
    if kept:
        return kept[1], None
    if cam is not None:
        return cam.getvalue(), None
    if use_test:
        import io
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(ds.test_x[i].numpy()).save(buf, "PNG")
        return buf.getvalue(), CLASSES[int(ds.test_y[i])]
    return (EXAMPLES / ex).read_bytes(), None


def layers_ui(maps) -> None:
    names = list(maps)
    spatial = [n for n in names if maps[n].dim() == 3]
    default = "relu1" if "relu1" in spatial else spatial[0]
    layer = st.select_slider("Layer", spatial, value=default, key="layer")
    t = maps[layer]
    H, W = t.shape[-2:]
    grid, order = mosaic(t, max_channels=min(t.shape[0], max(16, 2_000_000 // (H * W))))  # all, unless huge
    c = st.columns([3, 1])
    c[0].image(colorize(grid, 800), caption=f"{layer}: {shape_str(tuple(t.shape))} — {len(order)} of {t.shape[0]} "
               f"channels, strongest (highest mean) first", width="stretch", clamp=True)
    ch = c[1].selectbox("Enlarge channel", order, key=f"ch-{layer}",
                        format_func=lambda k: f"#{k} (rank {order.index(k) + 1})")
    one = t[ch].float()
    one = (one - one.min()) / (one.max() - one.min()).clamp_min(1e-12)
    c[1].image(colorize(one.numpy(), 256), width="stretch", caption=f"channel {ch}: mean {t[ch].mean():.3f}, "
               f"max {t[ch].max():.3f}, zeros {(t[ch] == 0).float().mean():.0%}")


def page() -> None:
    owner = owner_id()
    st.title("Explore")
    m = model_ui(owner)
    data, truth = image_ui()
    if m is None or data is None:
        return
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
    cls_names = ["predicted class"] + list(m.classes)
    cam_choice = c[2].selectbox("Grad-CAM class", cls_names, key="cam_class")
    cam_class = None if cam_choice == "predicted class" else m.classes.index(cam_choice)
    a = analyze(m, im, invert=invert, cam_layer=cam_layer, cam_class=cam_class)
    seen = denormalize(a.x, m.mean, m.std)
    c = st.columns([1, 1, 2])
    c[0].image(im, caption=f"your image ({im.width}×{im.height})", width="stretch")
    c[1].image(seen, caption=f"what {m.label} receives: {shape_str(tuple(a.x.shape[1:]))}",
               clamp=True)
    c[2].plotly_chart(topk_bars(a.top), width="stretch")
    if truth:
        st.caption(f"True label: **{truth}**")
    st.subheader("Every layer")
    layers_ui(a.maps)
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
