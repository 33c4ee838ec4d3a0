"""Train: d2l's settings, a background run, live charts, and what the run got wrong."""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from alexnet_viz.config import PRESETS, TRAIN_LIMITS, ArchConfig, TrainConfig, default_training, get_preset, preset_of
from alexnet_viz.data import available_devices
from alexnet_viz.runs.store import Run, RunError, list_runs
from alexnet_viz.training.experiments import D2L_REFERENCE, is_d2l_recipe, thin_records
from alexnet_viz.ui import share
from alexnet_viz.ui.common import cost_ui, current_arch, manager, owner_id
from alexnet_viz.ui.plots import training_curves
from alexnet_viz.ui.train_runs import internals_ui, runs_ui


# A watching session's redraws are server time taken from the run it watches (on one core, 3.7 s a
# minute a session at 1 s and 5 s: bench classroom): every 2 s, and the internals every 10 s.
LIVE_S = 2.0        # the live run's progress bar and curves redraw this often
INTERNALS_S = 10.0  # its five internals charts this often (each redraw of them cost the server ~40 ms)
CURVE_POINTS = 300  # the live curves' points at most
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
    for r in list_runs(owners={owner}, examples=False):  # not a shipped run: this browser's own
        try:
            arch, t, _ = Run(r.path).config()
        except RunError:
            continue
        if preset := preset_of(arch):
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
    ss.update(_training_values(default_training(_network())) | keep)


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
    t = replace(default_training(arch), epochs=int(ss["tr_epochs"]), batch_size=int(ss["tr_batch"]),
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
        st.info(f"Queued: place {place}{when} (from the estimates of the jobs ahead). {mgr.admission_rule(job)}")
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
        steps = thin_records(job.steps[:n_steps], CURVE_POINTS)  # a redraw a second sends a chart's worth, not every report
        st.plotly_chart(training_curves(steps, job.epochs[:n_epochs], job.arch.name, book),
                        width="stretch", key=f"curves-{job.id}")
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


def live_internals_ui(job_id: str) -> None:
    """The live run's internals: five charts, redrawn every INTERNALS_S (a fragment of their own), not
    with the progress bar every LIVE_S."""
    job = manager().get(job_id, owner_id())
    if job is not None:
        internals_ui(job.records.get("internals", []), f"live-{job.id}")


def page() -> None:
    owner = owner_id()
    mgr = manager()
    c = st.columns([3, 1])
    share_box = c[1].container()  # filled last, once the URL holds the run looked at
    c[0].title("Train")
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
            st.fragment(run_every=LIVE_S if job.active else None)(live_ui)(job_id)
            st.fragment(run_every=INTERNALS_S if job.active else None)(live_internals_ui)(job_id)
    st.subheader("Saved runs")
    runs_ui(owner)
    with share_box:
        share.share_ui()
