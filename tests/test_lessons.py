"""Lessons: every answer recomputed here another way, the data-missing answers, and the page walked:
answer, see the answer, reload keeps the place."""
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alexnet_viz import links
from alexnet_viz.config import PRESETS, TrainConfig
from alexnet_viz.lessons import answers
from alexnet_viz.lessons.chapter import SCHEMA, STEPS, Context, judge
from alexnet_viz.model import build_model
from alexnet_viz.runs.store import Run, list_runs
from alexnet_viz.training.experiments import EXPERIMENTS

from tests.conftest import ROOT

APP = str(ROOT / "tests" / "apps" / "lessons.py")


def numel(name: str) -> int:
    return sum(p.numel() for p in build_model(PRESETS[name]).parameters())


def macs_by_layer(name: str) -> dict[str, int]:
    """Multiply-accumulates of one image per conv / Linear module, counted by torch's FLOP counter (2 per MAC)."""
    cfg = PRESETS[name]
    model = build_model(cfg, device="meta").eval()
    x = torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    # run once, hooking every module's input shape, then count each conv / Linear alone
    shapes = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: shapes.__setitem__(n, a[0].shape))
             for n, m in [*model.features.named_children(), *model.classifier.named_children()]]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    mods = dict([*model.features.named_children(), *model.classifier.named_children()])
    out = {}
    for n in [n for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        with FlopCounterMode(display=False) as fc:
            mods[n](torch.empty(shapes[n], device="meta"))
        out[n] = fc.get_total_flops() // 2
    return out


def test_the_ratios_are_the_numel_and_flop_counts_of_the_two_presets():
    f = answers.ratios()
    p = numel("d2l") / numel("lenet5")
    m = sum(macs_by_layer("d2l").values()) / sum(macs_by_layer("lenet5").values())
    assert f.value == pytest.approx(p) and f.figures["macs_times"] == pytest.approx(m)
    assert f"{p:,.0f}×" in f.text and f"{m:,.0f}×" in f.text
    assert "10×" in f.text and "260×" in f.text  # compared with the chapter's round figures


@pytest.mark.parametrize("what", ["params", "macs"])
def test_the_heaviest_layer_is_the_argmax_of_torchs_own_counts(what):
    model = build_model(PRESETS["d2l"])
    if what == "params":
        counts = {n: sum(p.numel() for p in m.parameters())
                  for n, m in [*model.features.named_children(), *model.classifier.named_children()]}
    else:
        counts = macs_by_layer("d2l")
    f = answers.heaviest(what)
    assert f.value == max(counts, key=counts.get)
    assert f.value in dict(next(s for s in STEPS if s.key == what).options)


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 6, 8])
def test_conv1_side_is_a_real_convs_output(stride):
    cfg = PRESETS["d2l"]
    c1 = cfg.convs[0]
    conv = nn.Conv2d(cfg.in_channels, c1.out_channels, c1.kernel, stride, c1.padding)
    with torch.no_grad():
        side = conv(torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size)).shape[-1]
    f = answers.conv1_side(stride)
    assert f.value == side == (224 + 2 - 11) // stride + 1
    assert f"{side}×{side}" in f.text


def test_training_memory_grows_only_in_its_per_image_parts():
    from alexnet_viz.cost.estimate import estimate_training
    f = answers.training_memory(128, 512)
    a = estimate_training(PRESETS["d2l"], TrainConfig(batch_size=128), device="cpu")
    per_image = sum(v for k, v in a.breakdown.items()
                    if k in ("activations kept for backward", "backward working memory", "the batch"))
    fixed = a.peak_memory_bytes - per_image
    assert f.value == pytest.approx((fixed + 4 * per_image) / (fixed + per_image), rel=0.02)
    assert 1 < f.value < 4  # the weights and the process do not grow with the batch
    step = next(s for s in STEPS if s.key == "memory")
    assert judge(step, f, step.correct(f)).right


def test_the_receptive_field_of_conv5_by_the_stride_formula_and_by_walking_back_a_unit():
    from alexnet_viz.inspect.receptive import unit_box
    cfg = PRESETS["d2l"]
    rf, jump, layers = 1, 1, []
    for b in cfg.convs:  # conv, then its pool: rf += (k - 1) * jump; jump *= stride
        rf, jump = rf + (b.kernel - 1) * jump, jump * b.stride
        layers.append(rf)
        if b.pool != "none" and b is not cfg.convs[-1]:
            rf, jump = rf + (b.pool_kernel - 1) * jump, jump * b.pool_stride
    f = answers.receptive_growth()
    assert f.value == rf == layers[-1]
    assert list(f.figures.values()) == layers
    box = unit_box(build_model(cfg, device="meta"), "conv5", 6, 6).exact  # a centre unit of the 12×12 map
    assert box.bottom - box.top + 1 == f.value


