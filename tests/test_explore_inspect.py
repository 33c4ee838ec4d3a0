"""What Explore computes, tested without the page: boxes mapped onto the user's image, the pictures
it draws (enlarged, framed, contrast stretched), the model choice as a value, background work,
the session's memo, and an input made to excite a unit that is not a flat square."""
import dataclasses
import os
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet_viz.architect.summary import describe_layers, summarize
from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.inspect.analysis import ModelUnavailable, feature_maps, untrained
from alexnet_viz.inspect.arithmetic import explain_unit, sum_rows
from alexnet_viz.inspect.attribution import black_image
from alexnet_viz.inspect import background
from alexnet_viz.inspect.background import Background
from alexnet_viz.inspect.choice import ModelChoice, Source, load_model, own_runs, sources
from alexnet_viz.inspect.display import draw_box, enlarge, layer_sentences, scale_box, stretch_contrast
from alexnet_viz.inspect.featviz import NOISE, kernel_of, visualize_unit
from alexnet_viz.inspect.memo import Recent
from alexnet_viz.inspect.modelcache import ModelCache
from alexnet_viz.inspect.receptive import Box, unit_box
from alexnet_viz.inspect.top import TopImage, framed
from alexnet_viz.runs.store import Run

MINI = get_preset("mini28")
RED = np.array([255, 0, 0], np.uint8)


def red_mask(a: np.ndarray) -> np.ndarray:
    return (a == RED).all(-1)


# --- pictures ------------------------------------------------------------------------------------

def test_scale_box_maps_a_box_onto_a_resized_non_square_copy():
    assert scale_box((10, 20, 110, 220), (640, 480), (320, 240)) == (5, 10, 55, 110)
    x0, y0, x1, y1 = scale_box((0, 0, 640, 480), (640, 480), (480, 360))
    assert (x1, y1) == (480, 360)


def test_contrast_stretch_spreads_to_0_255_and_leaves_flat_alone():
    a = np.array([[10, 20], [30, 10]], np.uint8)
    s, lo, hi = stretch_contrast(a)
    assert (lo, hi) == (10, 30) and s.tolist() == [[0, 128], [255, 0]]
    flat = np.full((3, 3), 77, np.uint8)
    assert stretch_contrast(flat)[0].tolist() == flat.tolist()


def test_enlarge_uses_whole_sharp_pixels():
    a = np.arange(25, dtype=np.uint8).reshape(5, 5)
    big = enlarge(a, 112)
    assert big.shape == (110, 110)                  # 22× each: the largest whole factor ≤ 112
    assert (big[::22, ::22] == a).all() and (big[22:44, 44:66] == a[1, 2]).all()
    rgb = enlarge(np.zeros((4, 6, 3), np.uint8), 60)
    assert rgb.shape == (40, 60, 3)


def test_draw_box_outlines_exactly_the_boxed_pixels():
    img = np.full((28, 20), 100, np.uint8)          # not square: rows and columns must not swap
    out = draw_box(img, (2, 3, 6, 9), 112)          # rows 2..6, columns 3..9
    k = 4
    assert out.shape == (112, 80, 3)
    red = red_mask(out)
    rows, cols = np.nonzero(red)
    assert (rows.min(), rows.max()) == (2 * k, 7 * k - 1)
    assert (cols.min(), cols.max()) == (3 * k, 10 * k - 1)
    assert red[2 * k, 3 * k:10 * k].all() and red[2 * k:7 * k, 3 * k].all()   # a closed outline
    assert not red[2 * k + 1 + 1:7 * k - 2, 3 * k + 2:10 * k - 2].any()      # the inside is not covered


def _top(n: int, box: Box) -> TopImage:
    seen = (np.arange(n * n) % 251).astype(np.uint8).reshape(n, n)
    return TopImage(0, 1, 1.0, 0, 0, seen, box)


def test_a_top_image_is_the_whole_small_image_with_its_field_boxed():
    t = _top(28, Box(0, 9, 4, 13))                  # a relu1 field of mini28 at the top edge
    out = framed(t, 128)
    assert out.shape == (112, 112, 3)               # 28 × 4
    rows, cols = np.nonzero(red_mask(out))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 5 * 4 - 1, 9 * 4, 14 * 4 - 1)
    assert (out[40:44, 80:84] == t.seen[10, 20]).all()   # the image around it, unchanged
    assert t.crop.shape == (5, 5) and (t.crop == t.seen[0:5, 9:14]).all()


