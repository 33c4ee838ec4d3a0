"""The Architect's editor as widgets: the network-wide settings and the two editable tables.

Not a page: the Architect draws these and keeps the state; the rules of each cell are the package's
(architect/editor.py, whose columns take their ranges from config.LIMITS).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from alexnet_viz.architect.editor import CONV_COLUMNS, HIDDEN_COLUMNS, Column, config_from_rows, conv_rows, hidden_rows
from alexnet_viz.config import ACTIVATIONS, IN_CHANNELS, LIMITS, ArchConfig


def column_config(columns: dict[str, Column]) -> dict:
    """Typed table columns whose ranges are config.LIMITS (through editor.CONV_COLUMNS / HIDDEN_COLUMNS)."""
    out = {}
    for key, c in columns.items():
        if c.choices is not None:
            out[key] = st.column_config.SelectboxColumn(c.label, help=c.help, options=list(c.choices),
                                                        default=c.default, required=True, width="small")
        else:
            out[key] = st.column_config.NumberColumn(c.label, help=c.help, min_value=c.limits[0],
                                                     max_value=c.limits[1], step=1, default=c.default,
                                                     required=True, format="%d", width="small")
    return out


def settings_ui() -> None:
    """The settings row; each widget's key is its ArchConfig field (editor.SETTINGS)."""
    lim = LIMITS
    c = st.columns(6)
    c[0].selectbox("Input channels", IN_CHANNELS, key="in_channels",
                   format_func=lambda n: {1: "1 (grayscale)", 3: "3 (RGB)"}[n])
    c[1].number_input("Input size (px)", *lim["input_size"], key="input_size")
    c[2].number_input("Classes", *lim["num_classes"], key="num_classes")
    c[3].selectbox("Hidden activation", ACTIVATIONS, key="fc_activation")
    c[4].number_input("Dropout p", *lim["dropout"], step=0.05, format="%g", key="dropout",
                      help="after each hidden Linear layer; 0 = no dropout")
    c[5].number_input("Adaptive avg pool", *lim["adaptive_pool"], key="adaptive_pool",
                      help="0 = none; n = pool to n×n before flatten (torchvision's AlexNet uses 6)")


def tables_ui(src: ArchConfig, rev: int, settings: ArchConfig) -> ArchConfig:
    """The conv blocks and the hidden layers of `src` as two editable tables (keys change with `rev`, which
    starts them over); returns `settings` with the tables' layers, not validated."""
    st.markdown("**Conv blocks**: conv → activation → norm → pool, one row each (+ above the table adds a row; "
                "tick rows and press the bin to remove them)")
    convs = st.data_editor(
        pd.DataFrame(conv_rows(src), columns=list(CONV_COLUMNS)), key=f"convs_{rev}", num_rows="dynamic",
        hide_index=True, column_config=column_config(CONV_COLUMNS), width="stretch")
    st.markdown("**Hidden layers of the classifier**: one row per hidden Linear layer (the last layer, one "
                "output per class, is added for you)")
    hidden = st.data_editor(
        pd.DataFrame(hidden_rows(src), columns=list(HIDDEN_COLUMNS)), key=f"hidden_{rev}", num_rows="dynamic",
        hide_index=True, column_config=column_config(HIDDEN_COLUMNS), width=360)
    return config_from_rows(settings, convs.to_dict("records"), hidden.to_dict("records"))
