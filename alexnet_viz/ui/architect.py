"""Architect: pick a preset, change any hyperparameter in two tables, see every layer update at once."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from alexnet_viz import links
from alexnet_viz.architect.compare import side_by_side, what_changed
from alexnet_viz.architect.drawing import network_svg, to_png
from alexnet_viz.architect.editor import SETTINGS, edited_name, file_stem
from alexnet_viz.architect.importing import import_network
from alexnet_viz.architect.summary import STRUCTURAL, describe_layers, summarize, table
from alexnet_viz.config import PRESET_NOTES, PRESETS, ArchConfig, ConfigError, get_preset, trace
from alexnet_viz.model import to_pytorch_code
from alexnet_viz.ui import share
from alexnet_viz.ui.common import big_figure, cost_ui, presenter_style, table_ui
from alexnet_viz.ui.editor import settings_ui, tables_ui
from alexnet_viz.ui.plots import per_layer_bars
from alexnet_viz.units import human



@st.cache_data(max_entries=256)
def cached_summary(cfg: ArchConfig):
    """Keyed on the frozen config: flipping back and forth costs nothing."""
    s = summarize(cfg)
    return ([r.to_dict() for r in s.rows], table(s), s.total_params, s.total_macs, s.total_memory,
            describe_layers(s), s.share("Linear", "params"), s.share("Conv2d", "macs"))


@st.cache_data(max_entries=64)
def cached_comparison(a: ArchConfig, b: ArchConfig) -> tuple[list[dict], str]:
    sa, sb = summarize(a), summarize(b)
    return side_by_side(sa, sb), what_changed(sa, sb)


# --- state: the draft network, the network it started from, the tables' source --------------------------
def load(cfg: ArchConfig, origin: ArchConfig | None = None) -> None:
    """Put cfg into the widgets and the tables (from callbacks or before the widgets are drawn)."""
    ss = st.session_state
    for k in SETTINGS:
        ss[k] = getattr(cfg, k)
    ss["draft"], ss["tables_from"] = cfg, cfg
    ss["rev"] = ss.get("rev", 0) + 1  # new table keys: the editors start over from tables_from
    if origin is not None:
        ss["origin"] = origin


def _on_preset():
    ss = st.session_state
    imported = ss.get("imported")
    cfg = imported if imported is not None and ss["preset"] == _imported_label(imported) else get_preset(ss["preset"])
    ss["preset_name"] = ss["preset"]
    load(cfg, origin=cfg)


def _imported_label(cfg: ArchConfig) -> str:
    return f"imported: {cfg.name}"


def _on_import():
    ss = st.session_state
    f = ss.get("import_json")
    if f is None:
        return
    try:
        cfg = import_network(f.getvalue())  # the same validation and cost check as a network in a link
    except ConfigError as e:
        ss["import_error"] = f"That file cannot be imported: {e}"
        return
    ss["import_error"] = None
    take_in(cfg)


def take_in(cfg: ArchConfig) -> None:
    """A network from outside (a file, a link) becomes the preset box's extra entry and the draft."""
    ss = st.session_state
    ss["imported"] = cfg
    ss["preset"] = ss["preset_name"] = _imported_label(cfg)
    load(cfg, origin=cfg)


def restore_ui() -> None:
    """Open the view a link describes (once per visit; one notice names what the link had wrong)."""
    ss = st.session_state
    got = share.restore(links.ARCHITECT)
    if "present" in got:
        ss["presenter"] = got["present"]
    if "net" in got:
        take_in(got["net"])
    elif "preset" in got:
        ss["preset"] = ss["preset_name"] = got["preset"]
        load(get_preset(got["preset"]), origin=get_preset(got["preset"]))


def preset_options() -> list[str]:
    imported = st.session_state.get("imported")
    return list(PRESETS) + ([_imported_label(imported)] if imported is not None else [])


