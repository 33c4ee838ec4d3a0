"""Train: d2l's settings, a background run, live charts, and what the run got wrong."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st

from alexnet_viz.config import PRESETS, TRAIN_LIMITS, ArchConfig, TrainConfig, default_training, get_preset
from alexnet_viz.data import CLASSES, available_devices
from alexnet_viz.training.experiments import D2L_REFERENCE, distinguishing_labels, is_d2l_recipe
from alexnet_viz.inspect.embedding import project_run
from alexnet_viz.ui.plots import compare_runs, confusion_matrix, embedding_scatter, internals_heatmap, internals_lines, training_curves
from alexnet_viz.runs.store import Run, RunError, delete_run, list_runs, step_curve
from alexnet_viz.training.engine import confusion
from alexnet_viz.ui.common import cost_ui, current_arch, manager, owner_id


OPTIMIZERS = {"sgd": "SGD (d2l)", "momentum": "SGD + momentum 0.9", "adam": "Adam"}
SOURCES = ("The Architect's network", "A preset")
# The settings' widget keys. Streamlit forgets a widget's state while its page is not drawn, so a
# draft (a plain key) keeps them across visits to other pages; a reload starts a new session, which
# takes the settings of the newest run this browser started (the sid in the URL finds it).
TRAIN_KEYS = ("tr_epochs", "tr_batch", "tr_lr", "tr_opt", "tr_wd", "tr_cap", "tr_seed", "tr_device",
              "tr_augment", "tr_amp", "tr_xavier")


def _training_values(t: TrainConfig) -> dict:
    device = t.device if t.device in ("auto", *available_devices()) else "auto"
    return {"tr_epochs": t.epochs, "tr_batch": t.batch_size, "tr_lr": float(t.lr), "tr_opt": t.optimizer,
            "tr_wd": float(t.weight_decay), "tr_cap": t.max_batches, "tr_seed": t.seed, "tr_device": device,
            "tr_augment": t.augment, "tr_amp": t.amp, "tr_xavier": t.init == "xavier"}


def _first_draft(owner: str) -> dict:
    """A new session's settings: those of the newest run this browser started, else mini28's defaults."""
    source = 0 if available_devices()[0] == "cuda" else 1
    draft = {"tr_source": SOURCES[source], "tr_preset": "mini28", **_training_values(default_training("mini28"))}
    for r in list_runs(owners={owner}):
        try:
            arch, t, _ = Run(r.path).config()
        except RunError:
            continue
        preset = next((n for n, p in PRESETS.items() if replace(p, name=arch.name) == arch), None)
        if preset:
            draft |= {"tr_source": "A preset", "tr_preset": preset}
        return draft | _training_values(t)
    return draft


def _network() -> ArchConfig:
    ss = st.session_state
    return get_preset(ss["tr_preset"]) if ss["tr_source"] == "A preset" else current_arch()


def _on_network() -> None:
    """A new network brings its own training defaults; the cap, seed and device stay as chosen."""
    ss = st.session_state
    keep = {k: ss[k] for k in ("tr_cap", "tr_seed", "tr_device") if k in ss}
    ss.update(_training_values(default_training(_network().name)) | keep)


def settings_ui(owner: str) -> tuple[ArchConfig, TrainConfig]:
    """The network and the training settings; returns (arch, TrainConfig)."""
    ss = st.session_state
    if "train_draft" not in ss:
        ss["train_draft"] = _first_draft(owner)
    for k, v in ss["train_draft"].items():
        if k not in ss:  # back from another page (or a new session): the draft refills the widgets
            ss[k] = v
    st.radio("Network", SOURCES, horizontal=True, key="tr_source", on_change=_on_network,
             help="On a CPU, mini28 trains an epoch in under a minute; d2l's 224×224 net takes hours.")
    if ss["tr_source"] == "A preset":
        st.selectbox("Preset", list(PRESETS), key="tr_preset", on_change=_on_network)
    arch = _network()
    st.caption(f"**{arch.name}**: {arch.in_channels}×{arch.input_size}×{arch.input_size} input, "
               f"{len(arch.convs)} conv blocks, hidden {list(arch.hidden)}. Fashion-MNIST is resized to the "
               f"network's input on the device.")
    c = st.columns(4)
    c[0].number_input("Epochs", *TRAIN_LIMITS["epochs"], key="tr_epochs")
    c[1].number_input("Batch size", *TRAIN_LIMITS["batch_size"], key="tr_batch")
    c[2].number_input("Learning rate", *TRAIN_LIMITS["lr"], format="%.6f", key="tr_lr")
    c[3].selectbox("Optimizer", list(OPTIMIZERS), format_func=OPTIMIZERS.get, key="tr_opt")
    c = st.columns(4)
    c[0].number_input("Weight decay", *TRAIN_LIMITS["weight_decay"], format="%.5f", key="tr_wd")
    c[1].number_input("Max batches per epoch (0 = all)", *TRAIN_LIMITS["max_batches"], key="tr_cap",
                      help="A cap for quick demos: a few batches show the curves move.")
    c[2].number_input("Seed", *TRAIN_LIMITS["seed"], key="tr_seed")
    c[3].selectbox("Device", ["auto", *available_devices()], key="tr_device",
                   help="auto = CUDA, then Apple MPS, then CPU")
    c = st.columns(4)
    c[0].checkbox("Augment (random crop + flip)", key="tr_augment")
    c[1].checkbox("Mixed precision (bf16)", key="tr_amp", help="On: bf16 on CUDA, and on a CPU when a short "
                  "measurement shows it is faster there (the run says which). Off: fp32.")
    c[2].checkbox("Xavier init (d2l)", key="tr_xavier")
    ss["train_draft"] = {k: ss[k] for k in ("tr_source", "tr_preset", *TRAIN_KEYS) if k in ss}
    t = replace(default_training(arch.name), epochs=int(ss["tr_epochs"]), batch_size=int(ss["tr_batch"]),
                lr=float(ss["tr_lr"]), optimizer=ss["tr_opt"], weight_decay=float(ss["tr_wd"]),
                max_batches=int(ss["tr_cap"]), seed=int(ss["tr_seed"]), device=ss["tr_device"],
                augment=bool(ss["tr_augment"]), amp=bool(ss["tr_amp"]),
                init="xavier" if ss["tr_xavier"] else "default")
    if is_d2l_recipe(arch, t):
        st.caption("This is d2l's recipe: the book's published figures after 10 epochs (loss 0.331, train acc "
                   "0.878, test acc 0.883) are drawn on the curves as stars.")
    return arch, t


def live_ui(job_id: str) -> None:
    """Polls the background job; drawn as a fragment that re-runs itself every second while active."""
    mgr, owner = manager(), owner_id()
    job = mgr.get(job_id, owner)
    if job is None:
        return
    place = mgr.place(job)
    last = job.latest()
    if job.state == "queued":
        wait = mgr.estimated_start(job)
        when = f" — estimated start in about {wait / 60:.0f} min" if wait and wait >= 90 else (
            f" — estimated start in about {wait:.0f} s" if wait else "")
        st.info(f"Queued: place {place}{when} (from the estimates of the jobs ahead). {mgr.admission_rule()}")
    elif last:
        eta = f" · ETA {last['eta']:.0f} s" if job.state == "running" else ""  # a stopped run has no ETA
        st.progress(min(last["progress"], 1.0),
                    text=f"epoch {last['epoch']:.2f} / {job.train.epochs} · loss {last['loss']:.3f} · "
                         f"train acc {last['acc']:.3f} · {last['examples_per_sec']:,.0f} examples/sec{eta}")
    elif job.state == "running":
        st.progress(0.0, text="starting: the training process is loading the data onto the device…")
    for p in job.records.get("precision", [])[-1:]:
        st.caption(f"Precision on {p['device']}: {p['reason']}")
    if job.steps:
        # Streamlit (1.67) derives a chart's identity from its figure, so a chart whose data changed is
        # mounted afresh and loses the user's zoom, whatever its key. Holding the chart draws the same
        # figure again: the same chart stays, zoom and hover with it, while the progress bar goes on.
        hold = job.active and st.toggle("Hold the chart", key=f"hold-{job.id}",
                                        help="Zoom and hover in peace: the chart stops redrawing; the run goes on.")
        now, held = (len(job.steps), len(job.epochs)), f"held-{job.id}"
        if hold:
            st.session_state.setdefault(held, now)
        else:
            st.session_state.pop(held, None)
        n_steps, n_epochs = st.session_state.get(held, now)
        book = D2L_REFERENCE if is_d2l_recipe(job.arch, job.train) else None
        st.plotly_chart(training_curves(job.steps[:n_steps], job.epochs[:n_epochs], job.arch.name, book),
                        width="stretch", key=f"curves-{job.id}")
    if job.epochs:
        e = job.epochs[-1]
        st.caption(f"epoch {e['epoch']}: loss {e['train_loss']:.3f}, train acc {e['train_acc']:.3f}, "
                   f"test acc {e['test_acc']:.3f}, {e['examples_per_sec']:,.0f} examples/sec")
    internals_ui(job.records.get("internals", []), f"live-{job.id}")
    if job.active:
        if st.button("Stop", icon=":material/stop:", key=f"stop-{job.id}"):
            mgr.stop(job)
    else:
        msg = f"Run {job.state}: {job.message}" + (f" — saved in `{job.run_dir}`" if job.run_dir else "")
        (st.error if job.state == "error" else st.success)(msg)
        if not st.session_state.get(f"done-{job.id}"):
            st.session_state[f"done-{job.id}"] = True
            st.rerun()  # once, the whole page: stop polling, list the new run


def _default_pick(runs) -> int:
    """The newest finished run (it has a confusion matrix), else the newest."""
    return next((i for i, r in enumerate(runs) if r.state == "finished"), 0)


def delete_ui(run_path: str, name: str, disabled: bool, col) -> None:
    """Delete in two clicks: the first asks, the second deletes."""
    ss = st.session_state
    if col.button("Delete this run", icon=":material/delete:", disabled=disabled):
        ss["confirm_delete"] = run_path
    if ss.get("confirm_delete") != run_path:
        return
    st.warning(f"Delete **{name}** with its weights and metrics? This cannot be undone.")
    c = st.columns([1, 1, 4])
    if c[0].button("Yes, delete it", type="primary"):
        ss.pop("confirm_delete")
        delete_run(run_path)
        st.rerun()
    if c[1].button("Keep it"):
        ss.pop("confirm_delete")
        st.rerun()


def resume_ui(owner: str, info, col) -> None:
    """Resume trains more epochs into the same run folder: its curves go on where they stopped."""
    done = float(info.epochs_done)
    target = int(done) + 1  # a run stopped inside an epoch trains that epoch again, from its start
    label = "Resume (+1 epoch)" if done.is_integer() else f"Resume (finish epoch {target})"
    if info.state in ("stopped", "finished") and col.button(label, icon=":material/play_arrow:"):
        try:
            arch, t, _ = Run(info.path).config()
            Run(info.path).checkpoint()  # says so now if there are no weights to resume from
            job = manager().submit(owner, arch, replace(t, epochs=target), resume_dir=info.path, tags=info.tags)
            st.session_state["job"] = job.id
            st.rerun()
        except RunError as e:
            st.error(str(e))


def results_ui(owner: str) -> None:
    cli = st.checkbox("Include runs made from the command line")
    runs = list_runs(owners={owner, ""} if cli else {owner})
    if not runs:
        st.caption("No saved runs yet: start one above.")
        return
    settings = distinguishing_labels([r.config for r in runs])
    st.dataframe([{"run": r.name, "network": r.preset, "settings that differ": s, "state": r.state,
                   "epochs": r.epochs_done, "test acc": r.test_acc, "note": r.message}
                  for r, s in zip(runs, settings)], hide_index=True, width="stretch")
    names = [r.name for r in runs]
    by_name = {r.name: r for r in runs}
    label = {r.name: f"{r.name} · {s}" if s else r.name for r, s in zip(runs, settings)}
    chosen = st.multiselect("Compare runs", names, default=names[:min(3, len(names))], format_func=label.get)
    curves = {label[n]: list(by_name[n].epochs) for n in chosen}
    if any(curves.values()):
        st.plotly_chart(compare_runs({k: v for k, v in curves.items() if v}), width="stretch")
    pick = st.selectbox("Look at one run", names, index=_default_pick(runs), format_func=label.get)
    info = by_name[pick]
    run = Run(info.path)
    c = st.columns([1, 1, 4])
    delete_ui(info.path, pick, info.state == "running", c[0])
    resume_ui(owner, info, c[1])
    if info.state == "damaged":
        st.warning(f"This run folder is damaged: {info.message}. Delete it, or mend the file it names.")
        return
    if run_curves := step_curve(run.metrics()):
        try:
            arch, t, _ = run.config()
            book = D2L_REFERENCE if is_d2l_recipe(arch, t) else None
        except RunError:
            book = None
        st.plotly_chart(training_curves(run_curves, list(info.epochs), pick, book), width="stretch",
                        key="picked-curves")
    internals_ui(run.internals(), "picked")
    embedding_ui(info.path)
    preds = run.test_preds()
    if preds is None:
        st.caption("No test-set predictions saved for this run (they are written at each epoch end).")
        return
    ds = manager().data()
    labels = ds.test_y.numpy()
    if len(labels) != len(preds):
        st.warning("This run was trained on a different test set than the one loaded now.")
        return
    inside = preds < len(CLASSES)  # a net with more outputs than Fashion-MNIST's 10 classes can say "class 537"
    if not inside.all():
        st.caption(f"{(~inside).sum():,} predictions fell on outputs beyond the 10 Fashion-MNIST classes; "
                   f"the matrix leaves them out.")
    cm = confusion(preds[inside].astype(np.int64), labels[inside])
    st.plotly_chart(confusion_matrix(cm, CLASSES), width="stretch")
    wrong = np.flatnonzero(preds != labels)
    st.markdown(f"**Misclassified test images**: {len(wrong):,} of {len(labels):,}")
    shown = wrong[:24]
    cols = st.columns(8)
    for k, i in enumerate(shown):
        cols[k % 8].image(ds.test_x[i].numpy(), width=84,
                          caption=f"true {CLASSES[labels[i]]} · said {_class_name(preds[i])}")


def page() -> None:
    owner = owner_id()
    mgr = manager()
    st.title("Train")
    ds = mgr.data()
    if ds.is_sample:
        st.warning(f"Offline: training on the {ds.source}. Set ALEXNET_VIZ_DATA to a folder holding "
                   f"FashionMNIST/raw to use the full dataset.")
    else:
        st.caption(f"Fashion-MNIST from {ds.source}: {len(ds.train_y):,} training and {len(ds.test_y):,} test images.")
    arch, t = settings_ui(owner)
    mine = mgr.jobs_for(owner)
    active = next((j for j in reversed(mine) if j.active), None)
    fits = cost_ui(arch, t, len(ds.train_y), len(ds.test_y))  # refused before anything is allocated when it does not fit
    if st.button("Start training", icon=":material/play_arrow:", type="primary", disabled=active is not None or not fits):
        active = mgr.submit(owner, arch, t)
        st.session_state["job"] = active.id
    job_id = (active.id if active else None) or st.session_state.get("job") or (mine[-1].id if mine else None)
    if job_id:
        job = mgr.get(job_id, owner)
        if job is not None:
            st.fragment(run_every=1.0 if job.active else None)(live_ui)(job_id)
    st.subheader("Saved runs")
    results_ui(owner)


def _class_name(i) -> str:
    """Fashion-MNIST's name for an output, or its number for a network with more outputs (1000-class)."""
    return CLASSES[i] if 0 <= i < len(CLASSES) else f"output {int(i)}"


def internals_ui(records: list[dict], key: str) -> None:
    """Inside the network while it learns: gradient norms, update ratios, dead ReLUs, distributions."""
    if not records:
        return
    records = records[::-(-len(records) // 400)]  # at most 400 samples drawn
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
