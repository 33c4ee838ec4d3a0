"""Two networks side by side: per-layer numbers from each summary, and the sentence of what changed."""
import re

import pytest

from alexnet_viz.architect.compare import side_by_side, what_changed
from alexnet_viz.config import PRESETS
from alexnet_viz.architect.summary import summarize
from alexnet_viz.units import approx


@pytest.mark.parametrize("a, b", [("lenet5", "alexnet2012"), ("alexnet2012", "d2l"), ("d2l", "torchvision")])
def test_side_by_side_takes_each_layer_from_its_own_summary(a, b):
    sa, sb = summarize(PRESETS[a]), summarize(PRESETS[b])
    rows = side_by_side(sa, sb)
    ra, rb = {r.name: r for r in sa.rows}, {r.name: r for r in sb.rows}
    for row in rows:
        x, y = ra.get(row["layer"]), rb.get(row["layer"])
        assert row["A params"] == (x.params if x else 0) and row["B MACs"] == (y.macs if y else 0)
        assert row["Δ params"] == row["B params"] - row["A params"]
        assert row["Δ MACs"] == row["B MACs"] - row["A MACs"]
    # every weight and every MAC of both networks is in the table
    assert sum(r["A params"] for r in rows) == sa.total_params and sum(r["B params"] for r in rows) == sb.total_params
    assert sum(r["A MACs"] for r in rows) == sa.total_macs and sum(r["B MACs"] for r in rows) == sb.total_macs
    names = [r["layer"] for r in rows]
    assert names.index("flatten") < names.index("fc1") and names[0] == "conv1"


def test_what_alexnet_changed_from_lenet_and_d2l_from_the_paper():
    lenet, paper, d2l = (summarize(PRESETS[n]) for n in ("lenet5", "alexnet2012", "d2l"))
    s = what_changed(lenet, paper)
    assert "activation sigmoid → relu" in s and "pooling avg → max" in s and "dropout 0 → 0.5" in s
    assert f"Parameters {approx(lenet.total_params)} → {approx(paper.total_params)}" in s
    ratio = float(re.search(r"Parameters .*?\(×([\d,.]+)\)", s).group(1).replace(",", ""))
    assert ratio == pytest.approx(paper.total_params / lenet.total_params, rel=5e-3)
    s = what_changed(paper, d2l)
    assert "normalization lrn → none" in s and "groups 2 → 1" in s and "input 3×227×227 → 1×224×224" in s
    assert "(÷" in s.split("multiply")[0]  # fewer parameters ...
    assert d2l.total_macs > paper.total_macs and "(×" in s.split("multiply")[1]  # ... but more compute: no groups
    assert "nothing in the design" in what_changed(d2l, d2l)
