"""The Train page's saved runs: the list, one run's curves, internals, embedding and mistakes, Delete and
Resume. Not a page: `ui/train.py` draws it below the live run."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from alexnet_viz.data import CLASSES
from alexnet_viz.inspect.embedding import project_run
from alexnet_viz.runs.examples import copy_example
from alexnet_viz.runs.store import Run, RunError, delete_run, list_runs, step_curve
from alexnet_viz.training.experiments import (D2L_REFERENCE, class_name, distinguishing_labels, is_d2l_recipe,
                                              test_mistakes, thin_records)
from alexnet_viz.ui import share
from alexnet_viz.ui.common import manager
from alexnet_viz.ui.plots import (compare_runs, confusion_matrix, embedding_scatter, internals_heatmap,
                                  internals_lines, training_curves)
from alexnet_viz.ui.train_links import RUN, train_schema


def _default_pick(runs) -> int:
    """One's own newest finished run (it has a confusion matrix), else the shipped trained network
    (listed first of the examples), else the newest."""
    return next((i for i, r in enumerate(runs) if r.state == "finished" and not r.example),
                next((i for i, r in enumerate(runs) if r.example), 0))


def _labels(runs) -> list[str]:
    """What differs between one's own runs, and between the shipped examples: each group apart, so that
    an example's settings do not crowd the labels of one's own runs."""
    out = {}
    for group in ([r for r in runs if not r.example], [r for r in runs if r.example]):
        out |= dict(zip((r.path for r in group), distinguishing_labels([r.config for r in group])))
    return [out[r.path] for r in runs]


def delete_ui(info, kept: str | None, col) -> None:
    """Delete in two clicks: the first asks, the second deletes. A shipped example ("example") and
    another session's run ("foreign") have no Delete."""
    ss = st.session_state
    if kept:
        col.caption("The shipped example cannot be deleted." if kept == "example" else
                    "Only the session that trained it can delete it.")
        return
    if col.button("Delete this run", icon=":material/delete:", disabled=info.state == "running"):
        ss["confirm_delete"] = info.path
    if ss.get("confirm_delete") != info.path:
        return
    st.warning(f"Delete **{info.name}** with its weights and metrics? This cannot be undone.")
    c = st.columns([1, 1, 4])
    if c[0].button("Yes, delete it", type="primary"):
        ss.pop("confirm_delete")
        delete_run(info.path)
        st.rerun()
    if c[1].button("Keep it"):
        ss.pop("confirm_delete")
        st.rerun()


def resume_ui(owner: str, info, col) -> None:
    """Resume trains more epochs into the same run folder: its curves go on where they stopped. A shipped
    example is copied into a new run folder of one's own first: the shipped files never change."""
    done = float(info.epochs_done)
    target = int(done) + 1  # a run stopped inside an epoch trains that epoch again, from its start
    label = "Resume (+1 epoch)" if done.is_integer() else f"Resume (finish epoch {target})"
    help = "Trains a copy in a new run folder of yours; the shipped run stays as it is." if info.example else None
    if info.state in ("stopped", "finished") and col.button(label, icon=":material/play_arrow:", help=help):
        try:
            Run(info.path).checkpoint()  # says so now if there are no weights to resume from
            run = copy_example(info.path, owner=owner) if info.example else Run(info.path)
            arch, t, raw = run.config()
            job = manager().submit(owner, arch, replace(t, epochs=target), resume_dir=str(run.path),
                                   tags=raw.get("tags", {}))
            st.session_state["job"] = job.id
            st.rerun()
        except RunError as e:
            st.error(str(e))


def _visible(owner: str, cli: bool, everyone: list, linked: str | None) -> list:
    """This browser's runs (and the command line's, on request), the examples, and a run a link named."""
    mine = {owner, ""} if cli else {owner}
    return [r for r in everyone if r.owner in mine or r.path == linked or r.example]


def _pick_from_link(everyone: list) -> str | None:
    """The run a link names (once per visit), whoever's it is; it is listed from then on."""
    got = share.restore(train_schema([r.name for r in everyone]))
    if RUN not in got:
        return None
    st.session_state["tr_linked"] = next(r.path for r in everyone if r.name == got[RUN])
    return st.session_state["tr_linked"]


