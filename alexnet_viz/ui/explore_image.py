"""Explore's image: one source at a time (upload, camera, the test set, the bundled examples)."""
from __future__ import annotations

import hashlib

import streamlit as st

from alexnet_viz.data import ASSETS, CLASSES
from alexnet_viz.inspect.images import encode_png
from alexnet_viz.ui.common import manager

EXAMPLES = ASSETS / "examples"
SOURCES = ("Upload", "Camera", "Test set", "Example")
DEFAULT_EXAMPLE = "photo-cat.jpg"
WANTS_UPLOAD = "explore_link_upload"  # a link to a view of an upload (which stays with its owner)


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg"))


def _keep_upload() -> None:
    """An upload (or its removal) by the user: kept in this session only, in memory, never on disk."""
    f = st.session_state.get("upload")
    st.session_state["kept_upload"] = (f.name, f.getvalue()) if f is not None else None


def image_ui() -> tuple[bytes, str | None] | None:
    """(file bytes, true label if known) from the one source chosen; None until there is one."""
    # the choice outlives a visit to another page (Streamlit forgets the state of widgets not drawn)
    if st.session_state.get("source") not in SOURCES:
        st.session_state["source"] = st.session_state.get("kept_source", "Example")
    source = st.radio("Image", SOURCES, horizontal=True, key="source",
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
        st.info("This link was made with an uploaded image, which stays with whoever uploaded it: upload an image "
                "of your own to see this view." if st.session_state.get(WANTS_UPLOAD) else
                "Choose an image file to look at.")
        return None
    if source == "Camera":
        cam = st.camera_input("Take a photo", key="camera")
        if cam is None:
            st.info("This link was made with a camera photo, which stays with whoever took it: take one of your own."
                    if st.session_state.get(WANTS_UPLOAD) else "Take a photo to look at.")
            return None
        return cam.getvalue(), None
    if source == "Test set":
        ds = manager().data()
        if ds.is_sample:
            st.caption("Offline: these are the test images of the bundled sample in alexnet_viz/assets/.")
        i = st.number_input(f"Test image # (0–{len(ds.test_y) - 1})", 0, len(ds.test_y) - 1, key="test_idx")
        return encode_png(ds.test_x[i].numpy()), CLASSES[int(ds.test_y[i])]
    files = example_names()
    if st.session_state.get("example") not in files:
        st.session_state["example"] = DEFAULT_EXAMPLE if DEFAULT_EXAMPLE in files else files[0]
    ex = st.selectbox("Example image", files, key="example")
    return (EXAMPLES / ex).read_bytes(), None


def new_image(data: bytes) -> str:
    """A different image: what was chosen for the last one (Grad-CAM class, clicked unit) starts over.
    Returns the image's digest."""
    digest = hashlib.sha1(data).hexdigest()
    if st.session_state.get("image_digest") != digest:
        st.session_state["image_digest"] = digest
        for k in ("cam_class", "unit_for"):
            st.session_state.pop(k, None)
    return digest
