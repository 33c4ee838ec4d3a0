"""What every page shares: who this browser session is, and a guard that keeps traces off the page."""
from __future__ import annotations

import functools
import logging
import uuid
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import RerunException, StopException, get_script_run_ctx

from alexnet_viz.config import ConfigError, default_training, get_preset
from alexnet_viz.cost.budget import is_allocation_failure, out_of_memory_message, waiting_words
from alexnet_viz.cost.estimate import estimate_analysis, estimate_training
from alexnet_viz.data import check_device
from alexnet_viz.jobs.queue import JobManager
from alexnet_viz.runs.store import Run

log = logging.getLogger("alexnet_viz")


def owner_id() -> str:
    """This browser session's id, kept in the URL (?sid=...) so that a reload finds its runs again."""
    sid = st.session_state.get("owner") or st.query_params.get("sid") or uuid.uuid4().hex[:12]
    st.session_state["owner"] = sid
    if st.query_params.get("sid") != sid:
        st.query_params["sid"] = sid
    return sid


def guarded(page):
    """Run a page (or a part of one that reruns by itself, a fragment); an unexpected error becomes one
    readable line, the trace goes to the server log."""
    @functools.wraps(page)
    def run(*args, **kwargs):
        try:
            page(*args, **kwargs)
        except (StopException, RerunException):  # st.stop() / st.rerun() are control flow, not errors
            raise
        except ConfigError as e:  # refused work (over the memory budget, a wrong data folder): says why
            st.error(str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("page error")
            if is_allocation_failure(e):  # memory ran out outside any reservation: what to lower, not the allocator's words
                st.error(out_of_memory_message("this page") + ". Your settings and runs are kept.")
                return
            st.error(f"Something went wrong on this page ({type(e).__name__}: {e}). "
                     f"Your settings and runs are kept; change the input or reload the page.")
    return run


def fragment_rerun() -> bool:
    """True while only a part of the page reruns (a widget inside a fragment changed), not the whole page."""
    ctx = get_script_run_ctx()
    return bool(ctx and ctx.fragment_ids_this_run)


def rerun_parts(*keys: str) -> None:
    """From a widget's callback: rerun only the fragments with these keys, not the whole page. When one of
    them is not on the page now (a full run since left it out: the image was refused), the whole page
    reruns, as after any callback, instead of Streamlit's "No fragment found" error."""
    try:
        st.rerun(scope=list(keys))
    except StreamlitAPIException:
        pass


def memory_notice():
    """A callback for work that may wait for the server's memory (on_wait): it shows "waiting for
    memory: N ahead" in its place on the page while it waits, and clears it when its turn comes."""
    slot = st.empty()

    def say(ahead: int | None) -> None:
        if ahead is None:
            slot.empty()
        else:
            slot.info(f"{waiting_words(ahead).capitalize()} — other students' work is using the server's memory.")
    return say


@st.cache_resource
def manager():
    """One trainer for the whole server: jobs from every browser session queue here (Train and
    Experiments pages alike)."""
    return JobManager()


def current_arch():
    """The Architect's current valid network (the d2l preset until the user changes it)."""
    return st.session_state.get("last_valid") or get_preset("d2l")


def cost_ui(arch, t=None, n_train: int = 60_000, n_test: int = 10_000) -> bool:
    """The cost of training `arch` (with `t`, else its preset's settings) before it starts: one line,
    a warning when the run is slow, an error when it does not fit. Returns whether it fits."""
    architect, t = t is None, t or default_training(arch)
    try:
        est = estimate_training(arch, t, n_train, device=check_device(t.device), n_test=n_test)
        look = estimate_analysis(arch) if architect else None
    except ConfigError as e:
        st.error(str(e))
        return False
    if not est.fits:
        st.error(f"Training this network would not fit: {est.message()}")
    elif est.run_seconds > 600:
        st.warning(f"Estimate: {est.message()} — {est.advice}.")
    else:
        st.caption(f"Estimate: {est.message()}.")
    if look is not None and not look.fits:
        st.warning(f"Explore cannot look inside this network here: {look.message()}")
    return est.fits


def snapshot_picker(run_path: str) -> str | None:
    """An epoch scrubber over a run's snapshots: the label to load (Run.load_model(at=...)), or None for
    the final weights (the last position)."""
    run = Run(run_path)
    labels = [s["label"] for s in run.snapshots()]
    if not labels:
        return None
    last = run.snapshots()[-1]["epoch"]
    done = float(run.status().get("epochs_done") or 0)
    if done > last + 1e-9:  # stopped between two kept moments: its final weights are newer
        labels.append(f"final weights (epoch {done:.2f})")
    if len(labels) == 1:
        return None
    pick = st.select_slider("Snapshot", labels, value=labels[-1], key=f"snapshot-{Path(run_path).name}",
                            help="Scrub through training: the same image's feature maps, conv1 filters, "
                                 "predictions and Grad-CAM at each moment the run kept.")
    return None if pick == labels[-1] else pick


# Presenter mode: everything a class reads grows. st.dataframe draws on a canvas whose type CSS cannot
# reach, so in presenter mode tables are drawn with st.table (HTML), which this sheet enlarges too.
PRESENTER_CSS = """<style>
.stApp { font-size: 1.3rem; }
.stApp [data-testid="stMarkdownContainer"] p, .stApp [data-testid="stMarkdownContainer"] li,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stAlert"] p { font-size: 1.35rem; }
.stApp [data-testid="stMetricValue"], .stApp [data-testid="stMetricValue"] * { font-size: 3rem !important; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none; }
.stMainBlockContainer { padding-left: 2rem; padding-right: 2rem; max-width: 100%; }
.stApp [data-testid="stMetricLabel"] p { font-size: 1.4rem !important; }
.stApp [data-testid="stTable"] th, .stApp [data-testid="stTable"] td { font-size: 1.35rem !important; }
.stApp [data-testid="stWidgetLabel"] p, .stApp [data-testid="stExpander"] summary p,
.stApp button p, .stApp [data-testid="stRadio"] label p { font-size: 1.35rem !important; }
.stApp [data-baseweb="select"] div, .stApp [data-testid="stProgress"] p { font-size: 1.35rem !important; }
.stApp h1 { font-size: 3.2rem; }
.stApp h3 { font-size: 2.2rem; }
.arch-drawing svg { max-width: 100%; height: auto; }  /* drawn at 1.5×, shrunk to fit: labels stay >= 19 px */
</style>"""


def presenter_style(presenter: bool) -> None:
    """Large type for a projector while presenter mode is on."""
    if presenter:
        st.html(PRESENTER_CSS)


def big_figure(fig, presenter: bool):
    """Larger type and a taller chart for a projector."""
    if presenter:
        fig.update_layout(font=dict(size=22), title_font=dict(size=28), height=520)
    return fig


def table_ui(df, presenter: bool = False, counts: tuple[str, ...] = ()) -> None:
    """A table of rows, all shown; `counts` columns get thousands separators. In presenter mode an HTML
    table, whose type grows with the page's (a st.dataframe's canvas keeps its small type)."""
    if presenter:
        st.table(df.style.format("{:,}", subset=[c for c in counts if c in df.columns]), hide_index=True)
    else:
        fmt = st.column_config.NumberColumn(format="localized")
        st.dataframe(df, hide_index=True, width="stretch", height=36 * (len(df) + 1) + 4,
                     column_config={c: fmt for c in counts})
