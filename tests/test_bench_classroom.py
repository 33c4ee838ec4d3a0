"""bench classroom's class: sessions over the app's websocket (bench/wire.py) that do what a browser asks of
the server, and the loop that counts a classmate's failure and goes on."""
import asyncio
import io
from types import SimpleNamespace

import pytest
from PIL import Image

from alexnet_viz.bench import classroom
from alexnet_viz.bench.wire import Session, WireError


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


def test_a_wire_session_changes_pages_widgets_and_uploads_as_a_browser_does(server):
    url, _ = server
    errors: list[str] = []

    async def walk() -> Session:
        s = Session(url, "student", errors, timeout=120)
        await s.open()
        assert {"Architect", "Train", "Explore"} <= set(s.pages) and "Preset" in s.widgets
        await s.choose("Preset", "lenet5")
        with pytest.raises(WireError, match="no option 'vgg'.*lenet5"):  # what it has, named
            await s.choose("Preset", "vgg")
        await s.nav("Explore")
        await s.choose("Model", classroom.UNTRAINED)
        await s.choose("Image", "Upload")
        runs, fetched = s.runs, s.fetched
        await s.upload(_jpeg())
        layers = s.widgets["Layer"][1].options  # the uploaded photo analysed: the Layer slider is drawn
        assert s.runs == runs + 1 and s.fetched > fetched  # one script run, and its images fetched
        await s.slide("Layer", layers[-1])
        assert f"layer={layers[-1]}" in s.query  # the URL a browser would show now
        with pytest.raises(WireError, match="no page 'Gallery'"):
            await s.nav("Gallery")
        await s.close()
        return s

    s = asyncio.run(walk())
    assert errors == [] and s.session_id


def test_a_classmate_failure_is_counted_and_the_loop_goes_on():
    errors: list[str] = []
    s = SimpleNamespace(name="mate1", errors=errors)
    stop, calls = asyncio.Event(), []

    async def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise WireError("mate1: no answer in 180 s")
        if len(calls) == 3:
            stop.set()
            raise RuntimeError("closed")  # the bench stopping the class: not a failure

    asyncio.run(classroom._looping(s, stop, step, 0))
    assert len(calls) == 3 and errors == ["mate1: WireError: mate1: no answer in 180 s"]


class FakePage:
    url = "http://127.0.0.1:1/explore"

    def __init__(self, fail: bool = False):
        self.fail = fail

    async def screenshot(self, path: str, **_):
        if self.fail:
            raise TimeoutError("stuck")
        open(path, "wb").write(b"png")


def test_a_failed_probe_cycle_is_counted_with_a_screenshot_of_its_page(tmp_path, monkeypatch):
    monkeypatch.setattr(classroom, "SHOTS", tmp_path / "shots")
    errors: list[str] = []
    s = classroom.Student(None, "http://127.0.0.1:1", "probe", errors)
    s.page = FakePage()
    asyncio.run(s.failed(RuntimeError("the Layer slider is not on the page")))
    (line,) = errors
    shot = tmp_path / "shots" / "classroom-probe-0.png"
    assert line.startswith("probe: RuntimeError: the Layer slider") and str(shot) in line and FakePage.url in line
    assert shot.read_bytes() == b"png"
    s.page = FakePage(fail=True)  # a page too stuck for a screenshot: still counted, without one
    asyncio.run(s.failed(ValueError("x")))
    assert errors[1] == "probe: ValueError: x"


def test_the_benchmarks_that_train_run_after_those_that_measure_the_server(monkeypatch):
    # train, precision and internals set glibc to hold freed memory for the rest of the process
    import alexnet_viz.bench as bench
    ran = []
    monkeypatch.setattr(bench.importlib, "import_module",
                        lambda name: SimpleNamespace(main=lambda quick, **kw: ran.append(name.rsplit(".", 1)[1])))
    bench.run_benchmarks(["train", "explore", "precision", "photos"], quick=True)
    assert ran == ["explore", "photos", "train", "precision"]
    ran.clear()
    bench.run_benchmarks([])
    assert ran == ["summary", "explore", "train"]