# --- answers from runs: fake run folders, and what is said when they are missing ----------------------

def fake_experiment(root, name: str, accs: dict[str, list[tuple[float, float]]]):
    """Finished runs of experiment `name`: per variant, (train_acc, test_acc) per seed."""
    for label, pairs in accs.items():
        for seed, (train, test) in enumerate(pairs):
            run = Run.create(PRESETS["mini28"], TrainConfig(seed=seed), "fake", root,
                             tags={"experiment": name, "variant": label, "seed": seed, "set": "a1",
                                   "experiments": {name: label}})
            run.append_metric({"kind": "epoch", "epoch": 1, "train_loss": 0.5, "train_acc": train, "test_acc": test})
            run.set_status("finished", epochs_done=1)
    return list_runs(root)


def test_relu_vs_sigmoid_reads_the_finished_runs_and_applies_the_seed_noise_rule(tmp_path):
    runs = fake_experiment(tmp_path / "a", "relu-vs-sigmoid", {"ReLU": [(0.9, 0.88), (0.9, 0.87)],
                                                               "sigmoid": [(0.5, 0.40), (0.5, 0.45)]})
    f = answers.relu_vs_sigmoid(runs)
    assert f.missing is None and f.value == "ReLU"
    assert f"{(0.88 + 0.87) / 2:.3f}" in f.text and f"{(0.40 + 0.45) / 2:.3f}" in f.text
    close = fake_experiment(tmp_path / "b", "relu-vs-sigmoid", {"ReLU": [(0.9, 0.80), (0.9, 0.90)],
                                                                "sigmoid": [(0.9, 0.84), (0.9, 0.85)]})
    assert answers.relu_vs_sigmoid(close).value == "about the same"  # gap 0.005 < 2 × sd 0.071


def test_dropout_gap_is_train_minus_test_per_variant(tmp_path):
    runs = fake_experiment(tmp_path, "dropout", {"dropout": [(0.90, 0.88)], "no dropout": [(0.97, 0.86)]})
    f = answers.dropout_gap(runs)
    assert f.figures == pytest.approx({"dropout": 0.02, "no dropout": 0.11})
    assert f.value == "larger"


def test_missing_runs_are_said_plainly_and_nothing_is_judged(tmp_path):
    ctx = Context(runs=list_runs(tmp_path), example=None)
    for key in ("relu", "filters", "dropout"):
        step = next(s for s in STEPS if s.key == key)
        f = step.answer(ctx)
        assert f.value is None and f.missing and "no" in f.missing.lower()
        assert judge(step, f, step.options[0][0]) is None


def test_conv1_filters_before_and_after_from_a_fake_run_folder(tmp_path):
    from alexnet_viz.runs.snapshots import Snapshotter
    cfg = PRESETS["mini28"]
    torch.manual_seed(0)
    model = build_model(cfg)
    run = Run.create(cfg, TrainConfig(), "fake", tmp_path)
    Snapshotter(run.path, model, per_epoch=10, epochs=1).at_start()
    k = cfg.convs[0].kernel  # "trained": smooth Gaussian blobs at random places
    yy, xx = np.mgrid[:k, :k]
    with torch.no_grad():
        w = model.features.conv1.weight
        for i in range(w.shape[0]):
            cy, cx = np.random.default_rng(i).uniform(0, k - 1, 2)
            w[i, 0] = torch.from_numpy(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)).float()
    run.save_checkpoint(model, None, 1.0, None)
    f = answers.conv1_filters(run)
    assert f.missing is None, f.missing
    assert abs(f.figures["before"]) < 0.2 < 0.6 < f.figures["after"]
    assert f.value == "smooth"
    assert f.figures["after_img"].shape == (cfg.convs[0].out_channels, k, k)
    assert f.figures["after_img"].min() >= 0 and f.figures["after_img"].max() <= 1


def test_judge_numbers_and_choices():
    ratio = next(s for s in STEPS if s.key == "ratio")
    f = answers.Finding(100.0, "t")
    assert judge(ratio, f, 110).right and not judge(ratio, f, 10).right
    assert "10.0× too low" in judge(ratio, f, 10).words
    side = next(s for s in STEPS if s.key == "stride")
    assert not judge(side, answers.Finding(54, "t"), 55).right  # a size is exact
    assert "Close" in judge(side, answers.Finding(54, "t"), 55).words


def test_the_steps_cover_the_issues_list_and_their_links_read_back():
    assert len(STEPS) >= 8
    assert {s.key for s in STEPS} >= {"ratio", "params", "macs", "stride", "memory", "relu", "filters", "field",
                                      "dropout"}
    for s in STEPS:
        view = s.view(Context(stride=3))
        schema = links.ARCHITECT if view.page == "" else None
        if schema is not None:  # an Architect view is the very link the Architect writes
            assert links.read(view.query, schema)[1] == []
    assert links.read({"lesson": "3", "a_params": "fc1", "a_ratio": "758"}, SCHEMA) == (
        {"lesson": 3, "a_params": "fc1", "a_ratio": 758.0}, [])
    assert set(EXPERIMENTS) >= {"relu-vs-sigmoid", "dropout"}