@st.cache_data(max_entries=64)
def cached_png(svg: str) -> bytes | None:
    try:
        return to_png(svg)
    except (ImportError, OSError):  # cairosvg or its cairo library missing: SVG only
        return None


def drawing_ui(draft: ArchConfig, presenter: bool) -> None:
    """The draft network drawn (up to its failing layer, in red), and its downloads."""
    svg = network_svg(draft, scale=1.5 if presenter else 1.0)
    st.markdown(f'<div class="arch-drawing" style="overflow-x:auto; max-width:100%">{svg}</div>'
                '<style>@media (min-width: 700px) {.arch-hint {display: none;}}</style>'
                '<p class="arch-hint">← the drawing scrolls sideways →</p>', unsafe_allow_html=True)
    slug = file_stem(draft)
    c = st.columns([1, 1, 3])
    c[0].download_button("Download drawing (SVG)", svg, f"{slug}.svg", "image/svg+xml")
    png = cached_png(svg)
    if png is not None:
        c[1].download_button("Download drawing (PNG)", png, f"{slug}.png", "image/png")
    else:
        c[1].caption("PNG download needs cairosvg (pip install cairosvg).")


def results_ui(cfg: ArchConfig, presenter: bool = False) -> None:
    rows, display, params, macs, memory, sentences, fc_share, conv_share = cached_summary(cfg)
    m = st.columns(4)
    m[0].metric("Parameters", f"{params:,}")
    m[1].metric("Multiply-accumulates / image", human(macs))
    m[2].metric("Activation memory / image", human(memory, "B"))
    m[3].metric("Weights in float32", human(params * 4, "B"))
    only = st.toggle("Only layers with weights or pooling", value=False)
    df = pd.DataFrame(display)
    table_ui(df[[r["type"] in STRUCTURAL for r in rows]] if only else df, presenter, counts=("params", "MACs"))
    # Lazy tabs and expanders (on_change="rerun"): only what is open is drawn, so a preset switch redraws one
    # chart, not three, and no hidden code or sentences (each a remount in the browser: the chart's id hashes its data).
    with st.expander("Every layer in one sentence", key="arch_sentences", on_change="rerun") as box:
        if box.open:
            st.markdown("\n".join(f"- **{t.split(': ', 1)[0]}**: {t.split(': ', 1)[1]}" for t in sentences))
    st.caption("MACs: multiply-accumulates for one image (conv and linear layers; elementwise layers count 0). "
               "Memory: the layer's output for one image in float32. Receptive field: the input window one "
               "output pixel sees, and the stride between neighbouring windows (jump).")
    t = st.tabs(["Where the parameters are", "Where the compute is", "Where the memory is"], key="arch_chart",
                on_change="rerun")
    for tab, (field, title, unit) in zip(t, (("params", "Parameters per layer", ""),
                                             ("macs", "Multiply-accumulates per layer (one image)", ""),
                                             ("memory", "Activation memory per layer (one image)", " B"))):
        if tab.open:
            tab.plotly_chart(big_figure(per_layer_bars(rows, field, title, unit), presenter), width="stretch")
    st.info(f"The Linear layers hold {fc_share:.0%} of the parameters; the conv layers do {conv_share:.0%} of the "
            f"compute — d2l's exercise: memory lives in the classifier, compute in the features.")


def compare_ui(cfg: ArchConfig, presenter: bool = False) -> None:
    """Two networks' per-layer parameters and MACs next to each other, and what changed."""
    ss = st.session_state
    choices = {"this network": cfg, **PRESETS}
    if ss.get("imported") is not None:
        choices[_imported_label(ss["imported"])] = ss["imported"]
    names = list(choices)
    c = st.columns(2)
    a = c[0].selectbox("Network A", names, index=names.index("lenet5"), key="compare_a")
    b = c[1].selectbox("Network B", names, index=0, key="compare_b")
    rows, sentence = cached_comparison(choices[a], choices[b])
    st.markdown(sentence)
    table_ui(pd.DataFrame(rows), presenter, counts=tuple(k for k in rows[0] if "params" in k or "MACs" in k))
    with st.expander("d2l's exercise: what did AlexNet change from LeNet, and d2l from the paper?"):
        for x, y in (("lenet5", "alexnet2012"), ("alexnet2012", "d2l")):
            st.markdown(f"- {cached_comparison(PRESETS[x], PRESETS[y])[1]}")


