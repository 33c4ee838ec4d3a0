"""Architect, or another page: widget state is cleaned up while the Architect is not drawn."""
import streamlit as st

from alexnet_viz.ui import architect

if st.session_state.get("away"):
    st.write("another page")
else:
    architect.page()
