"""The Architect in a real browser at a projector's 1920×1080 and a phone's 390×844: the drawing's
labels are readable, the editor tables fit, a broken network is drawn in red, presenter mode
enlarges and hides the editor. With ALEXNET_VIZ_SHOTS=1, screenshots go to test-artifacts/ (the README shows copies)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from alexnet_viz.config import get_preset, trace, with_conv
from alexnet_viz.architect.summary import summarize

from tests.test_browser import assert_clean, conv_table, edit_cell, metric, set_number, shot, wait_idle, wait_metric

pytestmark = pytest.mark.slow


def open_at(browser, url: str, width: int, height: int):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    wait_idle(page)
    page.locator(".arch-drawing svg g.layer").first.wait_for()
    page.locator("[data-testid='stMetric']").first.wait_for()
    return page


def label_px(page) -> float:
    """The smallest font size, in CSS px as drawn, of the drawing's labels."""
    return page.evaluate("""() => {
        const svg = document.querySelector('.arch-drawing svg');
        const k = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return Math.min(...[...svg.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize) * k));
    }""")


def viewport_shot(page, name: str) -> None:
    shot(page, name, full_page=False)


def test_projector_1920(server, browser):
    url, _ = server
    page = open_at(browser, url, 1920, 1080)
    assert_clean(page)
    assert label_px(page) >= 14
    drawing = page.locator(".arch-drawing").bounding_box()
    svg = page.locator(".arch-drawing svg").bounding_box()
    assert svg["width"] <= drawing["width"] + 1  # the whole network fits across a projector, no scrolling
    page.wait_for_timeout(300)
    viewport_shot(page, "architect-1920")
    # a network that cannot work: drawn up to the failing layer, which is red, with the message
    set_number(page, "Input size (px)", 40)
    failed = page.locator(".arch-drawing svg g.layer.failed")
    failed.wait_for()
    assert failed.get_attribute("data-layer") == trace(replace(get_preset("d2l"), input_size=40)).where
    assert "smaller than pool kernel" in page.locator(".arch-drawing svg text.message").first.text_content()
    page.locator(".arch-drawing").scroll_into_view_if_needed()
    viewport_shot(page, "architect-1920-error")
    set_number(page, "Input size (px)", 224)
    page.locator(".arch-drawing svg g.layer.failed").wait_for(state="detached")
    # presenter mode: bigger type, no editor
    page.get_by_text("Presenter mode").click()
    wait_idle(page)
    page.get_by_text("Edit the network").wait_for(state="detached")
    from playwright.sync_api import expect
    # layer table and comparison as HTML tables, whose type grows with the page's (a canvas dataframe's cannot)
    expect(page.locator("[data-testid='stTable']")).to_have_count(1, timeout=30_000)
    page.get_by_text("Two networks side by side").click()  # a lazy expander: the comparison is drawn when opened
    wait_idle(page)
    expect(page.locator("[data-testid='stTable']")).to_have_count(2, timeout=30_000)
    cell_px = page.evaluate("parseFloat(getComputedStyle(document.querySelector('[data-testid=stTable] td')).fontSize)")
    assert cell_px >= 20
    page.wait_for_function("() => document.querySelector('.arch-drawing svg').getAttribute('font-size') >= 24")
    assert label_px(page) >= 20
    value_px = page.evaluate("parseFloat(getComputedStyle(document.querySelector("
                             "'[data-testid=stMetricValue] div') || document.querySelector("
                             "'[data-testid=stMetricValue]')).fontSize)")
    assert value_px >= 40  # 3rem: the totals read from the back of the room
    assert metric(page, "Parameters") == f"{summarize(get_preset('d2l')).total_params:,}"
    viewport_shot(page, "architect-1920-presenter")
    assert_clean(page)
    page.context.close()


def test_phone_390(server, browser):
    url, _ = server
    page = open_at(browser, url, 390, 844)
    assert_clean(page)
    assert label_px(page) >= 14  # drawn at its own size; the drawing scrolls sideways
    table = conv_table(page)
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = table.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390  # one table that scrolls inside the screen
    edit_cell(page, table, 1, 3, 0)  # conv2 padding 2 -> 0 on a phone
    edited = summarize(with_conv(get_preset("d2l"), 1, padding=0)).total_params
    wait_metric(page, "Parameters", f"{edited:,}")
    page.locator(".arch-drawing").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    viewport_shot(page, "architect-390-drawing")
    table.scroll_into_view_if_needed()
    viewport_shot(page, "architect-390-editor")
    assert_clean(page)
    page.context.close()