# --- the page ---------------------------------------------------------------------------------------

def open_page(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_a_learner_answers_sees_the_answer_and_a_reload_keeps_the_place():
    at = open_page()
    assert not at.exception
    assert not any("758" in m.value for m in at.markdown)  # the answer waits for the learner's
    at.number_input[0].set_value(10)
    next(b for b in at.button if b.label == "Answer").click().run()
    expected = f"{numel('d2l') / numel('lenet5'):,.0f}×"
    assert any(expected in m.value for m in at.markdown)
    assert any("too low" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Next →").click().run()
    assert at.subheader[0].value == STEPS[1].title
    labels = dict(STEPS[1].options)
    at.radio[0].set_value("fc1")
    next(b for b in at.button if b.label == "Answer").click().run()
    assert any("Right." in s.value for s in at.success)
    q = url(at)
    assert q == {"lesson": "2", "a_ratio": "10", "a_params": "fc1"} and labels["fc1"] == "fc1"
    again = open_page(q)  # the reload: a new session from the same address
    assert not again.exception
    assert again.subheader[0].value == STEPS[1].title
    assert any("Right." in s.value for s in again.success)
    assert "answered 2 of" in again.get("progress")[0].proto.text


def test_presenter_mode_shows_the_question_large_and_the_answer_on_a_click():
    at = open_page({"lesson": "8", "present": "1"})
    assert not at.exception
    assert any("lesson-question" in m.value and "conv5" in m.value for m in at.markdown)
    assert not at.number_input and not at.radio  # the class answers aloud
    assert not any("163" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Show the answer").click().run()
    rf = answers.receptive_growth().value
    assert any(f"{rf}×{rf}" in m.value for m in at.markdown)
    assert url(at)["reveal"] == "1"
    next(b for b in at.button if b.label == "Next →").click().run()
    assert "reveal" not in url(at)  # a new question starts hidden


def test_a_bad_lesson_link_is_named_and_the_lesson_opens_at_the_start():
    at = open_page({"lesson": "99", "a_params": "<b>x</b>", "stride": "7"})
    assert not at.exception
    notice = [w.value for w in at.warning if "link was ignored" in w.value]
    assert len(notice) == 1 and all(k in notice[0] for k in ("lesson", "a_params", "stride"))
    assert at.subheader[0].value == STEPS[0].title
    assert url(at) == {}  # the bad parts are gone from the address


def test_the_relu_step_answers_from_the_runs_on_disk_and_says_when_there_are_none(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_RUNS", str(tmp_path / "none"))
    monkeypatch.setattr("alexnet_viz.runs.store.EXAMPLES", tmp_path / "no-examples")  # a checkout without them
    at = open_page({"lesson": "6"})
    at.radio[0].set_value("ReLU")
    next(b for b in at.button if b.label == "Answer").click().run()
    assert any("No finished ReLU-vs-sigmoid experiment" in i.value for i in at.info)
    monkeypatch.setenv("ALEXNET_VIZ_RUNS", str(tmp_path / "runs"))
    fake_experiment(tmp_path / "runs", "relu-vs-sigmoid", {"ReLU": [(0.9, 0.88), (0.9, 0.87)],
                                                           "sigmoid": [(0.5, 0.40), (0.5, 0.45)]})
    at.run()
    assert any("You said ReLU. Right." in s.value for s in at.success)
    assert any("ReLU beat sigmoid" in m.value for m in at.markdown)


def test_without_a_dropout_experiment_the_shipped_runs_own_gap_is_given(tmp_path):
    runs = fake_experiment(tmp_path, "relu-vs-sigmoid", {"ReLU": [(0.93, 0.91)]})
    f = answers.dropout_gap([], Run(runs[0].path))
    assert f.value is None and "0.930" in f.missing and "0.910" in f.missing and "+0.020" in f.missing


def test_the_shipped_experiment_and_run_answer_the_relu_and_filters_steps():
    from alexnet_viz.runs.examples import example_run
    from alexnet_viz.training.experiments import collect_results, summarize_experiment
    run = example_run()
    if run is None:
        pytest.skip("this checkout ships no example runs")
    runs = list_runs()
    f = answers.relu_vs_sigmoid(runs)
    stats, sentence = summarize_experiment(collect_results(runs, "relu-vs-sigmoid"))
    assert f.missing is None and sentence in f.text
    assert f.value == max(stats, key=lambda s: s["test acc"])["variant"] or f.value == "about the same"
    g = answers.conv1_filters(run)
    assert g.missing is None and g.figures["before"] < g.figures["after"]
