"""A link carries the view: a state set in one browser context, its address opened in a second (a
new session, as another person's browser), shows the same network, the same numbers, the same lesson."""
from __future__ import annotations

import pytest

from alexnet_viz.architect.summary import summarize
from alexnet_viz.config import get_preset, with_conv

from tests.test_browser import assert_clean, choose, conv_table, edit_cell, metric, open_page, wait_idle, wait_metric

pytestmark = pytest.mark.slow


def test_an_edited_network_and_a_lesson_open_the_same_in_a_second_browser(server, browser):
    url, _ = server
    a = open_page(browser, url)
    a.locator("[data-testid='stMetric']").first.wait_for(timeout=180_000)  # a first visit measures the device
    choose(a, "Preset", "alexnet2012")
    edit_cell(a, conv_table(a), 0, 1, 7)  # conv1's kernel 11 -> 7
    edited = with_conv(get_preset("alexnet2012"), 0, kernel=7)
    params = f"{summarize(edited).total_params:,}"
    wait_metric(a, "Parameters", params)
    a.wait_for_function("() => location.search.includes('net=n1.')")
    link = a.url  # the address as a user would copy it
    assert len(link) < 2000
    b = open_page(browser, url, link.split("/", 3)[3])
    wait_metric(b, "Parameters", params)
    assert metric(b, "Multiply-accumulates / image") == metric(a, "Multiply-accumulates / image")
    assert_clean(b)
    a.context.close()
    b.context.close()

    c = open_page(browser, url, "lessons?lesson=2")
    c.get_by_text("fc1", exact=True).first.click()
    wait_idle(c)
    c.get_by_role("button", name="Answer").click()
    c.get_by_text("You said fc1. Right.").wait_for()
    c.wait_for_function("() => location.search.includes('a_')")  # the answer is in the address now
    d = open_page(browser, url, c.url.split("/", 3)[3])
    d.get_by_text("You said fc1. Right.").wait_for()
    assert_clean(d)
    c.context.close()
    d.context.close()
