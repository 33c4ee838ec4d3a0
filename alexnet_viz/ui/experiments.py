"""Experiments, "What did AlexNet change?": one click queues runs that differ in one thing; a class runs one
together (ui/train_class)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from alexnet_viz.runs.store import Run, list_runs, step_curve
from alexnet_viz.training.experiments import (EXPERIMENTS, Budget, base_network, collect_results, describe_budget,
                                              describe_set_cost, diff_configs, distinguishing_labels, experiment_runs,
                                              planned_runs, queue_experiment, seconds_left, summarize_experiment)
from alexnet_viz.ui import share
from alexnet_viz.ui.common import manager, owner_id
from alexnet_viz.ui.plots import experiment_curves
from alexnet_viz.ui.train_class import class_ui, start_ui
from alexnet_viz.ui.train_links import EXPERIMENT_KEYS, experiments_schema, restore_experiments, sync_experiments
from alexnet_viz.units import duration

KEEP = dict(persist_state="session")  # the choices come back after a visit to another page


def _title(name: str) -> str:
    return "All of them" if name == "all" else EXPERIMENTS[name].title


def budget_ui() -> tuple[str, Budget, list[int]]:
    """The experiment and its budget; their ranges and defaults are the link's (train_links)."""
    ss, link = st.session_state, experiments_schema()
    for param, key in EXPERIMENT_KEYS.items():
        ss.setdefault(key, link[param].default)
    name = st.selectbox("Experiment", link["exp"].options, format_func=_title, key="ex_name", **KEEP)
    c = st.columns(4)
    span = {p: (int(link[p].lo), int(link[p].hi)) for p in ("epochs", "cap", "seeds")}
    epochs = c[0].number_input("Epochs per run", *span["epochs"], key="ex_epochs", **KEEP)
    cap = c[1].number_input("Max batches per epoch (0 = all)", *span["cap"], key="ex_cap", **KEEP,
                            help="The same cap for every run: a quick demo still compares like with like.")
    seeds = c[2].number_input("Seeds", *span["seeds"], key="ex_seeds", **KEEP,
                              help="Each variant is trained once per seed; with 2 or more the summary can "
                                   "tell a real difference from seed noise.")
    device = c[3].selectbox("Device", link["device"].options, key="ex_device", **KEEP)
    return name, Budget(int(epochs), int(cap), device), list(range(int(seeds)))


def progress_ui(owner: str, set_id: str | None) -> None:
    """The queued set, polled every second while any of its runs is still to finish."""
    jobs = [j for j in manager().jobs_for(owner) if j.tags.get("set") == set_id]
    if not jobs:
        return
    done = [j for j in jobs if not j.active]
    running = next((j for j in jobs if j.state == "running"), None)
    text = f"{len(done)} of {len(jobs)} runs done"
    if running and running.steps:
        text += f" · now {running.arch.name}, seed {running.train.seed}, epoch {running.steps[-1]['epoch']:.2f}"
    left = [j for j in jobs if j.active]
    wait = seconds_left([j.epochs[-1]["examples_per_sec"] for j in done if j.epochs], [j.train for j in left],
                        len(manager().data().train_y))
    if wait is not None:
        text += f" · about {duration(wait)} left at the measured pace"
    st.progress(len(done) / len(jobs), text=text)
    failed = [j for j in done if j.state == "error"]
    for j in failed:
        st.error(f"{j.arch.name} (seed {j.train.seed}): {j.message}")
    if not left and not st.session_state.get(f"ex-done-{set_id}"):
        st.session_state[f"ex-done-{set_id}"] = True
        st.rerun()  # once, the whole page: the results below take in the last runs


def results_ui(runs: list, name: str, pending: int = 0) -> None:
    """Curves, table and sentence of the newest set of `name` of one's own, else of the shipped example's;
    `pending` = its runs not yet finished."""
    exp = EXPERIMENTS[name]
    mine = experiment_runs(runs, name)
    if not mine:
        return
    st.subheader(exp.title)
    st.caption(exp.question)
    if all(r.example for r in mine):
        st.caption(f"These runs ship with the app ({describe_budget(mine)}), trained when it was built: "
                   f"queue your own to see the answer on this machine.")
    order = [v.label for v in exp.variants]
    series: dict[str, list] = {label: [] for label in order}
    for r in sorted(mine, key=lambda r: r.tags.get("seed", 0)):
        series[r.tags["experiments"][name]].append((step_curve(Run(r.path).metrics()), list(r.epochs)))
    st.plotly_chart(experiment_curves({k: v for k, v in series.items() if v}), width="stretch", key=f"ex-{name}")
    rows, sentence = summarize_experiment(collect_results(mine, name))
    if rows:
        df = pd.DataFrame(rows)
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in df.columns
                                    if c not in ("variant", "seeds")})
    if pending:
        sentence += f" ({pending} runs not finished yet.)"
    st.info(sentence)


