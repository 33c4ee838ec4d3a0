"""Figures are pure functions of plain data: check what they draw, not how it looks."""
import numpy as np

from alexnet_viz import plots
from alexnet_viz.config import get_preset
from alexnet_viz.summary import summarize


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
    assert fig.layout.uirevision is not None
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
