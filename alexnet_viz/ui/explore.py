"""Explore: your image through the network — every layer, one unit's receptive field and arithmetic,
what a channel responds to, the prediction, and where the network looked.

The page draws; the parts live in explore_model (which network), explore_image (which image),
explore_unit (layers, one unit), explore_channel (top images, feature visualization) and the
package's inspect/ (everything computed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from alexnet_viz.architect.summary import shape_str
from alexnet_viz.config import ConfigError
from alexnet_viz.inspect.analysis import analyze, conv1_filters, conv_layers, input_box, knows_only, layer_stats, \
    mosaic, verdict
from alexnet_viz.inspect.attribution import METHODS, attributions, black_image
from alexnet_viz.inspect.choice import Source
from alexnet_viz.inspect.display import scale_box
from alexnet_viz.inspect.images import ImageError, denormalize, display_copy, open_image
from alexnet_viz.inspect.view import image_values
from alexnet_viz.ui import share
from alexnet_viz.ui.common import fragment_rerun, guarded, memory_notice, owner_id, presenter_style, rerun_parts
from alexnet_viz.ui.explore_channel import SMALL, featviz_ui, top_images_ui
from alexnet_viz.ui.explore_image import image_ui, new_image
from alexnet_viz.ui.explore_link import restore_ui, sync_ui, take, write_url
from alexnet_viz.ui.explore_model import compare_ui, model_ui
from alexnet_viz.ui.explore_state import remembered, settle
from alexnet_viz.ui.explore_unit import arithmetic_ui, field_ui, layers_ui
from alexnet_viz.ui.plots import attribution_panels, colorize, filter_grid, layer_stats_chart, overlay_heatmap, topk_bars

UNIT = "explore-unit"  # the fragment of the page that a layer, channel or unit change reruns


def predictions_ui(m, a, truth: str | None, where) -> None:
    where.plotly_chart(topk_bars(a.top, truth if truth in m.classes else None), width="stretch")
    note = knows_only(m)
    if note:
        where.caption(note)
    if truth and truth in m.classes:
        ok, text = verdict(a, m.classes, truth)
        (where.success if ok else where.error)(text)


def attributions_ui(m, a, im) -> str:
    """captum's five methods for the Grad-CAM class, over the user's original image, one colour scale,
    and one of them larger; returns that one's name."""
    cls = m.classes[a.cam_class]
    st.subheader(f"Where the network looked for '{cls}': five attribution methods")
    if st.session_state.get("method") not in METHODS:
        st.session_state["method"] = next(iter(METHODS))
    method = st.radio("Look closer at", list(METHODS), horizontal=True, key="method")
    if m.cfg.input_size > SMALL and not st.toggle("Compute them (10–30 s for a 224-pixel network)", key="attr"):
        return method
    with st.spinner("Integrated Gradients, Occlusion, …"):
        maps = attributions(m.model, a.x, a.cam_class, a.cam_layer, black_image(a.x, m.mean, m.std))
    shown, big = display_copy(im, 320), display_copy(im, 640)
    st.plotly_chart(attribution_panels(np.asarray(shown.convert("RGB")), maps,
                                       scale_box(input_box(m, im.size), im.size, shown.size), cls),
                    width="stretch", key="attributions")
    st.caption(" · ".join(f"**{n}**: {d}" for n, d in METHODS.items())
               + f". Grad-CAM and Guided Grad-CAM at {a.cam_layer}; each map divided by its largest |value|.")
    c = st.columns([2, 1])
    c[0].plotly_chart(attribution_panels(np.asarray(big.convert("RGB")), {method: maps[method]},
                                         scale_box(input_box(m, im.size), im.size, big.size), cls),
                      width="stretch", key="attribution-closer")
    c[1].markdown(f"**{method}**: {METHODS[method]}.")
    return method


def side_by_side(m, a, m2, im, invert, digest: str, layer: str) -> None:
    """The same image and layer through a second model: predictions, maps and Grad-CAM next to each other."""
    cam = a.cam_layer if a.cam_layer in conv_layers(m2.model) else None
    a2 = remembered("analysis2", (m2.model,), (digest, invert, cam),
                    lambda: analyze(m2, im, invert=invert, cam_layer=cam))
    for i, (c, mm, aa) in enumerate(zip(st.columns(2), (m, m2), (a, a2))):
        with c:
            st.markdown(f"**{mm.label}**")
            st.plotly_chart(topk_bars(aa.top), width="stretch", key=f"top-{i}-{mm.label}")
            if layer in aa.maps and aa.maps[layer].dim() == 3:
                grid, _ = mosaic(aa.maps[layer], max_channels=64)
                st.image(colorize(grid, 480), caption=f"{layer}, strongest 64 channels", width="stretch")
            else:
                st.caption(f"this model has no layer {layer}")
            st.image(overlay_heatmap(denormalize(aa.x, mm.mean, mm.std), aa.cam), width="stretch",
                     caption=f"Grad-CAM at {aa.cam_layer} for '{mm.classes[aa.cam_class]}'")