def diff_ui(owner: str) -> None:
    # this browser's runs first (the two it made last are the pair shown at first), then the command line's
    runs = sorted(list_runs(owners={owner, ""}), key=lambda r: r.owner != owner)
    if len(runs) < 2:
        st.caption("Two saved runs are needed to compare their settings.")
        return
    labels = {r.path: f"{r.name} · {s}" if s else r.name
              for r, s in zip(runs, distinguishing_labels([r.config for r in runs]))}
    paths = [r.path for r in runs]
    newest = tuple(r.path for r in runs if r.owner == owner)[:2]
    if st.session_state.get("diff_newest") != newest:  # a run of one's own has been added: show the newest pair
        st.session_state["diff_newest"] = newest   # (a kept choice would stay on what was there before it)
        for key in ("diff_a", "diff_b"):
            st.session_state.pop(key, None)
    c = st.columns(2)
    a = c[0].selectbox("Run A", paths, index=0, format_func=labels.get, key="diff_a")
    b = c[1].selectbox("Run B", paths, index=1, format_func=labels.get, key="diff_b")
    by = {r.path: r for r in runs}
    diff = diff_configs(by[a].config, by[b].config)
    if not diff:
        st.caption("The two runs have the same network and training settings (the seed included).")
        return
    show = lambda v: "—" if v is None else str(v)  # noqa: E731
    st.table(pd.DataFrame([{"setting": k, "run A": show(x), "run B": show(y)} for k, x, y in diff]).set_index("setting"))
    acc = [by[p].test_acc for p in (a, b)]
    if None not in acc:
        st.caption(f"Final test accuracy: run A {acc[0]:.3f}, run B {acc[1]:.3f}.")


def page() -> None:
    owner, ss = owner_id(), st.session_state
    restore_experiments()
    c = st.columns([3, 1])
    share_box = c[1].container()
    c[0].title("What did AlexNet change?")
    st.caption("Each experiment trains the AlexNet-style mini28 network and variants that differ from it in "
               "one thing, with the same budget and the same seeds, then says what the numbers show.")
    ds = manager().data()
    if ds.is_sample:
        st.warning(f"Offline: the runs train on the {ds.source}.")
    if ss.get("ex_class"):
        class_ui(ss["ex_class"], owner)
    else:
        start_ui()
    name, budget, seeds = budget_ui()
    names = list(EXPERIMENTS) if name == "all" else [name]
    if name != "all":
        st.caption(f"{EXPERIMENTS[name].question} Variants: "
                   f"{', '.join(v.label for v in EXPERIMENTS[name].variants)}.")
    plan = planned_runs(names, budget, seeds, base_network())
    st.caption(describe_set_cost(plan, len(ds.train_y), len(ds.test_y)))
    busy = any(j.active for j in manager().jobs_for(owner))
    if st.button(f"Queue {len(plan)} runs", icon=":material/science:", type="primary", disabled=busy,
                 help="Wait for your queued runs to finish first." if busy else None):
        jobs = queue_experiment(manager(), owner, name, budget, seeds)
        ss["ex_set"] = jobs[0].tags["set"]
    set_id = ss.get("ex_set")
    if set_id:
        active = any(j.active for j in manager().jobs_for(owner) if j.tags.get("set") == set_id)
        st.fragment(run_every=1.0 if active else None)(progress_ui)(owner, set_id)
    runs = list_runs(owners={owner})  # with the shipped examples, which answer until one's own set exists
    active = [j for j in manager().jobs_for(owner) if j.active]
    for n in names:
        results_ui(runs, n, sum(n in j.tags.get("experiments", {}) for j in active))
    st.subheader("Pick any two saved runs: what differs?")
    diff_ui(owner)
    sync_experiments()
    with share_box:
        share.share_ui()
