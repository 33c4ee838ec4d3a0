"""Explore in a real browser: click a unit of a feature map, see its receptive field, its arithmetic
and the top images. With ALEXNET_VIZ_SHOTS=1, screenshots go to test-artifacts/ (the README's come from here)."""
from __future__ import annotations

import re

from tests.test_browser import SHOTS, assert_clean, choose, open_page, shot, wait_idle

import pytest

pytestmark = pytest.mark.slow


def click_unit(page, row: int, col: int) -> None:
    """Click the centre of unit (row, col) of the enlarged channel's heat map, placed by Plotly's own axes."""
    chart = page.locator(".js-plotly-plot").filter(has_text="click a unit").first
    chart.wait_for()
    chart.scroll_into_view_if_needed()
    x, y = chart.evaluate("""(gd, [r, c]) => {
        const L = gd._fullLayout, box = gd.getBoundingClientRect();
        return [box.left + L.xaxis._offset + L.xaxis.l2p(c), box.top + L.yaxis._offset + L.yaxis.l2p(r)];
    }""", [row, col])
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    wait_idle(page)


def test_click_a_unit_shows_its_field_arithmetic_and_top_images(server, browser):
    url, _ = server
    page = open_page(browser, url)                    # the Architect: pick the small network
    choose(page, "Preset", "mini28")
    page.get_by_role("link", name="Explore").click()
    page.get_by_text("One unit:").first.wait_for()
    wait_idle(page)
    assert_clean(page)
    click_unit(page, 3, 10)                            # relu1 of mini28 is 14×14
    page.get_by_text(re.compile(r"One unit: relu1, channel \d+, row 3, column 10")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Receptive field of relu1 unit \(row 3, column 10\)")).wait_for()
    page.get_by_text(re.compile(r"How relu1\[\d+, 3, 10\] = ")).wait_for()   # the arithmetic ...
    assert "row=3" in page.url and "col=10" in page.url       # the click reran its part of the page: the URL ...
    page.get_by_role("button", name="Share this view").click()
    link = page.locator("[data-testid='stPopoverBody'] code").first
    link.wait_for()
    assert "row=3" in link.inner_text() and "col=10" in link.inner_text()   # ... and the link to share follow it
    page.keyboard.press("Escape")
    page.get_by_text("sum (before the activation)").first.wait_for(state="attached")  # ... its table (a canvas)
    page.get_by_text("Strongest of all").wait_for()                 # the top images
    page.get_by_text("five attribution methods").wait_for()
    page.locator(".js-plotly-plot").filter(has_text="Saliency").first.wait_for()
    page.get_by_text(re.compile("steps of gradient ascent on unit")).wait_for(timeout=120_000)  # background work done:
    wait_idle(page)                                   # its rerun of the page has come and gone
    assert_clean(page)
    # the app scrolls inside its own container, so a "full page" shot is one screen: scroll, then shoot
    for name, anchor in (("explore-click", "Every layer"), ("explore-unit", re.compile("^One unit:")),
                         ("explore-attributions", re.compile("five attribution methods"))) if SHOTS else ():
        page.get_by_text(anchor).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(800)
        shot(page, name, full_page=False)
    page.context.close()
