"""bench classroom's bookkeeping, without a browser: a looping session's failure is counted with a screenshot
of its page, and nothing is counted once the bench has stopped it."""
import asyncio

from alexnet_viz.bench import classroom


class FakePage:
    url = "http://127.0.0.1:1/explore"

    def __init__(self, fail: bool = False):
        self.fail = fail

    async def screenshot(self, path: str, **_):
        if self.fail:
            raise TimeoutError("stuck")
        open(path, "wb").write(b"png")


def test_a_failure_is_counted_with_a_screenshot_of_its_page(tmp_path, monkeypatch):
    monkeypatch.setattr(classroom, "SHOTS", tmp_path / "shots")
    errors: list[str] = []
    s = classroom.Student(None, "http://127.0.0.1:1", "mate1", errors)
    s.page = FakePage()
    stop = asyncio.Event()
    asyncio.run(s.failed(TimeoutError("Locator.click: Timeout 180000ms exceeded."), stop))
    (line,) = errors
    shot = tmp_path / "shots" / "classroom-mate1-0.png"
    assert line.startswith("mate1: TimeoutError: Locator.click") and str(shot) in line and FakePage.url in line
    assert shot.read_bytes() == b"png"
    s.page = FakePage(fail=True)  # a page too stuck for a screenshot: still counted, without one
    asyncio.run(s.failed(ValueError("x"), stop))
    assert errors[1] == "mate1: ValueError: x"
    stop.set()  # the browsers closing at the end are not failures
    asyncio.run(s.failed(RuntimeError("closed"), stop))
    assert len(errors) == 2
