"""Train, or another page: the training settings come back after a visit elsewhere."""
import streamlit as st

from alexnet_viz.ui import train
from alexnet_viz.ui.common import guarded

if st.session_state.get("away"):
    st.write("another page")
else:
    guarded(train.page)()
