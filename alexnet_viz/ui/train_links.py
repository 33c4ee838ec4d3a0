"""The Train and Experiments pages' state in the URL: their link schemas (alexnet_viz.links) and the
widget keys they fill. Not a page: both pages call it."""
from __future__ import annotations

import streamlit as st

from alexnet_viz import links
from alexnet_viz.data import available_devices
from alexnet_viz.training.experiments import EXPERIMENTS
from alexnet_viz.ui import share

RUN = "run"      # Train: the run looked at, by its folder name
CLASS = "class"  # Experiments: a class experiment's code (validated by training.classroom)
# Experiments: parameter -> (its widget key, its schema entry)
EXPERIMENT_KEYS = {"exp": "ex_name", "epochs": "ex_epochs", "cap": "ex_cap", "seeds": "ex_seeds", "device": "ex_device"}


def train_schema(run_names: list[str]) -> links.Schema:
    return {RUN: links.choice(run_names)}


def experiments_schema() -> links.Schema:
    return {"exp": links.choice(["all", *EXPERIMENTS], default="relu-vs-sigmoid"),
            "epochs": links.integer(1, 50, default=1), "cap": links.integer(0, 100_000, default=0),
            "seeds": links.integer(1, 5, default=2), "device": links.choice(["auto", *available_devices()], default="auto"),
            CLASS: links.text(), **links.PRESENTER}


def restore_experiments() -> None:
    """A link's experiment, budget and class code into the page's widgets (once per visit)."""
    ss = st.session_state
    got = share.restore(experiments_schema())
    for param, key in EXPERIMENT_KEYS.items():
        if param in got:
            ss[key] = got[param]
    if CLASS in got:
        ss["ex_class"] = got[CLASS]
    if links.PRESENT in got:
        ss["presenter"] = got[links.PRESENT]


def sync_experiments() -> None:
    ss = st.session_state
    values = {param: ss.get(key) for param, key in EXPERIMENT_KEYS.items()}
    share.sync_url(values | {CLASS: ss.get("ex_class"), links.PRESENT: bool(ss.get("presenter"))},
                   experiments_schema())
