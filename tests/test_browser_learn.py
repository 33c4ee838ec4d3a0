"""Watching a run learn, in a real browser (fixtures from test_browser): the internals charts live and
saved, the embedding over snapshots, and Explore's snapshot scrubber changing what the network says."""
from __future__ import annotations

import pytest

from tests.test_browser import assert_clean, open_page, shot, start_training, wait_idle

pytestmark = pytest.mark.slow


def top_predictions(page) -> str:
    """The Top predictions chart's bars, as the text Plotly draws (class names and percentages)."""
    plot = page.locator(".js-plotly-plot").filter(has_text="Top predictions").first
    plot.wait_for()
    for _ in range(100):  # the element is there before Plotly has drawn into it (its data then undefined)
        bars = plot.evaluate("gd => gd.data ? JSON.stringify([gd.data[0].y, gd.data[0].text]) : null")
        if bars:
            return bars
        page.wait_for_timeout(100)
    raise AssertionError("the Top predictions chart was never drawn")


def test_internals_embedding_and_snapshot_scrubbing(server, browser):
    url, _ = server
    page = open_page(browser, url, "train")
    start_training(page, batches=8, epochs=2)  # snapshots at steps 0, 1, 4, 8, 16
    page.get_by_text("Inside the network").first.wait_for(timeout=60_000)  # live, while it trains
    page.locator(".js-plotly-plot").filter(has_text="Gradient norm per layer").first.wait_for()
    page.get_by_text("Run finished").first.wait_for(timeout=300_000)
    wait_idle(page)
    # the saved run: its internals from internals.jsonl, then the embedding over its snapshots
    grad = page.locator(".js-plotly-plot").filter(has_text="Gradient norm per layer").last
    grad.wait_for()
    assert grad.evaluate("gd => gd.layout.yaxis.type") == "log"
    assert grad.evaluate("gd => gd.data.map(t => t.name)")[:2] == ["conv1", "conv2"]
    heat = page.locator(".js-plotly-plot").filter(has_text="weights over time").last
    assert heat.evaluate("gd => gd.data[0].type") == "heatmap"
    page.get_by_text("Embedding: watch the classes separate").click()
    emb = page.locator(".js-plotly-plot").filter(has_text="Penultimate-layer features")
    emb.wait_for(timeout=120_000)
    wait_idle(page)
    frames = emb.evaluate("gd => gd._transitionData._frames.map(f => f.name)")
    assert frames[0] == "before training" and frames[-1] == "epoch 2" and "step 4" in frames
    assert emb.evaluate("gd => gd._fullData.reduce((n, t) => n + t._length, 0)") == 2000  # one point an image
    assert_clean(page)
    page.wait_for_timeout(800)
    shot(page, "train-internals")
    # Explore, same session: the run, its snapshot scrubber, and a prediction that changes with it
    page.get_by_role("link", name="Explore").click()
    slider = page.get_by_role("slider").first
    slider.wait_for(timeout=60_000)
    wait_idle(page)
    final = top_predictions(page)
    slider.focus()
    slider.press("Home")                                   # scrub to "before training"
    page.get_by_text("(before training)").first.wait_for()
    wait_idle(page)
    first = top_predictions(page)
    assert first != final
    wait_idle(page)
    page.wait_for_timeout(800)
    assert_clean(page)
    shot(page, "explore-snapshot")
    page.context.close()
