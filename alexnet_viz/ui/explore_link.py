"""Explore's view in the URL: a link's values put into the widgets (once per visit), the current
view written back after every run, and one notice for what a link asked for that is not here.

Widgets drawn early (model, image) take their values at once; the layer, channel and unit are known
to be valid only once the model and image are, so they wait in `PENDING` for the part that draws them.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from alexnet_viz.inspect.view import IMAGES, SCHEMA, find_model
from alexnet_viz.runs.store import Run, list_runs
from alexnet_viz.ui import share
from alexnet_viz.ui.common import manager
from alexnet_viz.ui.explore_image import WANTS_UPLOAD, example_names
from alexnet_viz.ui.explore_model import LINKED_RUNS

PENDING = "explore_link_pending"
MISFIT = "explore_link_misfit"


def misfit(name: str) -> None:
    """A link's parameter that is well formed but names nothing here (a layer this model lacks ...)."""
    st.session_state.setdefault(MISFIT, []).append(name)


def pending(name: str):
    """A link's value for a widget drawn later (layer, channel, row, col, cam, cls), taken once."""
    return st.session_state.get(PENDING, {}).pop(name, None)


def take(name: str, options, key: str, to_option=lambda v: v) -> None:
    """Before drawing widget `key`: a link's pending value for it, when it is one of its options
    (else it is named in the link's notice)."""
    v = pending(name)
    if v is None:
        return
    option = to_option(v)
    if option is not None and option in options:
        st.session_state[key] = option
    else:
        misfit(name)


def restore_ui() -> None:
    """Open the view a link describes: the model, run, snapshot and image at once, the rest pending."""
    got = share.restore(SCHEMA)
    if not got:
        return
    ss = st.session_state
    ss[MISFIT] = []
    if "present" in got:
        ss["presenter"] = got["present"]
    if "method" in got:
        ss["method"] = got["method"]
    linked = find_model(got, list_runs())
    for name in linked.missing:
        misfit(name)
    if linked.source is not None:
        ss["model_kind"] = linked.source
    if linked.run is not None:
        ss.setdefault(LINKED_RUNS, set()).add(linked.run.path)
        if "snapshot" in got:
            labels = [s["label"] for s in Run(linked.run.path).snapshots()]
            if got["snapshot"] in labels:
                ss[f"snapshot-{Path(linked.run.path).name}"] = got["snapshot"]
            else:
                misfit("snapshot")
    if "image" in got:
        ss["source"] = ss["kept_source"] = IMAGES[got["image"]]
        ss[WANTS_UPLOAD] = got["image"] in ("upload", "camera")
    if "test" in got:
        if got["test"] < len(manager().data().test_y):
            ss["test_idx"] = got["test"]
        else:
            misfit("test")
    if "example" in got:
        if got["example"] in example_names():
            ss["example"] = got["example"]
        else:
            misfit("example")
    ss[PENDING] = {k: got[k] for k in ("layer", "channel", "row", "col", "cam", "cls") if k in got}


def write_url(view: dict) -> None:
    """The URL carries this view (a link's values not yet shown, too)."""
    left = {k: v for k, v in st.session_state.get(PENDING, {}).items() if k not in view}
    share.sync_url({**left, **view}, SCHEMA)


def sync_ui(view: dict) -> None:
    """The URL carries this view; one notice for what did not fit."""
    write_url(view)
    names = st.session_state.pop(MISFIT, None)
    if names:
        st.warning(f"Part of this link does not fit here: {', '.join(dict.fromkeys(names))} (not on this server, or "
                   f"not in this model). The page shows its own choice instead.", icon="🔗")