def test_a_top_image_of_a_big_input_is_a_window_twice_its_field():
    t = _top(224, Box(100, 40, 130, 70))            # 31×31 field: 31 px of context each side
    out = framed(t, 128)
    window = t.seen[69:162, 9:102]                  # rows 100-31 .. 130+31, columns 40-31 .. 70+31
    k = out.shape[0] // window.shape[0]
    assert out.shape[:2] == (window.shape[0] * k, window.shape[1] * k)
    rows, cols = np.nonzero(red_mask(out))
    assert (rows.min(), cols.min()) == (31 * k, 31 * k) and (rows.max(), cols.max()) == (62 * k - 1, 62 * k - 1)
    assert (out[0:k, 0:k] == window[0, 0]).all()


def test_the_attribution_baseline_is_a_black_image():
    x = torch.randn(1, 3, 5, 5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    b = black_image(x, mean, std)
    assert b.shape == x.shape
    pixels = b * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    assert torch.allclose(pixels, torch.zeros_like(pixels), atol=1e-6)


def test_layer_sentences_are_the_summarys_own_and_computed_once():
    s = layer_sentences(MINI)
    assert list(s.values()) == describe_layers(summarize(MINI))
    assert layer_sentences(MINI) is s


def test_the_arithmetic_table_adds_up_to_the_real_output():
    m = untrained(MINI)
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    maps, _ = feature_maps(m.model, x)
    rows = sum_rows(explain_unit(m.model, x, maps, "relu2", 4, 3, 5))
    vals = [float(r["value"]) for r in rows]
    terms = [v for r, v in zip(rows, vals) if not r["term"].startswith(("=", "→"))]
    real_conv = F.conv2d(maps["relu1"][None], m.model.features.conv2.weight, m.model.features.conv2.bias, padding=1)
    assert sum(terms) == pytest.approx(float(real_conv[0, 4, 3, 5].detach()), abs=5e-4)
    assert vals[-1] == pytest.approx(float(maps["relu2"][4, 3, 5]), abs=1e-4)


# --- the model choice, as a value ----------------------------------------------------------------

def test_sources_put_ones_own_run_first_then_the_example_then_the_untrained_network():
    assert sources(True, True) == [Source.RUN, Source.EXAMPLE, Source.UNTRAINED, Source.IMAGENET]
    assert sources(False, True)[0] is Source.EXAMPLE
    assert sources(False, False)[0] is Source.UNTRAINED
    assert not Source.UNTRAINED.trained and Source.EXAMPLE.trained
    assert Source("untrained") is Source.UNTRAINED     # a link names it by its value


def test_loading_a_choice_uses_the_shared_cache_and_says_why_it_cannot():
    cache = ModelCache()
    a = load_model(ModelChoice(Source.UNTRAINED), cache, MINI)
    assert load_model(ModelChoice(Source.UNTRAINED), cache, MINI) is a and a.cfg == MINI
    run = Run.create(MINI, TrainConfig(epochs=1), "synthetic")
    with pytest.raises(ModelUnavailable, match="no weights saved yet"):
        load_model(ModelChoice(Source.RUN, str(run.path)), cache, MINI)
    run.save_checkpoint(untrained(MINI, seed=4).model, None, 1.0, None)
    m = load_model(ModelChoice(Source.RUN, str(run.path)), cache, MINI)
    assert torch.equal(m.model.features.conv1.weight, untrained(MINI, seed=4).model.features.conv1.weight)


def test_the_shipped_example_is_offered_but_not_listed_as_ones_own(monkeypatch, tmp_path):
    from alexnet_viz.inspect import choice
    from alexnet_viz.runs.store import list_runs
    ex = choice.example()
    if ex is None:
        pytest.skip("this checkout has no shipped example run (alexnet_viz/assets/runs/mini28)")
    assert own_runs("") == [] and any(r.path == str(ex.path) and r.example for r in list_runs())
    cache = ModelCache()
    final = load_model(ModelChoice(Source.EXAMPLE, str(ex.path)), cache, get_preset("d2l"))
    assert final.label == "the example mini28, trained" and final.cfg.name == "mini28"
    before = load_model(ModelChoice(Source.EXAMPLE, str(ex.path), "before training"), cache, get_preset("d2l"))
    assert before.label == "the example mini28, trained (before training)"
    assert not torch.equal(before.model.features.conv1.weight, final.model.features.conv1.weight)
    monkeypatch.setattr("alexnet_viz.runs.store.EXAMPLES", tmp_path)   # a copy of the app without the shipped runs
    assert choice.example() is None


# --- background work and the session's memo ------------------------------------------------------

def test_background_work_is_shared_reports_progress_and_errors():
    bg = Background()
    owner = torch.nn.Linear(1, 1)
    gate = threading.Event()

    def work(n, progress):
        progress(0.5)
        gate.wait(10)
        return n * 2
    job = bg.start(owner, "k", "doubling", work, 21)
    assert bg.start(owner, "k", "doubling", work, 99) is job and bg.find(owner, "k") is job
    for _ in range(100):
        if job.done == 0.5:
            break
        time.sleep(0.02)
    assert job.done == 0.5 and not job.ready
    gate.set()
    assert job.future.result(10) == 42 and job.ready and job.error is None

    def fail():
        raise ValueError("no")
    bad = bg.start(owner, "bad", "failing", fail)
    with pytest.raises(ValueError):
        bad.future.result(10)
    assert isinstance(bad.error, ValueError) and bg.find(owner, "bad") is None   # asked again: starts again


def test_the_background_worker_yields_the_cores_to_the_page():
    import os
    bg = Background()
    job = bg.start(torch.nn.Linear(1, 1), "nice", "asking",
                   lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert job.future.result(10) >= 10                       # the worker thread: nice 10 or lower priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 10   # this thread untouched


def test_a_queued_job_nobody_waits_for_is_dropped():
    bg = Background(stale_s=0.5)
    owner = torch.nn.Linear(1, 1)
    gate = threading.Event()
    running = threading.Event()
    first = bg.start(owner, "first", "blocking", lambda: (running.set(), gate.wait(10)))
    while not running.wait(0.01):                     # asked about while it waits for the worker:
        bg.find(owner, "first")                       # not stale, however slow the machine is
    queued = bg.start(owner, "queued", "waiting", lambda: 1)
    time.sleep(0.8)                                   # nobody touches it meanwhile
    gate.set()
    first.future.result(10)
    for _ in range(100):
        if queued.ready:
            break
        time.sleep(0.02)
    assert queued.future.cancelled() and bg.find(owner, "queued") is None


def test_the_memo_compares_objects_by_identity_and_keeps_the_last_few():
    memo, calls = Recent(2), []
    a, b = object(), object()

    def compute(v):
        calls.append(v)
        return v
    assert memo.get((a,), 1, lambda: compute("a1")) == "a1"
    assert memo.get((a,), 1, lambda: compute("again")) == "a1"
    assert memo.get((b,), 1, lambda: compute("b1")) == "b1"      # same key, another model
    memo.get((a,), 2, lambda: compute("a2"))                     # the third: (a, 1), the oldest, goes
    assert memo.get((a,), 1, lambda: compute("a1 again")) == "a1 again"
    assert calls == ["a1", "b1", "a2", "a1 again"]


# --- an input made to excite a unit --------------------------------------------------------------

def test_the_kernel_shown_is_the_one_that_makes_the_channel():
    m = untrained(MINI)
    k = kernel_of(m.model, "relu1", 7)
    w = m.model.features.conv1.weight[7, 0].detach().numpy()
    assert k.conv == "conv1" and k.input_channel is None and k.weights.shape == (5, 5)
    assert np.allclose(k.weights, (w - w.min()) / (w.max() - w.min()), atol=1e-6)
    k2 = kernel_of(m.model, "relu2", 3)
    w2 = m.model.features.conv2.weight[3].detach()
    j = int(w2.flatten(1).norm(dim=1).argmax())
    assert k2.conv == "conv2" and k2.input_channel == j and k2.inputs == 32


def test_the_unit_optimized_is_the_centre_or_the_one_asked_for():
    m = untrained(MINI)
    v = visualize_unit(m.model, "conv1", 2, m.mean, m.std, steps=4)
    assert (v.row, v.col) == (7, 7) and v.field == unit_box(m.model, "conv1", 7, 7).clipped
    w = visualize_unit(m.model, "conv1", 2, m.mean, m.std, row=0, col=13, steps=4)
    assert w.field == Box(0, 24, 2, 27) and w.crop.shape == (3, 4)


def _trained_mini28(request):
    """The shipped trained mini28 when it is installed, else one trained here for 150 steps on the
    real data (skipped without it)."""
    from alexnet_viz.inspect.choice import example
    from alexnet_viz.inspect.analysis import from_run
    run = example()
    if run is not None:
        return from_run(run.path)
    request.getfixturevalue("real_data")
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.model import build_model
    from alexnet_viz.training.engine import init_weights
    from alexnet_viz.data import prepare_images as prepare
    ds = load_fashion_mnist()
    torch.manual_seed(0)
    model = build_model(MINI)
    init_weights(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    m = untrained(MINI)
    model.train()
    for _ in range(150):
        i = torch.randint(0, len(ds.train_y), (64,), generator=g)
        loss = F.cross_entropy(model(prepare(ds.train_x[i], 1, 28, m.mean, m.std)), ds.train_y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (model.eval()(prepare(ds.test_x[:2000], 1, 28, m.mean, m.std)).argmax(1) == ds.test_y[:2000]).float().mean()
    assert acc > 0.7, f"the network did not train ({acc:.2f})"
    return dataclasses.replace(m, model=model.eval(), label="mini28 trained 150 steps")


@pytest.mark.slow
def test_an_input_made_to_excite_a_trained_unit_is_not_flat(request):
    """The issue: relu1 of mini28 was a white square (the channel's mean over the whole map is
    satisfied by a flat bright image). One unit's optimum has a pattern inside its field: its
    spread there is far above the starting noise's, for every conv layer."""
    m = _trained_mini28(request)
    convs = [n for n, mod in m.model.features.named_children() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 4
    noise = NOISE * 255
    for layer in convs:
        for ch in range(3):
            v = visualize_unit(m.model, layer, ch, m.mean, m.std, steps=64)
            assert v.start_spread == pytest.approx(noise, rel=0.35), layer      # the noise it started from
            assert v.spread > 5 * v.start_spread, (layer, ch, v.spread, v.start_spread)
            assert v.reached > v.start, (layer, ch)
            crop = v.crop.astype(np.float32)
            assert crop.max() - crop.min() > 100, (layer, ch)                   # dark and light inside the field


def _spin(seconds: float, box: dict, go: threading.Event) -> None:
    box["tid"] = threading.get_native_id()
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    go.wait(10)  # alive until the test has looked


def test_a_long_script_run_is_lowered_and_a_short_one_is_not():
    """The server's feedback queue: a thread past LONG_S of CPU gets nice NICE; one under it keeps its own."""
    if not hasattr(time, "pthread_getcpuclockid"):
        pytest.skip("no per-thread CPU clocks on this platform")
    go = threading.Event()
    long_box, short_box = {}, {}
    long_t = threading.Thread(target=_spin, args=(0.4, long_box, go), name="ScriptRunner.scriptThread")
    short_t = threading.Thread(target=_spin, args=(0.0, short_box, go), name="ScriptRunner.scriptThread")
    for t in (long_t, short_t):
        t.start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and (background.thread_cpu_s(long_t) or 0) <= 0.4:
            time.sleep(0.02)
        before = os.getpriority(os.PRIO_PROCESS, short_box["tid"])
        done: set = set()
        assert background.demote_long([long_t, short_t], 0.25, done) == [long_t]
        assert os.getpriority(os.PRIO_PROCESS, long_box["tid"]) >= background.NICE
        assert os.getpriority(os.PRIO_PROCESS, short_box["tid"]) == before
        assert background.demote_long([long_t, short_t], 0.25, done) == []  # once each
    finally:
        go.set()
        for t in (long_t, short_t):
            t.join()


def test_the_server_starts_one_watcher():
    background.long_runs_yield()
    background.long_runs_yield()
    assert [t.name for t in threading.enumerate()].count("long-runs-yield") == (
        1 if hasattr(time, "pthread_getcpuclockid") else 0)
