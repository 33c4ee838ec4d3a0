"""A page with a schema: a preset box, a layer number, presenter mode, kept in the URL and shareable."""
import streamlit as st

from alexnet_viz import links
from alexnet_viz.config import PRESETS
from alexnet_viz.ui import share

SCHEMA = {"preset": links.choice(PRESETS, default="d2l"), "layer": links.integer(1, 8, default=1),
          "net": links.network(), **links.PRESENTER}

if st.session_state.get("away"):
    st.write("another page")
else:
    for k, v in share.restore(SCHEMA).items():
        st.session_state[k] = v
    st.selectbox("Preset", list(PRESETS), key="preset")
    st.number_input("Layer", 1, 8, key="layer")
    st.toggle("Presenter mode", key="present")
    net = st.session_state.get("net")
    st.write(f"network: {net.name if net else 'none'}")
    share.sync_url({k: st.session_state.get(k) for k in SCHEMA}, SCHEMA)
    st.session_state["link"] = share.share_ui()