def export_ui(cfg: ArchConfig) -> None:
    c = st.columns(3)
    slug = file_stem(cfg)
    code = to_pytorch_code(cfg)
    c[0].download_button("Download config JSON", cfg.to_json(), f"{slug}.json", "application/json")
    c[1].download_button("Download PyTorch code", code, f"{slug}.py", "text/x-python")
    c[2].file_uploader("Import a config JSON", type=["json"], key="import_json", on_change=_on_import)
    if st.session_state.get("import_error"):
        st.error(st.session_state["import_error"])
    with st.expander("PyTorch code", key="arch_code", on_change="rerun") as box:
        if box.open:
            st.code(code, language="python")


def page() -> None:
    ss = st.session_state
    if "draft" not in ss:
        d2l = get_preset("d2l")
        ss["preset_name"] = "d2l"
        load(d2l, origin=d2l)
    restore_ui()
    c = st.columns([3, 1])
    presenter = c[0].toggle("Presenter mode", key="presenter",
                            help="Large type and charts for a projector; the editing controls are hidden.")
    presenter_style(presenter)
    share_box = c[1].container()
    st.title("Architect")
    if not presenter:
        # Streamlit drops a widget's state while it is not drawn (another page, presenter mode): the draft
        # (a plain key) keeps the user's network and puts it back into the widgets and tables.
        if any(k not in ss for k in (*SETTINGS, "preset", f"convs_{ss['rev']}")):
            ss["preset"] = ss["preset_name"]
            load(ss["draft"])
        st.selectbox("Preset", preset_options(), key="preset", on_change=_on_preset,
                     help="Loads a whole network; then change anything below.")
    origin = ss["origin"]
    st.caption(PRESET_NOTES.get(origin.name) if PRESETS.get(origin.name) == origin
               else f"Imported: {origin.name}" if ss.get("imported") == origin else "")
    drawing = st.container()  # filled once the editor below has given the draft
    cfg = ss["draft"]
    try:
        if not presenter:
            st.subheader("Edit the network")
            settings_ui()
            cfg = tables_ui(ss["tables_from"], ss["rev"], ArchConfig(name=origin.name, **{k: ss[k] for k in SETTINGS}))
            cfg = ss["draft"] = replace(cfg, name=edited_name(origin, cfg))
        error = trace(cfg).error
    except ConfigError as e:
        error = e
    draft = cfg
    with drawing:
        drawing_ui(draft, presenter)
        if error is not None:
            st.error(f"This network cannot work: {error}")
            cfg = ss.get("last_valid") or origin
            st.caption(f"The drawing shows your network up to the layer that fails; the numbers below are for "
                       f"the last network that worked ({cfg.name}).")
        else:
            ss["last_valid"] = cfg
    cost_ui(cfg)  # training estimate for this network; a warning when it or its analysis does not fit
    st.subheader("Layer by layer")
    results_ui(cfg, presenter)
    # Lazy (drawn only while open): a preset switch redraws neither, each a table or a row of widgets in the browser.
    with st.expander("**Two networks side by side**: LeNet, the paper's AlexNet, d2l's and yours, layer by layer",
                     key="arch_compare", on_change="rerun") as box:
        if box.open:
            compare_ui(cfg, presenter)
    if not presenter:
        with st.expander("**Export and import**: the config as JSON, the network as PyTorch code",
                         key="arch_export", on_change="rerun") as box:
            if box.open:
                export_ui(cfg)
    share.sync_url(links.architect_values(cfg, presenter), links.ARCHITECT)
    with share_box:
        share.share_ui()  # after sync_url: the link is this run's view
