"""Train: d2l's settings, a background run, live charts, and what the run got wrong."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from ..config import PRESETS, default_training, get_preset
from ..data import CLASSES, available_devices
from ..jobs import JobManager
from ..plots import compare_runs, confusion_matrix, training_curves
from ..runs import Run, RunError, delete_run, list_runs
from ..train import confusion
from .common import current_arch, owner_id


@st.cache_resource
def manager() -> JobManager:
    """One trainer for the whole server: jobs from every browser session queue here."""
    return JobManager()


def settings_ui() -> tuple | None:
    """The network and the training settings; returns (arch, TrainConfig) or None if the config is bad."""
    source = st.radio("Network", ["The Architect's network", "A preset"], horizontal=True,
                      index=0 if available_devices()[0] == "cuda" else 1,
                      help="On a CPU, mini28 trains an epoch in under a minute; d2l's 224×224 net takes hours.")
    if source == "A preset":
        arch = get_preset(st.selectbox("Preset", list(PRESETS), index=list(PRESETS).index("mini28")))
    else:
        arch = current_arch()
    base = default_training(arch.name)
    st.caption(f"**{arch.name}**: {arch.in_channels}×{arch.input_size}×{arch.input_size} input, "
               f"{len(arch.convs)} conv blocks, hidden {list(arch.hidden)}. Fashion-MNIST is resized to the "
               f"network's input on the device.")
    c = st.columns(4)
    epochs = c[0].number_input("Epochs", 1, 100, base.epochs)
    batch = c[1].number_input("Batch size", 1, 4096, base.batch_size)
    lr = c[2].number_input("Learning rate", 1e-5, 10.0, base.lr, format="%.4f")
    opt = c[3].selectbox("Optimizer", ["sgd", "momentum", "adam"], ["sgd", "momentum", "adam"].index(base.optimizer),
                         format_func={"sgd": "SGD (d2l)", "momentum": "SGD + momentum 0.9", "adam": "Adam"}.get)
    c = st.columns(4)
    wd = c[0].number_input("Weight decay", 0.0, 1.0, base.weight_decay, format="%.5f")
    cap = c[1].number_input("Max batches per epoch (0 = all)", 0, 100_000, 0,
                            help="A cap for quick demos: a few batches show the curves move.")
    seed = c[2].number_input("Seed", 0, 2**31 - 1, base.seed)
    device = c[3].selectbox("Device", ["auto", *available_devices()], help="auto = CUDA, then Apple MPS, then CPU")
    c = st.columns(4)
    augment = c[0].checkbox("Augment (random crop + flip)", base.augment)
    amp = c[1].checkbox("Mixed precision (bf16)", base.amp, help="On: bf16 on CUDA, and on a CPU when a short measurement "
                                                                  "shows it is faster there (the run says which). Off: fp32.")
    xavier = c[2].checkbox("Xavier init (d2l)", base.init == "xavier")
    t = replace(base, epochs=int(epochs), batch_size=int(batch), lr=float(lr), optimizer=opt,
                weight_decay=float(wd), max_batches=int(cap), seed=int(seed), device=device, augment=augment,
                amp=amp, init="xavier" if xavier else "default")
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
        st.info(f"Queued: place {place} — one training job runs at a time on this server.")
    elif last:
        st.progress(min(last["progress"], 1.0),
                    text=f"epoch {last['epoch']:.2f} / {job.train.epochs} · loss {last['loss']:.3f} · "
                         f"train acc {last['acc']:.3f} · {last['examples_per_sec']:,.0f} examples/sec · "
                         f"ETA {last['eta']:.0f} s")
    elif job.state == "running":
        st.progress(0.0, text="starting: loading the data onto the device…")
    for p in job.records.get("precision", [])[-1:]:
        st.caption(f"Precision on {p['device']}: {p['reason']}")
    if job.steps:
        st.plotly_chart(training_curves(job.steps, job.epochs, job.arch.name), width="stretch",
                        key=f"curves-{job.id}-{len(job.steps)}")
    if job.epochs:
        e = job.epochs[-1]
        st.caption(f"epoch {e['epoch']}: loss {e['train_loss']:.3f}, train acc {e['train_acc']:.3f}, "
                   f"test acc {e['test_acc']:.3f}, {e['examples_per_sec']:,.0f} examples/sec")
    if job.active:
        if st.button("Stop", icon=":material/stop:", key=f"stop-{job.id}"):
            mgr.stop(job)
    else:
        msg = f"Run {job.state}: {job.message}" + (f" — saved in `{job.run_dir}`" if job.run_dir else "")
        (st.error if job.state == "error" else st.success)(msg)
        if not st.session_state.get(f"done-{job.id}"):
            st.session_state[f"done-{job.id}"] = True
            st.rerun()  # once, the whole page: stop polling, list the new run


def results_ui(owner: str) -> None:
    cli = st.checkbox("Include runs made from the command line")
    runs = list_runs(owners={owner, ""} if cli else {owner})
    if not runs:
        st.caption("No saved runs yet: start one above.")
        return
    st.dataframe([{"run": r.name, "network": r.preset, "state": r.state, "epochs": r.epochs_done,
                   "test acc": r.test_acc, "note": r.message} for r in runs], hide_index=True, width="stretch")
    names = [r.name for r in runs]
    by_name = {r.name: r for r in runs}
    chosen = st.multiselect("Compare runs", names, default=names[:min(3, len(names))])
    curves = {n: list(by_name[n].epochs) for n in chosen}
    if any(curves.values()):
        st.plotly_chart(compare_runs({k: v for k, v in curves.items() if v}), width="stretch")
    pick = st.selectbox("Look at one run", names)
    run = Run(by_name[pick].path)
    c = st.columns([1, 1, 4])
    if c[0].button("Delete this run", icon=":material/delete:", disabled=by_name[pick].state == "running"):
        delete_run(run.path)
        st.rerun()
    resumable = by_name[pick].state in ("stopped", "finished")
    if resumable and c[1].button("Resume (+1 epoch)", icon=":material/play_arrow:"):
        try:
            arch, t, _ = run.config()
            done = int(run.checkpoint()["epoch"])
            manager().submit(owner, arch, replace(t, epochs=done + 1), resume_dir=str(run.path))
            st.rerun()
        except RunError as e:
            st.error(str(e))
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
                          caption=f"true {CLASSES[labels[i]]} · said {CLASSES[preds[i]]}")


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
    arch, t = settings_ui()
    mine = mgr.jobs_for(owner)
    active = next((j for j in reversed(mine) if j.active), None)
    if st.button("Start training", icon=":material/play_arrow:", type="primary", disabled=active is not None):
        active = mgr.submit(owner, arch, t)
        st.session_state["job"] = active.id
    job_id = (active.id if active else None) or st.session_state.get("job") or (mine[-1].id if mine else None)
    if job_id:
        job = mgr.get(job_id, owner)
        if job is not None:
            st.fragment(run_every=1.0 if job.active else None)(live_ui)(job_id)
    st.subheader("Saved runs")
    results_ui(owner)