def analysis_ui(m, im, digest: str):
    """The Grad-CAM and invert choices, then the analysis (this session's last ones are remembered)."""
    c = st.columns(3)
    invert = False
    if m.invert:
        choice = c[0].selectbox("Invert brightness", ["auto", "on", "off"], key="invert",
                                help="Fashion-MNIST items are light on black: with 'auto', an image on a light "
                                     "background is inverted for these models.")
        invert = {"auto": None, "on": True, "off": False}[choice]
    convs = conv_layers(m.model)
    take("cam", convs, "cam_layer")
    settle("cam_layer", convs, convs[-1], keep=False)  # another model: its own last conv
    cam_layer = c[1].selectbox("Grad-CAM layer", convs, key="cam_layer")
    classes = ["predicted class"] + list(m.classes)
    take("cls", classes[1:], "cam_class", lambda i: m.classes[i] if i < len(m.classes) else None)
    settle("cam_class", classes, classes[0])
    cam_choice = c[2].selectbox("Grad-CAM class", classes, key="cam_class")
    cam_class = None if cam_choice == "predicted class" else m.classes.index(cam_choice)
    a = remembered("analysis", (m.model,), (digest, invert, cam_layer, cam_class),
                   lambda: analyze(m, im, invert=invert, cam_layer=cam_layer, cam_class=cam_class,
                                   on_wait=memory_notice()))
    return a, invert


def _moved() -> None:
    """The layer, channel or unit changed: only the part that shows them reruns, and the share link with it
    (the image, predictions and attributions above and below do not depend on them)."""
    rerun_parts(UNIT, share.FRAGMENT)


@st.fragment(key=UNIT)
@guarded
def unit_part(m, a, im, view: dict, owner: str, choice, invert, digest: str) -> None:
    """Every layer, one unit, its channel's top images and the side-by-side model: the part of the page a
    slider step reruns (a fragment); the URL follows it at once."""
    layer, ch, row, col = layers_ui(m, a, _moved)
    view.update(layer=layer, channel=ch, row=row, col=col)
    if fragment_rerun():  # on a whole run the page writes the URL once, at its end
        write_url(view)
    st.subheader(f"One unit: {layer}, channel {ch}, row {row}, column {col}")
    field_ui(m, a, im, layer, ch, row, col)
    arithmetic_ui(m, a, layer, ch, row, col)
    c = st.columns([3, 2])
    with c[0]:
        st.markdown(f"**What channel {ch} of {layer} responds to: the 9 test images that excite it most**")
        top_images_ui(m, layer, ch)
    with c[1]:
        st.markdown(f"**An input made to excite unit ({row}, {col})**")
        featviz_ui(m, layer, ch, row, col)

    st.subheader("Trained and untrained, side by side")
    m2 = compare_ui(owner, choice, m)
    if m2 is not None:
        side_by_side(m, a, m2, im, invert, digest, layer)


def page() -> None:
    owner = owner_id()
    restore_ui()
    top = st.columns([3, 1])
    presenter = top[0].toggle("Presenter mode", key="presenter", help="Large type and charts for a projector.")
    presenter_style(presenter)
    st.title("Explore")
    view = {"present": presenter}
    try:
        body(owner, view)
    finally:  # every way out of the page (no image yet, a refused file) still writes the URL
        sync_ui(view)
        with top[1]:
            share.share_ui()


def body(owner: str, view: dict) -> None:
    """The page below its title; `view` collects what the URL keeps, as it is chosen."""
    choice, m = model_ui(owner)
    view.update(model=choice.source.value, run=Path(choice.run).name if choice.run else None,
                snapshot=choice.snapshot)
    src = image_ui()
    ss = st.session_state
    view.update(image_values(ss["source"], ss.get("test_idx"), ss.get("example")))
    if m is None or src is None:
        return
    data, truth = src
    digest = new_image(data)
    try:
        im = open_image(data)
    except ImageError as e:
        st.error(f"That file cannot be used: {e}")
        return
    try:
        a, invert = analysis_ui(m, im, digest)
    except ConfigError as e:  # OverBudget: refused before anything is allocated
        st.error(str(e))
        return
    view.update(cam=a.cam_layer, cls=None if ss.get("cam_class") == "predicted class" else a.cam_class)
    seen = denormalize(a.x, m.mean, m.std)
    c = st.columns([1, 1, 2])
    c[0].image(display_copy(im, 480), caption=f"your image ({im.width}×{im.height})", width="stretch")
    c[1].image(seen, caption=f"what {m.label} receives: {shape_str(tuple(a.x.shape[1:]))}"
               + (" (resized to 256, centre 224 cropped)" if m.transforms is not None else ""), clamp=True)
    predictions_ui(m, a, truth, c[2])

    st.subheader("Every layer")
    unit_part(m, a, im, view, owner, choice, invert, digest)

    view["method"] = attributions_ui(m, a, im)
    st.plotly_chart(layer_stats_chart(layer_stats(a.maps)), width="stretch")
    c = st.columns(2)
    with c[0]:
        st.subheader("Grad-CAM")
        st.image(overlay_heatmap(seen, a.cam), width="stretch",
                 caption=f"where {a.cam_layer} looked for '{m.classes[a.cam_class]}' (red = most)")
    with c[1]:
        st.subheader("conv1 filters")
        f = conv1_filters(m.model)
        st.image(filter_grid(f, cols=12, scale=max(1, 48 // f.shape[1])), width="stretch")
        st.caption(f"{len(f)} learned filters of {f.shape[1]}×{f.shape[2]} px"
                   + (" (untrained: noise)" if choice.source is Source.UNTRAINED else ""))
