"""Figures are pure functions of plain data: check what they draw, not how it looks."""
import numpy as np

from alexnet_viz.ui import plots
from alexnet_viz.config import get_preset
from alexnet_viz.architect.summary import summarize


def rows():
    s = summarize(get_preset("d2l"))
    return [r.to_dict() for r in s.rows]


def test_per_layer_bars_show_only_layers_with_the_quantity():
    fig = plots.per_layer_bars(rows(), "params", "Parameters")
    bar = fig.data[0]
    assert list(bar.x) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"]
    assert sum(bar.y) == 46_764_746
    assert bar.text[5] == "56%"  # fc1 holds 26.2 M of 46.8 M


def test_training_curves_and_compare():
    steps = [{"epoch": 0.5, "loss": 1.0, "acc": 0.5}, {"epoch": 1.0, "loss": 0.5, "acc": 0.8}]
    fig = plots.training_curves(steps, [{"epoch": 1, "test_acc": 0.79}])
    assert [t.name for t in fig.data] == ["train loss", "train acc", "test acc"]
    assert list(fig.data[2].y) == [0.79]
    # loss and accuracy on two labelled panels, accuracy on 0..1; zoom kept across updates
    assert fig.data[0].yaxis != fig.data[1].yaxis == fig.data[2].yaxis
    assert fig.layout.yaxis.title.text == "cross-entropy" and tuple(fig.layout.yaxis2.range) == (0, 1.02)
    # the same uirevision for a figure with more data: Plotly keeps the user's zoom across the update
    more = plots.training_curves(steps + [{"epoch": 1.5, "loss": 0.4, "acc": 0.85}], [{"epoch": 1, "test_acc": 0.79}])
    assert fig.layout.uirevision and more.layout.uirevision == fig.layout.uirevision
    book = {"epoch": 10, "train_loss": 0.331, "train_acc": 0.878, "test_acc": 0.883}
    fig = plots.training_curves(steps, [], reference=book)
    marks = {t.name: (t.x[0], t.y[0], t.yaxis) for t in fig.data[3:]}
    assert marks == {"book: train loss": (10, 0.331, "y"), "book: train acc": (10, 0.878, "y2"),
                     "book: test acc": (10, 0.883, "y2")}
    fig = plots.experiment_curves({"ReLU": [(steps, [{"epoch": 1, "test_acc": 0.8}])] * 2,
                                   "sigmoid": [(steps, [{"epoch": 1, "test_acc": 0.3}])] * 2})
    assert len(fig.data) == 8 and [t.name for t in fig.data if t.showlegend] == ["ReLU", "sigmoid"]
    assert fig.data[0].line.color == fig.data[3].line.color != fig.data[4].line.color
    fig = plots.compare_runs({"a": [{"epoch": 1, "test_acc": 0.7}], "b": [{"epoch": 1, "test_acc": 0.8}]})
    assert [t.name for t in fig.data] == ["a", "b"]


def test_confusion_matrix_rows_are_fractions():
    cm = np.array([[3, 1], [0, 4]])
    fig = plots.confusion_matrix(cm, ("x", "y"))
    np.testing.assert_allclose(np.asarray(fig.data[0].z).sum(1), [1, 1])


def test_images():
    a = np.array([[0.0, 1.0], [np.nan, 0.5]])
    img = plots.colorize(a)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8 and (img[1, 0] == 255).all()
    assert plots.colorize(a, min_side=8).shape == (8, 8, 3)
    cam = np.linspace(0, 1, 16).reshape(4, 4)
    over = plots.overlay_heatmap(np.zeros((4, 4), np.uint8), cam)
    assert over.shape == (4, 4, 3) and over[3, 3, 0] > over[0, 0, 0]  # hot is red
    grid = plots.filter_grid(np.random.rand(20, 5, 5), cols=8, scale=2)
    assert grid.shape == (3 * 12 - 2, 8 * 12 - 2)


def _internals_records(n: int) -> list[dict]:
    """Fabricated internals records: two weighted layers, one ReLU, 4 bins (as internals.Internals.to_dict)."""
    return [{"step": 5 * k + 1, "epoch": 0.1 * k, "layers": ["conv1", "fc1"], "grad_norm": [1e-3 * (k + 1), 1.0],
             "weight_norm": [1.0, 2.0], "update_ratio": [1e-3, 2e-3], "w_range": [[-1.0, 1.0], [-2.0, 2.0]],
             "w_hist": [[k, 1, 2, 3], [0, 0, 5, k]], "g_hist": [[1, 2, 3, 4], [4, 3, 2, 1]], "g_range": [-10.0, 0.0],
             "relus": ["relu1"], "dead": [0.25], "every": 5, "cost_s": 0.01} for k in range(n)]


def test_internals_figures_follow_their_records():
    from alexnet_viz.ui.plots import internals_heatmap, internals_lines
    recs = _internals_records(6)
    fig = internals_lines(recs, "grad_norm", "g", log_y=True)
    assert [t.name for t in fig.data] == ["conv1", "fc1"] and fig.layout.yaxis.type == "log"
    assert list(fig.data[0].y) == [r["grad_norm"][0] for r in recs] and list(fig.data[0].x) == [r["step"] for r in recs]
    assert [t.name for t in internals_lines(recs, "dead", "d").data] == ["relu1"]
    heat = internals_heatmap(recs, "fc1", "w").data[0]
    assert np.asarray(heat.customdata).shape == (4, 6)               # bins × samples
    assert np.asarray(heat.customdata)[:, 2].tolist() == recs[2]["w_hist"][1]
    assert np.allclose(heat.y, [-1.5, -0.5, 0.5, 1.5])                 # bin centres over fc1's range


def test_embedding_figure_has_one_frame_per_snapshot_and_every_point():
    from alexnet_viz.ui.plots import embedding_scatter
    labels, idx = np.array([0, 1, 1, 2]), np.array([10, 11, 12, 13])
    frames = [("before training", np.zeros((4, 2))), ("epoch 1", np.arange(8.0).reshape(4, 2))]
    fig = embedding_scatter(frames, labels, idx, ("a", "b", "c"))
    assert [f.name for f in fig.frames] == ["before training", "epoch 1"]
    assert sum(len(t.x) for t in fig.data) == 4 and sorted(np.concatenate([t.customdata for t in fig.data])) == idx.tolist()
