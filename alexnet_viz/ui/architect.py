"""Architect: pick a preset, change any hyperparameter in two tables, see every layer update at once."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from alexnet_viz.architect.compare import side_by_side, what_changed
from alexnet_viz.config import (ACTIVATIONS, IN_CHANNELS, LIMITS, PRESET_NOTES, PRESETS, ArchConfig, ConfigError, get_preset, trace)
from alexnet_viz.architect.editor import CONV_COLUMNS, HIDDEN_COLUMNS, Column, config_from_rows, conv_rows, edited_name, hidden_rows
from alexnet_viz.model import to_pytorch_code
from alexnet_viz.architect.drawing import network_svg, to_png
from alexnet_viz.ui.plots import per_layer_bars
from alexnet_viz.architect.summary import describe_layers, summarize, table
from alexnet_viz.ui.common import cost_ui
from alexnet_viz.units import human

SETTINGS = ("in_channels", "input_size", "num_classes", "fc_activation", "dropout", "adaptive_pool")
PRESENTER_CSS = """<style>
.stApp { font-size: 1.3rem; }
.stApp [data-testid="stMarkdownContainer"] p, .stApp [data-testid="stMarkdownContainer"] li,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stAlert"] p { font-size: 1.35rem; }
.stApp [data-testid="stMetricValue"], .stApp [data-testid="stMetricValue"] * { font-size: 3rem !important; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none; }
.stMainBlockContainer { padding-left: 2rem; padding-right: 2rem; max-width: 100%; }
.stApp [data-testid="stMetricLabel"] p { font-size: 1.4rem !important; }
.stApp h1 { font-size: 3.2rem; }
.stApp h3 { font-size: 2.2rem; }
.arch-drawing svg { max-width: 100%; height: auto; }  /* drawn at 1.5×, shrunk to fit: labels stay >= 19 px */
</style>"""


@st.cache_data(max_entries=256)
def cached_summary(cfg: ArchConfig):
    """Keyed on the frozen config: flipping back and forth costs nothing."""
    s = summarize(cfg)
    return [r.to_dict() for r in s.rows], table(s), s.total_params, s.total_macs, s.total_memory, describe_layers(s)


@st.cache_data(max_entries=64)
def cached_comparison(a: ArchConfig, b: ArchConfig) -> tuple[list[dict], str]:
    sa, sb = summarize(a), summarize(b)
    return side_by_side(sa, sb), what_changed(sa, sb)


def column_config(columns: dict[str, Column]) -> dict:
    """Typed table columns whose ranges are config.LIMITS (through editor.CONV_COLUMNS / HIDDEN_COLUMNS)."""
    out = {}
    for key, c in columns.items():
        if c.choices is not None:
            out[key] = st.column_config.SelectboxColumn(c.label, help=c.help, options=list(c.choices),
                                                        default=c.default, required=True, width="small")
        else:
            out[key] = st.column_config.NumberColumn(c.label, help=c.help, min_value=c.limits[0],
                                                     max_value=c.limits[1], step=1, default=c.default,
                                                     required=True, format="%d", width="small")
    return out


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
        cfg = ArchConfig.from_json(f.getvalue().decode("utf-8"))
    except UnicodeDecodeError:
        ss["import_error"] = "That file cannot be imported: it is not UTF-8 text"
        return
    except ConfigError as e:
        ss["import_error"] = f"That file cannot be imported: {e}"
        return
    ss["import_error"], ss["imported"] = None, cfg
    ss["preset"] = ss["preset_name"] = _imported_label(cfg)
    load(cfg, origin=cfg)


def preset_options() -> list[str]:
    imported = st.session_state.get("imported")
    return list(PRESETS) + ([_imported_label(imported)] if imported is not None else [])


def settings_ui() -> None:
    lim = LIMITS
    c = st.columns(6)
    c[0].selectbox("Input channels", IN_CHANNELS, key="in_channels",
                   format_func=lambda n: {1: "1 (grayscale)", 3: "3 (RGB)"}[n])
    c[1].number_input("Input size (px)", *lim["input_size"], key="input_size")
    c[2].number_input("Classes", *lim["num_classes"], key="num_classes")
    c[3].selectbox("Hidden activation", ACTIVATIONS, key="fc_activation")
    c[4].number_input("Dropout p", *lim["dropout"], step=0.05, format="%g", key="dropout",
                      help="after each hidden Linear layer; 0 = no dropout")
    c[5].number_input("Adaptive avg pool", *lim["adaptive_pool"], key="adaptive_pool",
                      help="0 = none; n = pool to n×n before flatten (torchvision's AlexNet uses 6)")


def tables_ui() -> ArchConfig:
    """The conv blocks and the hidden layers as two editable tables; returns the network they describe."""
    ss = st.session_state
    src, rev = ss["tables_from"], ss["rev"]
    st.markdown("**Conv blocks**: conv → activation → norm → pool, one row each (+ above the table adds a row; "
                "tick rows and press the bin to remove them)")
    convs = st.data_editor(
        pd.DataFrame(conv_rows(src), columns=list(CONV_COLUMNS)), key=f"convs_{rev}", num_rows="dynamic",
        hide_index=True, column_config=column_config(CONV_COLUMNS), width="stretch")
    st.markdown("**Hidden layers of the classifier**: one row per hidden Linear layer (the last layer, one "
                "output per class, is added for you)")
    hidden = st.data_editor(
        pd.DataFrame(hidden_rows(src), columns=list(HIDDEN_COLUMNS)), key=f"hidden_{rev}", num_rows="dynamic",
        hide_index=True, column_config=column_config(HIDDEN_COLUMNS), width=360)
    settings = ArchConfig(name=ss["origin"].name, **{k: ss[k] for k in SETTINGS})
    return config_from_rows(settings, convs.to_dict("records"), hidden.to_dict("records"))


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
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in draft.name)[:80] or "network"
    c = st.columns([1, 1, 3])
    c[0].download_button("Download drawing (SVG)", svg, f"{slug}.svg", "image/svg+xml")
    png = cached_png(svg)
    if png is not None:
        c[1].download_button("Download drawing (PNG)", png, f"{slug}.png", "image/png")
    else:
        c[1].caption("PNG download needs cairosvg (pip install cairosvg).")


def _big(fig, presenter: bool):
    """Larger type and a taller chart for a projector."""
    if presenter:
        fig.update_layout(font=dict(size=22), title_font=dict(size=28), height=520)
    return fig


def results_ui(cfg: ArchConfig, presenter: bool = False) -> None:
    rows, display, params, macs, memory, sentences = cached_summary(cfg)
    m = st.columns(4)
    m[0].metric("Parameters", f"{params:,}")
    m[1].metric("Multiply-accumulates / image", human(macs))
    m[2].metric("Activation memory / image", human(memory, "B"))
    m[3].metric("Weights in float32", human(params * 4, "B"))
    only = st.toggle("Only layers with weights or pooling", value=False)
    df = pd.DataFrame(display)
    if only:
        df = df[[r["type"] in ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten")
                 for r in rows]]
    st.dataframe(df, hide_index=True, width="stretch", height=36 * (len(df) + 1) + 4,
                 column_config={"params": st.column_config.NumberColumn(format="localized"),
                                "MACs": st.column_config.NumberColumn(format="localized")})
    with st.expander("Every layer in one sentence"):
        st.markdown("\n".join(f"- **{t.split(': ', 1)[0]}**: {t.split(': ', 1)[1]}" for t in sentences))
    st.caption("MACs: multiply-accumulates for one image (conv and linear layers; elementwise layers count 0). "
               "Memory: the layer's output for one image in float32. Receptive field: the input window one "
               "output pixel sees, and the stride between neighbouring windows (jump).")
    t = st.tabs(["Where the parameters are", "Where the compute is", "Where the memory is"])
    t[0].plotly_chart(_big(per_layer_bars(rows, "params", "Parameters per layer"), presenter), width="stretch")
    t[1].plotly_chart(_big(per_layer_bars(rows, "macs", "Multiply-accumulates per layer (one image)"), presenter),
                      width="stretch")
    t[2].plotly_chart(_big(per_layer_bars(rows, "memory", "Activation memory per layer (one image)", " B"), presenter),
                      width="stretch")
    fc = sum(r["params"] for r in rows if r["type"] == "Linear")
    conv_macs = sum(r["macs"] for r in rows if r["type"] == "Conv2d")
    st.info(f"The Linear layers hold {fc / max(params, 1):.0%} of the parameters; the conv layers do "
            f"{conv_macs / max(macs, 1):.0%} of the compute — d2l's exercise: memory lives in the classifier, "
            f"compute in the features.")


def compare_ui(cfg: ArchConfig) -> None:
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
    fmt = st.column_config.NumberColumn(format="localized")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=36 * (len(rows) + 1) + 4,
                 column_config={k: fmt for k in rows[0] if "params" in k or "MACs" in k})
    with st.expander("d2l's exercise: what did AlexNet change from LeNet, and d2l from the paper?"):
        for x, y in (("lenet5", "alexnet2012"), ("alexnet2012", "d2l")):
            st.markdown(f"- {cached_comparison(PRESETS[x], PRESETS[y])[1]}")


def export_ui(cfg: ArchConfig) -> None:
    c = st.columns(3)
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cfg.name)[:80] or "network"
    code = to_pytorch_code(cfg)
    c[0].download_button("Download config JSON", cfg.to_json(), f"{slug}.json", "application/json")
    c[1].download_button("Download PyTorch code", code, f"{slug}.py", "text/x-python")
    c[2].file_uploader("Import a config JSON", type=["json"], key="import_json", on_change=_on_import)
    if st.session_state.get("import_error"):
        st.error(st.session_state["import_error"])
    with st.expander("PyTorch code"):
        st.code(code, language="python")


def page() -> None:
    ss = st.session_state
    if "draft" not in ss:
        d2l = get_preset("d2l")
        ss["preset_name"] = "d2l"
        load(d2l, origin=d2l)
    presenter = st.toggle("Presenter mode", key="presenter",
                          help="Large type and charts for a projector; the editing controls are hidden.")
    if presenter:
        st.html(PRESENTER_CSS)
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
            cfg = tables_ui()
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
    st.subheader("Two networks side by side")
    compare_ui(cfg)
    if not presenter:
        st.subheader("Export and import")
        export_ui(cfg)
