"""The Experiments page's class experiment: the teacher's form (what it costs first), the seat a session
takes when it opens the link, and the projector view that pools every finished seed. Not a page."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from alexnet_viz.runs.store import runs_dir
from alexnet_viz.training.classroom import (BATCHES_MAX, CLASS_BUDGET, CLASS_SIZE, EPOCHS_MAX, MAX_SEATS, ClassError,
                                            class_progress, class_runs, describe_class_cost, join_class, load_class,
                                            pool_results, queue_seat, start_class)
from alexnet_viz.training.experiments import EXPERIMENTS, Budget, summarize_experiment
from alexnet_viz.ui import share
from alexnet_viz.ui.common import big_figure, manager, presenter_style, table_ui

POLL_S = 3.0  # the projector's refresh; every session shares one reading of the disk per POLL_S (below)


@st.cache_data(max_entries=64, show_spinner=False)
def _cost(experiment: str, budget: Budget, students: int, finished: int = 0) -> str:
    ds, mgr = manager().data(), manager()
    return describe_class_cost(experiment, budget, students, len(ds.train_y), len(ds.test_y), mgr.budget_bytes,
                               finished)


def start_ui() -> None:
    """The teacher's form: one experiment and a budget, and what the class will cost before it starts."""
    ss = st.session_state
    with st.expander("A class experiment: every student's session adds a seed", icon=":material/groups:"):
        st.caption("Start one, show its link or QR code on the projector; each student who opens it trains "
                   "every variant with a seed of their own, and the view here pools all the finished seeds.")
        c = st.columns(4)
        name = c[0].selectbox("Experiment", list(EXPERIMENTS), format_func=lambda n: EXPERIMENTS[n].title,
                              key="cl_name")
        epochs = c[1].number_input("Epochs per run", 1, EPOCHS_MAX, CLASS_BUDGET.epochs, key="cl_epochs")
        cap = c[2].number_input("Max batches per epoch (0 = all)", 0, BATCHES_MAX, CLASS_BUDGET.max_batches,
                                key="cl_cap", help="The default is sized so that 30 students finish in 10 minutes "
                                                   "on a 2-core laptop.")
        students = c[3].number_input("Students (for the estimate)", 1, MAX_SEATS, CLASS_SIZE, key="cl_students")
        budget = Budget(int(epochs), int(cap), CLASS_BUDGET.device)
        st.caption(_cost(name, budget, int(students)) + " A student's own two runs start when they reach "
                   "the front of the queue.")
        if st.button("Start a class experiment", icon=":material/groups:"):
            ss["ex_class"] = start_class(name, budget).code
            st.rerun()


@st.cache_data(ttl=POLL_S, max_entries=16, show_spinner=False)
def _class_state(code: str, root: str):
    """The class and its runs, read from disk once per POLL_S for every session watching it."""
    cls = load_class(code)
    return cls, class_runs(cls)


def class_ui(code: str, owner: str) -> None:
    """This session's seat in class `code` (taken on its first visit: a seed of its own, its runs queued),
    the link and QR code to join, and the pooled results, refreshed while it is shown."""
    ss = st.session_state
    seat = f"seat-{code}"
    try:
        if seat not in ss:
            cls, seed = join_class(code, owner)
            queue_seat(manager(), cls, owner, seed)
            ss[seat] = seed
        cls = load_class(code)
    except ClassError as e:
        st.warning(str(e))
        ss.pop("ex_class", None)
        return
    st.subheader(f"Class experiment {code}: {EXPERIMENTS[cls.experiment].title}")
    presenter = st.toggle("Presenter mode", key="presenter", help="Large type and a large chart for the projector.")
    presenter_style(presenter)
    link = f"{share.base_url()}?class={code}"
    c = st.columns([1, 2])
    c[0].image(share.qr_png(link), caption="Scan to join", width="stretch")
    c[1].markdown(f"Join at **{link}**  \nor open the Experiments page with the code **{code}** in the link.")
    c[1].caption(f"{EXPERIMENTS[cls.experiment].question} This session is seed {ss[seat]}: its runs are queued "
                 f"with everyone else's and keep going if the tab is closed.")
    with c[1]:
        st.fragment(run_every=POLL_S)(projector_ui)(code, presenter)
    if st.button("Leave the class view", icon=":material/logout:"):
        ss.pop("ex_class", None)
        st.rerun()


def projector_ui(code: str, presenter: bool = False) -> None:
    """Per variant the mean test accuracy with its seed spread, the seeds counted, and the sentence."""
    try:
        cls, runs = _class_state(code, str(runs_dir()))
    except ClassError as e:
        st.warning(str(e))
        return
    progress = class_progress(cls, runs)
    st.markdown(f"**{progress['seats']} joined** · {progress['finished']} of {progress['runs']} runs finished"
                + (f" · {progress['failed']} failed" if progress["failed"] else ""))
    st.caption(_cost(cls.experiment, cls.budget, progress["seats"], progress["finished"]))
    results = pool_results(runs, cls)
    rows, sentence = summarize_experiment(results)
    if not rows:
        st.info("No seed has finished yet: the chart fills in as the runs finish.")
        return
    st.plotly_chart(big_figure(pooled_figure(results), presenter), width="stretch", key=f"class-{code}")
    table_ui(_table(rows), presenter)
    st.info(sentence)


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": r["variant"], "seeds": r["seeds"], "mean test acc": round(r["test acc"], 3),
                          "± seed sd": None if r["± (seed sd)"] is None else round(r["± (seed sd)"], 3)}
                         for r in rows])


def pooled_figure(results: dict[str, list[dict]]) -> go.Figure:
    """A bar per variant at its mean test accuracy, error bars of one seed standard deviation, and each
    seed's own result as a dot beside it."""
    fig = go.Figure()
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    rows, _ = summarize_experiment(results)
    for k, r in enumerate(rows):
        color, accs = palette[k % len(palette)], [e["test_acc"] for e in results[r["variant"]]]
        label = f"{r['variant']}<br>{r['seeds']} seed{'s' if r['seeds'] != 1 else ''}"
        fig.add_trace(go.Bar(x=[label], y=[r["test acc"]], marker_color=color, opacity=0.55, name=r["variant"],
                             error_y=dict(type="data", array=[r["± (seed sd)"] or 0], visible=True, thickness=2),
                             hovertemplate=f"{r['variant']}: mean %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[label] * len(accs), y=accs, mode="markers", showlegend=False,
                                 marker=dict(color=color, size=9, line=dict(color="white", width=1)),
                                 hovertemplate=f"{r['variant']}, one seed: %{{y:.3f}}<extra></extra>"))
    fig.update_yaxes(title="test accuracy (mean ± seed sd)", range=[0, 1.02])
    fig.update_layout(showlegend=False, height=380, margin=dict(l=10, r=10, t=30, b=10), bargap=0.5)
    return fig
