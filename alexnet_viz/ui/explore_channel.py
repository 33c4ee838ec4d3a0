"""Explore's channel: the 9 test images that excite it most (found in the background, never in the
path of a slider step), and an input made to excite one of its units, beside its kernel."""
from __future__ import annotations

import hashlib

import streamlit as st

from alexnet_viz.data import CLASSES
from alexnet_viz.inspect.analysis import Loaded
from alexnet_viz.inspect.display import enlarge, stretch_contrast
from alexnet_viz.inspect.featviz import kernel_of, visualize_unit
from alexnet_viz.inspect.background import Background, Job
from alexnet_viz.inspect.top import framed, index_layer, pass_size, top_images
from alexnet_viz.ui.common import manager

SMALL = 64  # input side up to which top-9 images and feature visualizations start by themselves (seconds)


@st.cache_resource
def background() -> Background:
    """Slow work for every session (top-9 passes, feature visualizations), one at a time, in a thread."""
    return Background()


def _label(k: int) -> str:
    return CLASSES[k] if k < len(CLASSES) else str(k)


@st.fragment(run_every=1.0)
def _waiting(job: Job) -> None:
    """A background job's progress; the page redraws itself once it is done."""
    job.touch()
    if job.ready:
        st.rerun()
    st.progress(job.done, text=f"{job.status} in the background: {job.done:.0%}. The rest of the page keeps working.")


def _asked(model, key, what: str, auto: bool, button: str, work, *args, **kwargs):
    """The result of work(*args) for (model, key): at once when done, else None after starting it in the
    background (by itself when `auto`, else on a click) and showing its progress."""
    job = background().find(model, key)
    if job is None or job.future.cancelled():
        if not auto and not st.button(button, key="ask-" + hashlib.sha1(repr(key).encode()).hexdigest()[:12]):
            return None
        job = background().start(model, key, what, work, *args, **kwargs)
    if not job.ready:
        _waiting(job)
        return None
    if job.error is not None:
        st.warning(f"That failed ({job.error}). Ask again to retry.")
        return None
    return job.future.result()


def top_images_ui(m: Loaded, layer: str, ch: int) -> None:
    """The 9 test images that excite this channel most, each enlarged, its unit's field boxed in red."""
    ds = manager().data()
    ix = index_layer(m.model, ds.test_x, ds.test_y, layer, m.mean, m.std, only_cached=True)
    if ix is None:
        n, _ = pass_size(m.model, len(ds.test_y), layer)
        ix = _asked(m.model, ("top", layer, ds.source, m.mean, m.std), f"Finding them: {layer} over {n:,} test images",
                    m.cfg.input_size <= SMALL,
                    f"Find them: one pass over {n:,} test images up to {layer} (up to a minute on a laptop CPU)",
                    index_layer, m.model, ds.test_x, ds.test_y, layer, m.mean, m.std)
        if ix is None:
            return
    tops = top_images(m.model, ix, ds.test_x, ds.test_y, ch)
    seen = f"all {ix.total:,}" if len(ix.images) == ix.total else f"{len(ix.images):,} of the {ix.total:,} (class-balanced)"
    st.caption(f"Strongest of {seen} test images{' (the bundled sample)' if ds.is_sample else ''}: each shown "
               f"around its strongest unit, the unit's receptive field in red.")
    cols = st.columns(9)
    for c, t in zip(cols, tops):
        c.image(framed(t), width="stretch", caption=f"#{t.index} {_label(t.label)}: {t.value:.2f}")


def featviz_ui(m: Loaded, layer: str, ch: int, row: int, col: int) -> None:
    """An input optimized to excite unit (row, col) of the channel (seeded, cached), cropped to its
    receptive field, beside the kernel that makes the channel."""
    steps = 64 if m.cfg.input_size <= SMALL else 32
    v = _asked(m.model, ("featviz", layer, ch, row, col, m.mean, m.std, steps),
               f"Gradient ascent on the input for {layer}[{ch}, {row}, {col}]", m.cfg.input_size <= SMALL,
               f"Compute it for unit (row {row}, column {col}) (about 10 s for a 224-pixel network)",
               visualize_unit, m.model, layer, ch, m.mean, m.std, row=row, col=col, steps=steps)
    if v is None:
        return
    crop, lo, hi = stretch_contrast(v.crop)
    k = kernel_of(m.model, layer, ch)
    c = st.columns(2)
    c[0].image(enlarge(crop, 160), width="stretch",
               caption=f"the input, inside the unit's {v.field.height}×{v.field.width} field")
    c[1].image(enlarge((k.weights * 255).astype("uint8"), 160), width="stretch",
               caption=f"{k.conv}'s kernel for channel {ch}" + ("" if k.input_channel is None else
                                                                f" (its slice on input map {k.input_channel} of "
                                                                f"{k.inputs}, the strongest)"))
    st.caption(f"{steps} steps of gradient ascent on unit (row {v.row}, column {v.col}) with jitter and blur, "
               f"seed 0: its value went from {v.start:.3f} (faint noise) to {v.reached:.3f}. Contrast stretched "
               f"for display (pixels {lo}–{hi} shown as 0–255).")
