"""The Architect's table editor: rows <-> config, ranges equal to config.LIMITS, imports shown as they are."""
import json
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_viz.config import IN_CHANNELS, LIMITS, NAME_MAX, PRESETS, ArchConfig, ConfigError, get_preset
from alexnet_viz.architect.editor import CONV_COLUMNS, HIDDEN_COLUMNS, config_from_rows, conv_rows, edited_name, hidden_rows

from tests.conftest import ROOT
from tests.test_app import edit_table, no_exception


@pytest.mark.parametrize("name", PRESETS)
def test_tables_round_trip_every_preset(name):
    cfg = PRESETS[name]
    bare = replace(cfg, convs=(), hidden=())
    assert config_from_rows(bare, conv_rows(cfg), hidden_rows(cfg)) == cfg
    # rows as a data editor hands them back: numpy numbers, whole floats
    import pandas as pd
    df = pd.DataFrame(conv_rows(cfg)).astype({"kernel": float})
    assert config_from_rows(bare, df.to_dict("records"), pd.DataFrame(hidden_rows(cfg)).to_dict("records")) == cfg


@pytest.mark.parametrize("cell, msg", [(None, "conv2: kernel is empty"), (float("nan"), "conv2: kernel is empty"),
                                       (2.5, "conv2: kernel must be a whole number"), ("big", "whole number")])
def test_bad_cells_are_config_errors(cell, msg):
    cfg = get_preset("d2l")
    rows = conv_rows(cfg)
    rows[1]["kernel"] = cell
    with pytest.raises(ConfigError, match=msg):
        config_from_rows(cfg, rows, hidden_rows(cfg))


def test_every_table_column_range_is_the_config_limit():
    from alexnet_viz.ui.editor import column_config
    cols = column_config(CONV_COLUMNS) | column_config(HIDDEN_COLUMNS)
    limit_of = {"out_channels": "out_channels", "kernel": "kernel", "stride": "stride", "padding": "padding",
                "groups": "groups", "pool_kernel": "pool_kernel", "pool_stride": "pool_stride", "width": "hidden"}
    for key, lim in limit_of.items():
        t = cols[key]["type_config"]
        assert (t["min_value"], t["max_value"]) == LIMITS[lim], key
    for key, choices in (("activation", "ACTIVATIONS"), ("norm", "NORMS"), ("pool", "POOLS")):
        import alexnet_viz.config as config
        assert cols[key]["type_config"]["options"] == list(getattr(config, choices))


def test_every_number_widget_range_is_the_config_limit():
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "architect.py"), default_timeout=120).run()
    keyed = {n.key: n for n in at.number_input}
    assert set(keyed) == {"input_size", "num_classes", "dropout", "adaptive_pool"}
    for key, n in keyed.items():
        assert (n.min, n.max) == LIMITS[key], key
    assert at.selectbox(key="in_channels").options == [f"{c} ({'grayscale' if c == 1 else 'RGB'})"
                                                       for c in IN_CHANNELS]


@pytest.mark.parametrize("channels", [2, 4])
def test_two_or_four_input_channels_are_refused(channels):
    d = json.loads(get_preset("d2l").to_json()) | {"in_channels": channels}
    with pytest.raises(ConfigError, match="1 \\(grayscale\\) or 3 \\(RGB\\)"):
        ArchConfig.from_dict(d)


def test_dropout_limit_and_long_names():
    d = json.loads(get_preset("d2l").to_json())
    assert ArchConfig.from_dict(d | {"dropout": 0.99}).dropout == 0.99
    with pytest.raises(ConfigError, match="dropout"):
        ArchConfig.from_dict(d | {"dropout": 0.995})
    assert ArchConfig.from_dict(d | {"name": "n" * NAME_MAX}).name == "n" * NAME_MAX
    with pytest.raises(ConfigError, match=f"at most {NAME_MAX} characters"):
        ArchConfig.from_dict(d | {"name": "n" * (NAME_MAX + 1)})
    long = replace(get_preset("d2l"), name="n" * NAME_MAX)
    assert len(edited_name(long, replace(long, num_classes=3))) == NAME_MAX  # editing keeps it valid


def test_import_shows_its_name_and_values_as_they_are():
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "architect.py"), default_timeout=120)
    at.session_state["arch_export"] = True  # the "Export and import" expander open
    at.run()
    cfg = replace(get_preset("lenet5"), name="my lenet", dropout=0.99, hidden=(120, 84))
    at.file_uploader(key="import_json").set_value(("net.json", cfg.to_json().encode(), "application/json")).run()
    no_exception(at)
    assert at.selectbox(key="preset").value == "imported: my lenet"
    assert any(c.value == "Imported: my lenet" for c in at.caption)
    assert at.number_input(key="dropout").value == 0.99
    at.file_uploader(key="import_json").set_value(
        ("bad.json", cfg.to_json().replace('"in_channels": 1', '"in_channels": 2').encode(), "application/json")).run()
    assert any("1 (grayscale) or 3 (RGB)" in e.value for e in at.error)
    assert at.selectbox(key="preset").value == "imported: my lenet"  # the refused file changed nothing


def test_edited_name_goes_back_when_the_edit_is_undone():
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "architect.py"), default_timeout=120).run()
    edit_table(at, "convs", {0: {"kernel": 7}})
    assert at.session_state["draft"].name == "d2l (edited)"
    edit_table(at, "convs", {0: {"kernel": 11}})
    assert at.session_state["draft"].name == "d2l"


def test_presenter_mode_hides_the_editor_and_keeps_the_network():
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / "architect.py"), default_timeout=120).run()
    edit_table(at, "convs", {0: {"kernel": 7}})
    params = at.metric[0].value
    at.toggle(key="presenter").set_value(True).run()
    no_exception(at)
    assert not at.data_editor and not at.number_input and params == at.metric[0].value
    at.toggle(key="presenter").set_value(False).run()
    no_exception(at)
    assert at.data_editor[0].value["kernel"][0] == 7 and params == at.metric[0].value