def _pick(runs: list, linked: str | None) -> None:
    """Which run is looked at: a link's, or the user's own pick, or else the default, which it follows (so
    that a run just finished replaces the shipped one). A link naming the default (a reload) still follows."""
    ss = st.session_state
    listed = {r.path for r in runs}
    default = runs[_default_pick(runs)].path
    if linked:
        ss["tr_run_draft"], ss["tr_run_chosen"] = linked, linked != default
    if not (ss.get("tr_run_chosen") and ss.get("tr_run_draft") in listed):
        ss["tr_run"] = default
    elif ss.get("tr_run") not in listed or linked:  # a link, or back from another page (its widget forgotten)
        ss["tr_run"] = ss["tr_run_draft"]


def runs_ui(owner: str) -> None:
    """The saved runs of this browser (and the command line's, on request), compared; one looked at."""
    ss = st.session_state
    everyone = list_runs()  # everyone's, and the shipped examples: a link may name any of them
    linked = _pick_from_link(everyone)
    cli = st.checkbox("Include runs made from the command line")
    runs = _visible(owner, cli, everyone, ss.get("tr_linked"))
    if not runs:
        st.caption("No saved runs yet: start one above.")
        share.sync_url({}, train_schema([]))
        return
    settings = _labels(runs)
    st.dataframe([{"run": r.name, "network": r.preset, "settings that differ": s, "state": r.state,
                   "epochs": r.epochs_done, "test acc": r.test_acc, "example": r.example, "note": r.message}
                  for r, s in zip(runs, settings)], hide_index=True, width="stretch",
                 column_config={"example": st.column_config.CheckboxColumn(help="Shipped with the app")})
    paths = [r.path for r in runs]  # a name could be both a run of one's own and an example's: paths are not
    by_path = {r.path: r for r in runs}
    label = {r.path: f"{r.name} · {s}" if s else r.name for r, s in zip(runs, settings)}
    chosen = st.multiselect("Compare runs", paths, default=paths[:min(3, len(paths))], format_func=label.get)
    curves = {label[p]: list(by_path[p].epochs) for p in chosen}
    if any(curves.values()):
        st.plotly_chart(compare_runs({k: v for k, v in curves.items() if v}), width="stretch")
    _pick(runs, linked)
    pick = ss["tr_run_draft"] = st.selectbox("Look at one run", paths, format_func=label.get, key="tr_run",
                                             on_change=lambda: ss.update(tr_run_chosen=True))
    info = by_path[pick]
    share.sync_url({RUN: info.name}, train_schema([r.name for r in everyone]))
    foreign = not info.example and info.owner not in (owner, "")
    if info.example or foreign:
        st.caption("A shipped example, trained when the app was built: its curves, internals and embedding are "
                   "real." if info.example else "Another session's run, shared by a link: only that session "
                   "can resume or delete it.")
    c = st.columns([1, 1, 4])
    delete_ui(info, "example" if info.example else "foreign" if foreign else None, c[0])
    if not foreign:
        resume_ui(owner, info, c[1])
    run_view(info)


def run_view(info) -> None:
    """One saved run: its curves, what happened inside, the embedding, and what it got wrong."""
    run = Run(info.path)
    if info.state == "damaged":
        st.warning(f"This run folder is damaged: {info.message}. Delete it, or mend the file it names.")
        return
    if run_curves := step_curve(run.metrics()):
        try:
            arch, t, _ = run.config()
            book = D2L_REFERENCE if is_d2l_recipe(arch, t) else None
        except RunError:
            book = None
        st.plotly_chart(training_curves(run_curves, list(info.epochs), info.name, book), width="stretch",
                        key="picked-curves")
    internals_ui(run.internals(), "picked")
    embedding_ui(info.path)
    mistakes_ui(run)


