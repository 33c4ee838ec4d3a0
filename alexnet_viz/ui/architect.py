"""Architect: pick a preset, change any hyperparameter, see every layer update at once."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from ..config import (ACTIVATIONS, NORMS, POOLS, PRESET_NOTES, PRESETS, ArchConfig, ConfigError, ConvSpec,
                      get_preset, validate)
from ..model import to_pytorch_code
from ..plots import block_diagram, per_layer_bars
from ..summary import describe_layers, human, summarize, table
from .common import cost_ui

CONV_FIELDS = ("out_channels", "kernel", "stride", "padding", "groups", "activation", "norm", "pool",
               "pool_kernel", "pool_stride")
LABELS = {"out_channels": "out ch", "kernel": "kernel", "stride": "stride", "padding": "pad", "groups": "groups",
          "activation": "activation", "norm": "norm", "pool": "pool", "pool_kernel": "pool k",
          "pool_stride": "pool s"}
CHOICES = {"activation": ACTIVATIONS, "norm": NORMS, "pool": POOLS}
COLS = [0.8] + [1.4 if f in ("activation", "norm", "pool") else 1 for f in CONV_FIELDS] + [0.5]


@st.cache_data(max_entries=256)
def cached_summary(cfg: ArchConfig):
    """Keyed on the frozen config: flipping back and forth costs nothing."""
    s = summarize(cfg)
    return [r.to_dict() for r in s.rows], table(s), s.total_params, s.total_macs, s.total_memory, describe_layers(s)


def load_into_widgets(cfg: ArchConfig) -> None:
    """Write a config into the widgets' state (called from callbacks, before widgets are drawn)."""
    ss = st.session_state
    ss["in_channels"], ss["input_size"], ss["num_classes"] = cfg.in_channels, cfg.input_size, cfg.num_classes
    ss["adaptive_pool"], ss["dropout"], ss["fc_activation"] = cfg.adaptive_pool, cfg.dropout, cfg.fc_activation
    ss["hidden"] = ", ".join(str(h) for h in cfg.hidden)
    ss["n_convs"] = len(cfg.convs)
    for i, c in enumerate(cfg.convs):
        for f in CONV_FIELDS:
            ss[f"c{i}_{f}"] = getattr(c, f)
    ss["arch_name"] = cfg.name


def config_from_widgets() -> ArchConfig:
    ss = st.session_state
    try:
        hidden = tuple(int(h) for h in ss["hidden"].replace(";", ",").split(",") if h.strip())
    except ValueError:
        raise ConfigError(f"classifier: hidden widths must be whole numbers separated by commas "
                          f"(got {ss['hidden']!r})") from None
    convs = tuple(ConvSpec(**{f: ss[f"c{i}_{f}"] for f in CONV_FIELDS}) for i in range(ss["n_convs"]))
    return ArchConfig(name=ss["arch_name"], in_channels=ss["in_channels"], input_size=ss["input_size"],
                      convs=convs, adaptive_pool=ss["adaptive_pool"], hidden=hidden,
                      fc_activation=ss["fc_activation"], dropout=ss["dropout"], num_classes=ss["num_classes"])


def _on_preset():
    st.session_state["preset_name"] = st.session_state["preset"]
    load_into_widgets(get_preset(st.session_state["preset"]))


def _edit_convs(op: str, i: int = 0):
    try:
        cfg = config_from_widgets()
    except ConfigError:
        return
    convs = list(cfg.convs)
    if op == "add":
        convs.append(replace(convs[-1], pool="none") if convs else ConvSpec(64, 3, 1, 1))
    elif op == "remove" and len(convs) > 1:
        convs.pop(i)
    load_into_widgets(replace(cfg, convs=tuple(convs), name=_custom(cfg.name)))


def _custom(name: str) -> str:
    return name if name.endswith("(edited)") else f"{name} (edited)"


def _on_import():
    f = st.session_state.get("import_json")
    if f is None:
        return
    try:
        load_into_widgets(ArchConfig.from_json(f.getvalue().decode("utf-8", errors="replace")))
        st.session_state["import_error"] = None
    except ConfigError as e:
        st.session_state["import_error"] = f"That file cannot be imported: {e}"


def network_inputs_ui() -> None:
    c = st.columns(8)
    c[0].selectbox("Preset", list(PRESETS), key="preset", on_change=_on_preset,
                   help="Loads a whole network; then change anything below.")
    c[1].number_input("Input channels", 1, 4, key="in_channels", help="1 = grayscale, 3 = RGB")
    c[2].number_input("Input size (px)", 8, 512, key="input_size")
    c[3].number_input("Classes", 2, 1000, key="num_classes")
    c[4].text_input("Hidden widths", key="hidden", help="Widths of the hidden Linear layers, e.g. 4096, 4096. "
                    "Add or remove numbers to add or remove layers. The first layer's input size follows the "
                    "features automatically.")
    c[5].selectbox("Hidden activation", ACTIVATIONS, key="fc_activation")
    c[6].number_input("Dropout p", 0.0, 0.95, step=0.05, key="dropout")
    c[7].number_input("Adaptive avg pool", 0, 32, key="adaptive_pool", help="0 = none; n = pool to n×n before "
                      "flatten (torchvision's AlexNet uses 6)")


