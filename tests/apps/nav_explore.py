"""Explore, or another page: the uploader's state is cleaned up while Explore is not drawn."""
import streamlit as st

from alexnet_viz.ui import explore

if st.session_state.get("away"):
    st.write("another page")
else:
    explore.page()
