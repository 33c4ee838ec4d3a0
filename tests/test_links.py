"""Links: a page's state as query parameters, read back exactly, and hostile links refused by name."""
import base64
import json
import zlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from alexnet_viz import links
from alexnet_viz.architect.importing import MAX_MACS, MAX_PARAMS, check_cost, count_cost, import_network
from alexnet_viz.config import PRESETS, ConfigError, ConvSpec, with_conv

SCHEMA = {
    "preset": links.choice(PRESETS, default="d2l"),
    "net": links.network(),
    "layer": links.integer(0, 20),
    "lr": links.number(1e-6, 10.0),
    "present": links.flag(),
    "run": links.text(),
}


def pack(obj) -> str:
    """A network link built by hand (not by encode_network), for what the encoder would never write."""
    body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return "n1." + base64.urlsafe_b64encode(zlib.compress(body)).decode().rstrip("=")


def edited_alexnet():
    a = with_conv(PRESETS["alexnet2012"], 0, out_channels=64, kernel=7, padding=1)
    return replace(a, name="alexnet2012 (edited)", hidden=(2048, 1024), dropout=0.3)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_travels_in_a_link_and_comes_back_equal(preset):
    text = links.encode_network(PRESETS[preset])
    assert links.decode_network(text) == PRESETS[preset]
    assert len(text) < 600


def test_an_edited_alexnet2012_is_a_short_link_that_reads_back_equal():
    net = edited_alexnet()
    q = links.write({"net": net, "present": True}, SCHEMA)
    assert set(q) == {"net", "present"}
    assert len("https://example.org/?" + "&".join(f"{k}={v}" for k, v in q.items())) < 700  # well under 2,000
    values, ignored = links.read(q, SCHEMA)
    assert ignored == [] and values == {"net": net, "present": True}


def test_write_leaves_out_defaults_and_none_and_read_gives_them_back():
    vals = {"preset": "mini28", "layer": 3, "lr": 0.001, "present": False, "run": "2024-01-01 mini28 (1)"}
    q = links.write(vals, SCHEMA)
    assert q == {"preset": "mini28", "layer": "3", "lr": "0.001", "run": "2024-01-01 mini28 (1)"}
    assert links.read(q, SCHEMA) == ({k: v for k, v in vals.items() if k != "present"}, [])
    assert links.write({"preset": "d2l", "layer": None}, SCHEMA) == {}


@pytest.mark.parametrize("key, raw", [
    ("preset", "alexnet2013"), ("preset", "d2l" * 100), ("preset", ["d2l", "mini28"]), ("preset", []),
    ("layer", "21"), ("layer", "-1"), ("layer", "3.5"), ("layer", "1e3"), ("layer", "9" * 400), ("layer", " 3"),
    ("lr", "nan"), ("lr", "inf"), ("lr", "1e309"), ("lr", "0"), ("lr", "0x10"),
    ("present", "maybe"), ("present", "\x00"),
    ("run", "<script>alert(1)</script>"), ("run", "../../etc/passwd"), ("run", "a" * 81), ("run", "caf\udce9"),
    ("run", b"\xff\xfe"), ("run", 7), ("run", None), ("run", "line\nbreak"),
    ("net", "n1.!!!"), ("net", "n1." + "A" * 5000), ("net", "hello"), ("net", "n1.AAAA"), ("net", ""),
])
def test_a_hostile_or_malformed_value_is_dropped_and_named(key, raw):
    values, ignored = links.read({key: raw, "preset": "mini28"} if key != "preset" else {key: raw}, SCHEMA)
    assert ignored == [key]
    assert key not in values


@pytest.mark.parametrize("obj, why", [
    ({"convs": [{"out_channels": 8, "kernel": 40}]}, "kernel"),                       # fails validation
    ([1, 2, 3], "object"),                                                              # not a config
    ({"name": "x", "evil": 1}, "unknown"),                                              # unknown field
    ({"input_size": 512, "convs": [{"out_channels": 2048, "kernel": 31, "padding": 15, "pool": "none"}] * 2,
      "adaptive_pool": 1, "hidden": []}, "parameters"),                                                     # passes validation, not the cost
])
def test_a_network_in_a_link_passes_the_import_validation_and_cost_check(obj, why):
    with pytest.raises(ConfigError, match=why):
        links.decode_network(pack(obj))
    with pytest.raises(ConfigError, match=why):  # the JSON import says the same
        import_network(json.dumps(obj))
    assert links.read({"net": pack(obj)}, SCHEMA) == ({}, ["net"])


def test_a_zip_bomb_stops_at_the_inflate_limit():
    bomb = pack(b"[" * 10 + b" " * 2_000_000)
    assert len(bomb) < links.NETWORK_MAX
    with pytest.raises(ConfigError, match="too large"):
        links.decode_network(bomb)


def test_the_cost_count_matches_the_summary_of_every_preset_and_refuses_above_the_limits():
    from alexnet_viz.architect.summary import summarize
    for cfg in PRESETS.values():
        s = summarize(cfg)  # independent: counted from the built model (numel, per-layer formula)
        assert count_cost(cfg) == (s.total_params, s.total_macs)
        assert check_cost(cfg) is cfg
    wide = replace(PRESETS["d2l"], input_size=512, convs=(ConvSpec(2048, 31, 1, 15, pool="none"),) * 3,
                   adaptive_pool=1, hidden=())
    params, macs = count_cost(wide)
    assert params > MAX_PARAMS and macs > MAX_MACS


def test_import_network_refuses_bytes_that_are_not_utf8_and_deep_json():
    with pytest.raises(ConfigError, match="UTF-8"):
        import_network(b"\xff\xfe{}")
    with pytest.raises(ConfigError):
        import_network("[" * 100_000)
    assert import_network(PRESETS["mini28"].to_json().encode()) == PRESETS["mini28"]


values_st = st.one_of(
    st.text(max_size=300), st.binary(max_size=50), st.integers(), st.none(), st.floats(),
    st.lists(st.text(max_size=20), max_size=3), st.just("n1." + "A" * 10),
    st.builds(lambda s: "n1." + s, st.text(alphabet="ABCDEFabcdef0123456789-_", max_size=200)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.one_of(st.sampled_from(list(SCHEMA)), st.text(max_size=10), st.integers()),
                       values_st, max_size=8))
def test_arbitrary_params_never_raise(params):
    values, ignored = links.read(params, SCHEMA)
    assert set(values).isdisjoint(ignored)
    assert set(values) | set(ignored) <= set(SCHEMA)
    q = links.write(values, SCHEMA)  # whatever was accepted writes and reads back to itself
    assert links.read(q, SCHEMA)[0] == {k: v for k, v in values.items() if v != SCHEMA[k].default}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(PRESETS)), st.integers(0, 4), st.integers(1, 256), st.integers(1, 4096))
def test_edited_networks_round_trip(preset, i, channels, hidden):
    cfg = PRESETS[preset]
    cfg = replace(with_conv(cfg, min(i, len(cfg.convs) - 1), out_channels=channels, groups=1), hidden=(hidden,))
    try:
        check_cost(cfg)
    except ConfigError:
        return  # an edit the import itself refuses: nothing to round-trip
    assert links.decode_network(links.encode_network(cfg)) == cfg