def conv_blocks_ui() -> None:
    ss = st.session_state
    head = st.columns(COLS)
    head[0].markdown("**block**")
    for col, f in zip(head[1:], CONV_FIELDS):
        col.markdown(f"**{LABELS[f]}**")
    for i in range(ss["n_convs"]):
        cols = st.columns(COLS)
        cols[0].markdown(f"conv{i + 1}")
        for col, f in zip(cols[1:], CONV_FIELDS):
            if f in CHOICES:
                col.selectbox(LABELS[f], CHOICES[f], key=f"c{i}_{f}", label_visibility="collapsed")
            else:
                col.number_input(LABELS[f], min_value=0 if f == "padding" else 1, max_value=2048,
                                 key=f"c{i}_{f}", label_visibility="collapsed")
        cols[-1].button("", icon=":material/close:", key=f"rm{i}", on_click=_edit_convs, args=("remove", i),
                        disabled=ss["n_convs"] <= 1, help=f"remove conv{i + 1}")
    st.button("Add a conv block", icon=":material/add:", on_click=_edit_convs, args=("add",))


def results_ui(cfg: ArchConfig) -> None:
    rows, display, params, macs, memory, sentences = cached_summary(cfg)
    m = st.columns(4)
    m[0].metric("Parameters", f"{params:,}")
    m[1].metric("Multiply-accumulates / image", human(macs))
    m[2].metric("Activation memory / image", human(memory, "B"))
    m[3].metric("Weights in float32", human(params * 4, "B"))
    st.plotly_chart(block_diagram(rows, (cfg.in_channels, cfg.input_size, cfg.input_size)), width="stretch")
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
    t[0].plotly_chart(per_layer_bars(rows, "params", "Parameters per layer"), width="stretch")
    t[1].plotly_chart(per_layer_bars(rows, "macs", "Multiply-accumulates per layer (one image)"), width="stretch")
    t[2].plotly_chart(per_layer_bars(rows, "memory", "Activation memory per layer (one image)", " B"), width="stretch")
    fc = sum(r["params"] for r in rows if r["type"] == "Linear")
    conv_macs = sum(r["macs"] for r in rows if r["type"] == "Conv2d")
    st.info(f"The Linear layers hold {fc / max(params, 1):.0%} of the parameters; the conv layers do "
            f"{conv_macs / max(macs, 1):.0%} of the compute — d2l's exercise: memory lives in the classifier, "
            f"compute in the features.")


def export_ui(cfg: ArchConfig) -> None:
    c = st.columns(3)
    slug = cfg.name.replace(" ", "_").replace("(", "").replace(")", "")
    code = to_pytorch_code(cfg)
    c[0].download_button("Download config JSON", cfg.to_json(), f"{slug}.json", "application/json")
    c[1].download_button("Download PyTorch code", code, f"{slug}.py", "text/x-python")
    c[2].file_uploader("Import a config JSON", type=["json"], key="import_json", on_change=_on_import)
    if st.session_state.get("import_error"):
        st.error(st.session_state["import_error"])
    with st.expander("PyTorch code"):
        st.code(code, language="python")


def _widget_keys(cfg: ArchConfig) -> list[str]:
    return (["preset", "in_channels", "input_size", "num_classes", "adaptive_pool", "dropout", "fc_activation",
             "hidden"] + [f"c{i}_{f}" for i in range(len(cfg.convs)) for f in CONV_FIELDS])


def page() -> None:
    ss = st.session_state
    # Streamlit drops a widget's state while its page is not drawn: the draft (a plain key) keeps
    # the user's network across visits to other pages and puts it back into the widgets.
    if "draft" not in ss:
        ss["draft"], ss["preset_name"] = get_preset("d2l"), "d2l"
    if any(k not in ss for k in _widget_keys(ss["draft"])):
        ss["preset"] = ss["preset_name"]
        load_into_widgets(ss["draft"])
    st.title("Architect")
    st.caption(PRESET_NOTES.get(ss["preset"], ""))
    network_inputs_ui()
    with st.expander("Conv blocks: conv → activation → norm → pool", expanded=True):
        conv_blocks_ui()
    try:
        cfg = ss["draft"] = config_from_widgets()
        if cfg != get_preset(ss["preset"]) and not cfg.name.endswith("(edited)"):
            cfg = replace(cfg, name=_custom(cfg.name))
        validate(cfg)
        ss["last_valid"] = cfg
    except ConfigError as e:
        st.error(f"This network cannot work: {e}")
        cfg = ss.get("last_valid") or get_preset(ss["preset"])
        st.caption(f"Showing the last network that worked ({cfg.name}).")
    cost_ui(cfg)  # training estimate for this network; a warning when it or its analysis does not fit
    results_ui(cfg)
    st.subheader("Export and import")
    export_ui(cfg)
