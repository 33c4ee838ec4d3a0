"""Explore's model choice: which network to look at (a value, inspect/choice.py), and a second one
to set beside it."""
from __future__ import annotations

import streamlit as st

from alexnet_viz.config import ConfigError
from alexnet_viz.inspect.analysis import Loaded, ModelUnavailable
from alexnet_viz.inspect.choice import ModelChoice, Source, example, final_accuracy, load_model, own_runs, run_label, sources
from alexnet_viz.inspect.modelcache import ModelCache
from alexnet_viz.runs.store import has_weights
from alexnet_viz.ui.common import current_arch, snapshot_picker

LINKED_RUNS = "explore_linked_runs"  # runs a link opened that are not this session's own (explore_link.py)


@st.cache_resource
def model_cache() -> ModelCache:
    """Models shared by every session, within a cap on their total bytes (modelcache.py)."""
    return ModelCache()


def _label(s) -> str:
    """A source's label; given its value ("untrained") or its label, the same label."""
    try:
        return Source(s).label
    except ValueError:
        return str(s)


def model_ui(owner: str) -> tuple[ModelChoice, Loaded | None]:
    """The model to look at — the best run of one's own, else the example network that ships
    trained, else the Architect's network untrained — or None with a message."""
    runs, ex = own_runs(owner, st.session_state.get(LINKED_RUNS, ())), example()
    offered = sources(bool(runs), ex is not None)
    if st.session_state.get("model_kind") not in offered:
        st.session_state["model_kind"] = offered[0]
    source = Source(st.radio("Model", offered, format_func=_label, horizontal=True, key="model_kind",
                             help="Compare an untrained network with a trained one to see what training changes."))
    choice = ModelChoice(source)
    try:
        if source is Source.RUN:
            r = st.selectbox("Run", runs, format_func=run_label, key="run",
                             help="Finished runs first, the best test accuracy first.")
            choice = ModelChoice(source, r.path, snapshot_picker(r.path))
        elif source is Source.EXAMPLE:
            acc = final_accuracy(ex)
            st.caption("The example network that ships trained: mini28, trained on all of Fashion-MNIST with a "
                       "fixed seed" + (f" (test accuracy {acc:.3f})" if acc is not None else "")
                       + ". Train your own on the Train page to see it here.")
            choice = ModelChoice(source, str(ex.path), snapshot_picker(str(ex.path)))
        return choice, load_model(choice, model_cache(), current_arch())
    except (ModelUnavailable, ConfigError) as e:  # ConfigError: OverBudget, a network too big for this machine
        st.warning(f"{e}. The other models still work.")
        return choice, None


def compare_ui(owner: str, choice: ModelChoice, m: Loaded) -> Loaded | None:
    """A second model for the same image and layer: the untrained network or another run."""
    runs = [r for r in own_runs(owner, st.session_state.get(LINKED_RUNS, ())) if has_weights(r)]
    untrained_now = choice.source is Source.UNTRAINED
    kinds = (["Nothing"] + ([] if untrained_now else ["The same network, untrained"])
             + (["A run trained here" if untrained_now else "Another run"] if runs else []))
    if len(kinds) == 1:
        st.caption("Train a run of this network on the Train page to see it here beside the untrained one.")
        return None
    kind = st.radio("Side by side with", kinds, horizontal=True, key="compare_kind")
    try:
        if kind == "The same network, untrained":
            return load_model(ModelChoice(Source.UNTRAINED), model_cache(), m.cfg)
        if kind in ("Another run", "A run trained here"):
            r = st.selectbox("Other run", runs, format_func=run_label, key="compare_run")
            return load_model(ModelChoice(Source.RUN, r.path), model_cache(), m.cfg)
    except (ModelUnavailable, ConfigError) as e:
        st.warning(str(e))
    return None
