"""The Experiments page and the Train chart's zoom in a real browser (fixtures from test_browser)."""
from __future__ import annotations

import pytest

from tests.test_browser import assert_clean, open_page, set_number, shot, start_training, wait_idle

pytestmark = pytest.mark.slow


def test_a_two_config_experiment_with_a_batch_cap(server, browser):
    url, _ = server
    page = open_page(browser, url, "experiments")
    assert_clean(page)
    page.get_by_text("Variants: ReLU, sigmoid").wait_for()  # the default experiment: two variants
    set_number(page, "Max batches per epoch (0 = all)", 5)
    set_number(page, "Seeds", 1)  # two seeds pooled are tested without a browser (test_app)
    page.get_by_text("2 runs, 10 training batches").wait_for()  # 2 variants × 1 seed × 5 batches
    page.get_by_role("button", name="Queue 2 runs").click()
    page.get_by_text("2 of 2 runs done").wait_for(timeout=180_000)
    wait_idle(page)
    sentence = page.locator("[data-testid='stAlert']").filter(has_text="test accuracy")
    sentence.wait_for()
    text = sentence.inner_text()
    assert "ReLU" in text and "sigmoid" in text and "not finished" not in text
    legend = page.locator(".js-plotly-plot .legendtext")
    legend.filter(has_text="sigmoid").first.wait_for()  # both variants' curves on the shared axes
    assert legend.filter(has_text="ReLU").count() >= 1
    try:
        page.get_by_text("conv1.activation").first.wait_for(timeout=120_000)  # two runs of the set: what differs
    except Exception as e:  # seen twice under load, cause not found: say what the page showed instead
        shown = page.locator("[data-testid='stMain']").inner_text()
        raise AssertionError("no conv1.activation row; the page ends with: "
                             + shown[shown.find("Pick any two"):][:1500]) from e
    assert_clean(page)
    page.wait_for_timeout(500)
    shot(page, "experiments")
    page.context.close()


def until(page, check, timeout_s: float = 90) -> bool:
    """Poll `check()` every half second (a machine loaded by other work trains slowly)."""
    for _ in range(int(timeout_s * 2)):
        if check():
            return True
        page.wait_for_timeout(500)
    return check()


def test_the_live_chart_keeps_its_zoom_while_held(server, browser):
    url, _ = server
    page = open_page(browser, url, "train")
    start_training(page, batches=60, epochs=30)  # long enough not to end before Stop on a fast CPU (bf16)
    page.get_by_text("ETA").first.wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    # the chart may be between two drawings when asked (no data yet): 0 points then
    points = lambda: plot.evaluate("gd => (((gd.data || [])[0] || {}).x || []).length")  # noqa: E731
    assert until(page, lambda: plot.evaluate("gd => (gd.data || []).length > 0"))  # the chart has its data
    n0 = points()
    assert until(page, lambda: points() > n0)  # live: the curve grows
    bar = page.locator("[data-testid='stProgress']").first
    page.get_by_text("Hold the chart").click()
    for _ in range(2):  # two updates of the bar after the click: the held figure is on the page
        before = bar.inner_text()
        assert until(page, lambda: bar.inner_text() != before)
    held = points()
    # zoom the loss panel as a user would, and mark the element to see whether it is replaced
    plot.evaluate("gd => { gd.__kept = true; return Plotly.relayout(gd, {'xaxis.range': [0.05, 0.2]}); }")
    for _ in range(2):
        before = bar.inner_text()
        assert until(page, lambda: bar.inner_text() != before)        # the run went on ...
    assert plot.evaluate("gd => gd.__kept === true")                  # ... in the same chart ...
    assert plot.evaluate("gd => gd.layout.xaxis.range") == [0.05, 0.2]  # ... with the user's zoom
    assert points() == held
    shot(page, "train-held")
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Run stopped").first.wait_for(timeout=60_000)
    assert page.get_by_text("ETA").count() == 0
    assert_clean(page)
    page.context.close()
