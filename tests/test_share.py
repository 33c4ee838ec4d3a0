"""ui/share: the page's state in st.query_params, read back in a new session, and the Share popover."""
import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from alexnet_viz import links
from alexnet_viz.config import PRESETS, with_conv
from alexnet_viz.ui import share

from tests.conftest import ROOT

APP = str(ROOT / "tests" / "apps" / "share.py")


def fresh(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_changing_the_state_updates_the_url_and_a_new_session_shows_the_same_view():
    at = fresh({"sid": "me"})
    assert not at.exception and not at.warning
    assert url(at) == {"sid": "me"}  # defaults are left out of a link
    at.selectbox[0].set_value("mini28")
    at.number_input[0].set_value(5)
    at.toggle[0].set_value(True)
    at.run()
    assert url(at) == {"sid": "me", "preset": "mini28", "layer": "5", "present": "1"}
    other = fresh({k: v for k, v in url(at).items() if k != "sid"})  # the shared link: no session id
    assert (other.selectbox[0].value, other.number_input[0].value, other.toggle[0].value) == ("mini28", 5, True)
    assert not other.warning
    assert "sid" not in other.session_state["link"] and "preset=mini28" in other.session_state["link"]


def test_a_network_in_the_link_opens_in_a_new_session():
    net = with_conv(PRESETS["alexnet2012"], 0, out_channels=48)
    at = fresh({"net": links.encode_network(net)})
    assert not at.warning
    assert any(m.value == f"network: {net.name}" for m in at.markdown)


def test_hostile_parameters_are_named_in_one_notice_and_dropped_from_the_url():
    at = fresh({"preset": "<script>", "layer": "99", "net": "n1.garbage", "present": "1", "sid": "me"})
    assert not at.exception
    assert len(at.warning) == 1
    for name in ("preset", "layer", "net"):
        assert name in at.warning[0].value
    assert "present" not in at.warning[0].value
    assert at.selectbox[0].value == "d2l" and at.toggle[0].value is True
    assert url(at) == {"sid": "me", "present": "1"}  # the ignored parts are gone from the address
    at.number_input[0].set_value(3)
    at.run()
    assert not at.warning  # the notice is shown once, not on every later run
    assert url(at)["layer"] == "3"


def test_the_link_is_read_once_so_the_users_changes_win():
    at = fresh({"preset": "lenet5"})
    assert at.selectbox[0].value == "lenet5"
    at.selectbox[0].set_value("torchvision")
    at.run()
    at.run()
    assert at.selectbox[0].value == "torchvision" and url(at)["preset"] == "torchvision"


def test_the_share_popover_shows_the_link_and_a_qr_code_big_enough_for_a_projector():
    at = fresh({"preset": "mini28", "sid": "secret"})
    link = at.session_state["link"]
    assert link.startswith("http://") and link.endswith("/?preset=mini28")
    assert "secret" not in link
    assert any(c.value == link for c in at.code)
    img = Image.open(io.BytesIO(share.qr_png(link)))
    assert min(img.size) >= share.QR_PX - 0  # whole-pixel modules, at least QR_PX wide
    assert set(img.convert("L").getdata()) <= {0, 255}  # pure black on white: the most contrast


def test_the_qr_code_reads_back_as_the_link():
    cv2 = pytest.importorskip("cv2", reason="OpenCV's QR detector is the independent reader")
    import numpy as np
    link = "http://example.org:8501/?net=" + links.encode_network(PRESETS["alexnet2012"])
    img = np.array(Image.open(io.BytesIO(share.qr_png(link))).convert("L"))
    assert cv2.QRCodeDetector().detectAndDecode(img)[0] == link
