"""Lessons: d2l's AlexNet chapter in steps — read, open the view, answer, then see the app's numbers.

The steps, questions and answers are the package's (alexnet_viz/lessons); this page keeps the
learner's place and answers in its URL, so a reload, or the link handed to a class, keeps them.
"""
from __future__ import annotations

import streamlit as st

from alexnet_viz.lessons.chapter import SCHEMA, STEPS, STRIDES, Context, LessonStep, judge
from alexnet_viz.runs.examples import example_run
from alexnet_viz.runs.store import list_runs
from alexnet_viz.ui import share
from alexnet_viz.ui.common import presenter_style
from alexnet_viz.ui.plots import filter_grid

PRESENTER_EXTRA = """<style>
.stApp [data-testid="stMarkdownContainer"] p.lesson-question { font-size: 2.6rem; line-height: 1.25; font-weight: 600; }
.stApp [data-testid="stMarkdownContainer"] .lesson-options li { font-size: 2rem; }
</style>"""


def state() -> dict:
    """The learner's place, in a plain key (a widget's state is dropped while another page is shown)."""
    ss = st.session_state
    s = ss.setdefault("lessons", {"lesson": 1, "stride": "4", "reveal": False, "present": False, "answers": {}})
    for k, v in share.restore(SCHEMA).items():
        if k.startswith("a_"):
            s["answers"][k[2:]] = v
        else:
            s[k] = v
    return s


def url_values(s: dict) -> dict:
    return {"lesson": s["lesson"], "stride": s["stride"], "reveal": s["reveal"], "present": s["present"],
            **{f"a_{k}": v for k, v in s["answers"].items()}}


def go(s: dict, n: int) -> None:
    s["lesson"], s["reveal"] = n, False


def context(s: dict) -> Context:
    return Context(runs=list_runs(), example=example_run(), stride=int(s["stride"]))


@st.cache_data(max_entries=64, show_spinner="Computing the answer…")
def preset_finding(key: str, stride: int):
    """Answers that read only the presets and the cost model: the same for everyone, so cached."""
    step = next(x for x in STEPS if x.key == key)
    return step.answer(Context(stride=stride))


def finding_for(step: LessonStep, s: dict):
    if step.key in ("relu", "filters", "dropout"):  # read runs on disk, which change as a class trains
        return step.answer(context(s))
    return preset_finding(step.key, int(s["stride"]))


def question_ui(step: LessonStep, s: dict, presenter: bool) -> None:
    """The question; a learner answers it (kept in s["answers"]), a presenter reads it out large."""
    if step.key == "stride":
        pick = st.select_slider("conv1's stride", [str(x) for x in STRIDES], value=s["stride"],
                                key=f"lesson_stride_{s['stride']}")
        if pick != s["stride"]:
            s["stride"] = pick
            s["answers"].pop(step.key, None)  # a new stride is a new question
    if presenter:
        st.markdown(f'<p class="lesson-question">{step.question}</p>', unsafe_allow_html=True)
        if step.options:
            items = "".join(f"<li>{label}</li>" for _, label in step.options)
            st.markdown(f'<ul class="lesson-options">{items}</ul>', unsafe_allow_html=True)
        return
    st.markdown(f"**{step.question}**")
    key = f"lesson_pick_{step.key}_{s['stride']}"
    with st.form(f"lesson_form_{step.key}", border=False):
        if step.options:
            labels = dict(step.options)
            pick = st.radio("Your answer", list(labels), format_func=labels.get, index=None, key=key)
        else:
            pick = st.number_input("Your answer", min_value=0.0, max_value=1e7, value=None, step=1.0,
                                   format="%g", key=key, placeholder="a number")
        if st.form_submit_button("Answer", type="primary"):
            if pick is None:
                st.warning("Choose or type an answer first: the answer shows once you have said yours.")
            else:
                s["answers"][step.key] = pick


def answer_ui(step: LessonStep, s: dict, presenter: bool) -> None:
    given = s["answers"].get(step.key)
    if presenter and not s["reveal"]:
        if st.button("Show the answer", type="primary"):
            s["reveal"] = True
            st.rerun()
        return
    if not presenter and given is None:
        st.caption("The answer shows once you have answered.")
        return
    f = finding_for(step, s)
    if f.missing is not None:
        st.info(f.missing)
        return
    v = judge(step, f, given) if not presenter else None
    if v is not None:
        shown = dict(step.options).get(given, given) if step.options else f"{given:,g}"
        (st.success if v.right else st.warning)(f"You said {shown}. {v.words}")
    st.markdown(f.text)
    if step.key == "filters":
        c = st.columns(2)
        c[0].image(filter_grid(f.figures["before_img"], cols=8, scale=8), caption="conv1 before training")
        c[1].image(filter_grid(f.figures["after_img"], cols=8, scale=8), caption="conv1 after training")
    if not presenter and st.button("Answer again"):
        s["answers"].pop(step.key, None)
        st.rerun()


def page() -> None:
    s = state()
    top = st.columns([3, 1])
    s["present"] = top[0].toggle("Presenter mode", value=s["present"], key=f"lesson_present_{s['present']}",
                                 help="The question large for a class; the answer on a click.")
    presenter_style(s["present"])
    if s["present"]:
        st.html(PRESENTER_EXTRA)
    share_box = top[1].container()
    st.title("Lessons")
    n = len(STEPS)
    titles = [f"{i}. {x.title}" for i, x in enumerate(STEPS, 1)]
    pick = st.selectbox("Step", titles, index=s["lesson"] - 1, key=f"lesson_step_{s['lesson']}")
    if titles.index(pick) + 1 != s["lesson"]:
        go(s, titles.index(pick) + 1)
        st.rerun()
    step = STEPS[s["lesson"] - 1]
    st.progress(s["lesson"] / n, text=f"Step {s['lesson']} of {n} · answered {len(s['answers'])} of {n}")
    st.subheader(step.title)
    st.markdown(step.text)
    st.link_button("Show me", step.view(Context(stride=int(s["stride"]))).href, icon=":material/open_in_new:",
                   help="Opens the view this step is about in a new tab; this lesson stays here.")
    question_ui(step, s, s["present"])
    answer_ui(step, s, s["present"])
    c = st.columns([1, 1, 4])
    if c[0].button("← Back", disabled=s["lesson"] == 1):
        go(s, s["lesson"] - 1)
        st.rerun()
    if c[1].button("Next →", disabled=s["lesson"] == n):
        go(s, s["lesson"] + 1)
        st.rerun()
    share.sync_url(url_values(s), SCHEMA)
    with share_box:
        share.share_ui()
