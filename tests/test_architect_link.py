"""The Architect's view in its URL: the preset, or the whole edited network, and presenter mode; opening
that URL in a new session shows the same network and the same numbers."""
from streamlit.testing.v1 import AppTest

from alexnet_viz import links
from alexnet_viz.architect.summary import summarize
from alexnet_viz.config import PRESETS, with_conv

from tests.conftest import ROOT
from tests.test_app import edit_table, no_exception

APP = str(ROOT / "tests" / "apps" / "architect.py")


def open_app(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def link_notices(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "link was ignored" in w.value]


def numbers(at: AppTest) -> list[str]:
    return [m.value for m in at.metric]


def test_a_preset_is_named_in_the_url_and_a_new_session_opens_it():
    at = open_app()
    assert url(at) == {}  # d2l, the default: nothing to say
    at.selectbox(key="preset").set_value("lenet5").run()
    assert url(at) == {"preset": "lenet5"}
    other = open_app(url(at))
    no_exception(other)
    assert other.selectbox(key="preset").value == "lenet5"
    assert numbers(other)[0] == f"{summarize(PRESETS['lenet5']).total_params:,}"  # independent: the summary


def test_an_edited_network_travels_whole_and_shows_the_same_numbers():
    at = open_app()
    at.selectbox(key="preset").set_value("alexnet2012").run()
    edit_table(at, "convs", {0: {"out_channels": 64, "kernel": 7}})
    edit_table(at, "hidden", {1: {"width": 1024}})
    q = url(at)
    assert set(q) == {"net"} and len(q["net"]) < 600
    net = links.decode_network(q["net"])
    assert net == at.session_state["draft"] and net.name == "alexnet2012 (edited)"
    expected = with_conv(PRESETS["alexnet2012"], 0, out_channels=64, kernel=7)
    assert net.convs == expected.convs and net.hidden == (4096, 1024)
    other = open_app(q)
    no_exception(other)
    assert not link_notices(other)
    assert numbers(other) == numbers(at)
    assert numbers(other)[0] == f"{summarize(net).total_params:,}"
    assert other.data_editor[0].value["kernel"][0] == 7


def test_presenter_mode_is_in_the_url_and_its_tables_are_html_tables_that_grow():
    at = open_app({"preset": "mini28", "present": "1"})
    no_exception(at)
    assert at.toggle(key="presenter").value is True
    assert not at.data_editor and not at.dataframe  # no editor; tables drawn as HTML (st.table) for the CSS
    assert len(at.table) == 1  # the layer table; the comparison's expander is closed (lazy: drawn when opened)
    at.session_state["arch_compare"] = True
    at.run()
    assert len(at.table) == 2
    assert any("stTable" in h.proto.body for h in at.get("html"))
    assert url(at) == {"preset": "mini28", "present": "1"}
    at.toggle(key="presenter").set_value(False).run()
    assert url(at) == {"preset": "mini28"} and len([d for d in at.dataframe if d.key is None]) == 2


def test_a_hostile_link_opens_the_default_network_with_one_notice():
    bad = links.encode_network(with_conv(PRESETS["d2l"], 0, kernel=31, stride=16))  # cannot work
    at = open_app({"net": bad, "present": "yes please", "sid": "x"})
    no_exception(at)
    notices = link_notices(at)
    assert len(notices) == 1 and "net" in notices[0] and "present" in notices[0]
    assert at.selectbox(key="preset").value == "d2l"
    assert url(at) == {"sid": "x"}