def mistakes_ui(run: Run) -> None:
    """The confusion matrix and a gallery of misclassified test images."""
    preds = run.test_preds()
    if preds is None:
        st.caption("No test-set predictions saved for this run (they are written at each epoch end).")
        return
    ds = manager().data()
    labels = ds.test_y.numpy()
    if len(labels) != len(preds):
        st.warning("This run was trained on a different test set than the one loaded now.")
        return
    m = test_mistakes(preds, labels)
    if m.outside:
        st.caption(f"{m.outside:,} predictions fell on outputs beyond the 10 Fashion-MNIST classes; "
                   f"the matrix leaves them out.")
    st.plotly_chart(confusion_matrix(m.confusion, CLASSES), width="stretch")
    st.markdown(f"**Misclassified test images**: {len(m.wrong):,} of {len(labels):,}")
    shown = m.wrong[:24]
    for row in range(0, len(shown), 8):  # a row of columns at a time: in reading order, also when a phone stacks them
        for col, i in zip(st.columns(8), shown[row:row + 8]):
            col.image(ds.test_x[i].numpy(), width=84, caption=f"true {CLASSES[labels[i]]} · said {class_name(preds[i])}")


def internals_ui(records: list[dict], key: str) -> None:
    """Inside the network while it learns: gradient norms, update ratios, dead ReLUs, distributions."""
    if not records:
        return
    records = thin_records(records, 400)
    with st.expander("Inside the network: gradients, updates, dead ReLUs, distributions", expanded=True):
        st.caption(f"Sampled every {records[-1]['every']} step(s), which keeps the cost within 5% of the "
                   f"training time. A first layer whose gradient is orders of magnitude below the last's is a "
                   f"vanishing gradient (try lenet5's sigmoids); update ratios near 1e-3 are the usual rule of "
                   f"thumb; a dead ReLU unit gave 0 for every image of the batch.")
        c = st.columns(3 if records[-1]["relus"] else 2)
        c[0].plotly_chart(internals_lines(records, "grad_norm", "Gradient norm per layer", log_y=True),
                          width="stretch", key=f"gn-{key}")
        c[1].plotly_chart(internals_lines(records, "update_ratio", "Update ratio ‖Δw‖/‖w‖", log_y=True),
                          width="stretch", key=f"ur-{key}")
        if records[-1]["relus"]:
            c[2].plotly_chart(internals_lines(records, "dead", "Dead ReLU units"), width="stretch", key=f"dr-{key}")
        layer = st.selectbox("Distributions of layer", records[-1]["layers"], key=f"hl-{key}")
        c = st.columns(2)
        c[0].plotly_chart(internals_heatmap(records, layer, "w"), width="stretch", key=f"hw-{key}")
        c[1].plotly_chart(internals_heatmap(records, layer, "g"), width="stretch", key=f"hg-{key}")


@st.cache_data(max_entries=8, show_spinner=False)
def _projections(run_path: str, index_mtime: float, data_source: str):
    return project_run(run_path, manager().data())


def embedding_ui(run_path: str) -> None:
    """The test images' penultimate features in 2-D at each snapshot; a click shows the image."""
    index = Path(run_path, "snapshots", "index.json")
    if not st.toggle("Embedding: watch the classes separate", key="embedding",
                     help="The penultimate layer's features of 2,000 test images (500 for a 224×224 net), "
                          "projected to 2-D with PCA at each snapshot and aligned to the last one."):
        return
    ds = manager().data()
    with st.spinner("Projecting the test images at each snapshot…"):
        frames, labels, idx = _projections(run_path, index.stat().st_mtime if index.exists() else 0.0, ds.source)
    ev = st.plotly_chart(embedding_scatter(frames, labels, idx, CLASSES), width="stretch", key="embedding-chart",
                         on_select="rerun", selection_mode="points")
    st.caption(f"{len(idx):,} test images, one point each, coloured by their true class; the slider (or ▶) "
               f"moves through the {len(frames)} snapshot(s). Click a point to see its image.")
    picked = [int(p["customdata"]) for p in (ev.selection.points if ev else []) if "customdata" in p][:8]
    cols = st.columns(8)
    for k, i in enumerate(picked):
        cols[k].image(ds.test_x[i].numpy(), width=84, caption=f"#{i} · {CLASSES[int(ds.test_y[i])]}")
