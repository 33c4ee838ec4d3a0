"""The cost estimator: its parts against what torch really allocates, the budget, and refusals."""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from alexnet_viz.cost import budget, profile
from alexnet_viz.cost import estimate as cost
from alexnet_viz.config import ArchConfig, ConfigError, ConvSpec, TrainConfig, get_preset
from alexnet_viz.data import cache_dir
from alexnet_viz.model import build_model
from alexnet_viz.units import parse_bytes

from tests.conftest import ROOT

# The issue's network: one conv, 3×512 input, 2048 channels: ~4.3 GB of activations per image.
HUGE = ArchConfig(name="huge", in_channels=3, input_size=512, convs=(ConvSpec(2048, 3, 1, 1),),
                  adaptive_pool=1, hidden=(16,), dropout=0.0)


def saved_on_cpu(cfg: ArchConfig, B: int) -> int:
    """The independent answer: bytes of distinct storages autograd saves in a real CPU forward."""
    model = build_model(cfg).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t
    x = torch.randn(B, cfg.in_channels, cfg.input_size, cfg.input_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(x), torch.zeros(B, dtype=torch.long))
    return sum(seen.values())


@pytest.mark.parametrize("preset", ["mini28", "lenet5"])
def test_activations_kept_match_what_autograd_saves_on_the_cpu(preset):
    cfg = get_preset(preset)
    B = 8
    real = saved_on_cpu(cfg, B)
    ours = cost.footprint(cfg).saved_train * B
    assert abs(ours - real) <= 0.1 * real, (ours, real)


def test_weights_gradients_and_optimizer_state_follow_the_parameter_count():
    cfg = get_preset("mini28")
    n = sum(p.numel() for p in build_model(cfg).parameters())
    by_opt = {o: cost.estimate_training(cfg, TrainConfig(optimizer=o, amp=False), device="cpu").breakdown
              for o in ("sgd", "momentum", "adam")}
    assert by_opt["sgd"]["weights"] == by_opt["sgd"]["gradients"] == 4 * n
    assert [by_opt[o]["optimizer state"] for o in ("sgd", "momentum", "adam")] == [0, 4 * n, 8 * n]


def test_peak_is_the_sum_of_its_parts_and_grows_with_the_batch():
    cfg = get_preset("mini28")
    small, big = (cost.estimate_training(cfg, TrainConfig(batch_size=b), device="cpu") for b in (32, 512))
    assert small.peak_memory_bytes == sum(small.breakdown.values())
    grown = big.breakdown["activations kept for backward"] - small.breakdown["activations kept for backward"]
    # independently: what autograd really saves for each extra image (two real CPU batches; the
    # difference cancels what does not grow with the batch, such as BatchNorm's per-channel statistics)
    per_image = (saved_on_cpu(cfg, 64) - saved_on_cpu(cfg, 32)) / 32
    assert grown == pytest.approx((512 - 32) * per_image, rel=0.02)
    assert big.peak_memory_bytes > small.peak_memory_bytes


@pytest.mark.parametrize("preset", ["mini28", "lenet5", "d2l", "alexnet2012"])
def test_macs_are_what_torchs_flop_counter_counts(preset):
    """The independent count: torch's FlopCounterMode over a forward pass (meta device: free), 2 flops a MAC."""
    from torch.utils.flop_counter import FlopCounterMode
    cfg = get_preset(preset)
    x = torch.empty(1, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        build_model(cfg, device="meta").eval()(x)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    f = cost.footprint(cfg)
    assert (2 * f.conv_macs, 2 * f.linear_macs) == (flops["aten.convolution"], flops["aten.addmm"])


def test_seconds_per_epoch_follow_the_work():
    cfg = get_preset("mini28")
    full = cost.estimate_training(cfg, TrainConfig(batch_size=128), device="cpu")
    capped = cost.estimate_training(cfg, TrainConfig(batch_size=128, max_batches=10), device="cpu")
    half = cost.estimate_training(cfg, TrainConfig(batch_size=128), n_train=30_000, device="cpu")
    big = cost.estimate_training(get_preset("d2l"), TrainConfig(batch_size=128), device="cpu")
    assert capped.seconds_per_epoch < half.seconds_per_epoch < full.seconds_per_epoch < big.seconds_per_epoch
    # d2l's convs do 139× mini28's work (torch's flop counter, above): its epoch takes far longer
    assert big.seconds_per_epoch > 20 * full.seconds_per_epoch


def test_the_device_profile_is_measured_once_and_cached_on_disk(monkeypatch):
    monkeypatch.setattr(profile, "_load_per_core", lambda: 0.1)  # a quiet machine
    first = profile.DeviceProfiles().get("cpu")
    assert (cache_dir() / "device_profile.json").exists()
    monkeypatch.setattr(profile, "measure_device", lambda dev: pytest.fail("measured twice"))
    assert profile.DeviceProfiles().get("cpu") == first  # a new process reads the file


def test_script_runs_that_overlap_measure_the_device_once(monkeypatch):
    """Streamlit starts a rerun while the run it replaces is still going: both ask for the profile at once."""
    import threading
    calls, real = [], profile.measure_device
    def slow(dev):
        calls.append(dev)
        time.sleep(0.3)  # long enough for every thread to arrive while the first is measuring
        return real(dev)
    monkeypatch.setattr(profile, "measure_device", slow)
    profiles, got = profile.DeviceProfiles(), []
    threads = [threading.Thread(target=lambda: got.append(profiles.get("cpu"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)


def test_a_profile_taken_on_a_busy_machine_is_measured_again_keeping_the_fastest(monkeypatch):
    """Other work only slows a measurement down: rates taken under load are replaced as soon as a
    later process measures faster, and a slower later measurement never replaces faster ones."""
    busy = {"conv_macs_per_s": 1e9, "narrow_conv_macs_per_s": 1e9, "linear_macs_per_s": 9e10, "bytes_per_s": 1e9, "layer_s": 1e-3, "load": 3.0,
            **dict.fromkeys(("smooth_bytes_per_s", "window_bytes_per_s", "lrn_bytes_per_s"), 1e9)}
    quiet = {"conv_macs_per_s": 8e10, "narrow_conv_macs_per_s": 2e10, "linear_macs_per_s": 4e10, "bytes_per_s": 2e10, "layer_s": 4e-5, "load": 0.1,
             **dict.fromkeys(("smooth_bytes_per_s", "window_bytes_per_s", "lrn_bytes_per_s"), 5e9)}
    measured = iter([busy, quiet])
    monkeypatch.setattr(profile, "measure_device", lambda dev: dict(next(measured)))
    assert profile.DeviceProfiles().get("cpu")["conv_macs_per_s"] == 1e9
    # a new process: the stored rates were taken under load, so it measures again
    prof = profile.DeviceProfiles().get("cpu")
    assert (prof["conv_macs_per_s"], prof["linear_macs_per_s"], prof["bytes_per_s"], prof["layer_s"]) == \
        (8e10, 9e10, 2e10, 4e-5)
    monkeypatch.setattr(profile, "measure_device", lambda dev: pytest.fail("a quiet profile measured again"))
    assert profile.DeviceProfiles().get("cpu") == prof


def test_a_bf16_speed_up_measured_on_this_cpu_shortens_the_estimate(monkeypatch):
    from alexnet_viz.training import precision
    arch, t = get_preset("mini28"), TrainConfig(batch_size=128)
    fp32 = cost.estimate_training(arch, t, device="cpu").seconds_per_epoch
    precision._write_cache(precision._cache_key(arch, 128), {"speedup": 2.0, "date": "2026-11-24"})
    assert fp32 / 2 <= cost.estimate_training(arch, t, device="cpu").seconds_per_epoch < fp32 / 1.5
    precision._write_cache(precision._cache_key(arch, 128), {"speedup": 0.1, "date": "2026-11-24"})  # AVX2 only
    assert cost.estimate_training(arch, t, device="cpu").seconds_per_epoch == pytest.approx(fp32, rel=1e-6)
    slow = cost.estimate_training(arch, TrainConfig(batch_size=128, precision="bf16"), device="cpu")
    assert slow.seconds_per_epoch > 5 * fp32  # bf16 forced where it measured 10× slower


@pytest.mark.parametrize("text,value", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", 3 * 2**29),
                                        ("3000000", 3_000_000), ("64k", 65536)])
def test_budget_sizes_parse(text, value):
    assert parse_bytes(text) == value


def test_budget_env_overrides_and_bad_values_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "300M")
    assert budget.memory_budget("cpu") == 300 * 2**20
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "lots")
    with pytest.raises(ConfigError, match="not a size"):
        budget.memory_budget("cpu")


def test_cpu_budget_is_what_this_machine_has_free_less_a_margin(monkeypatch):
    monkeypatch.delenv("ALEXNET_VIZ_MEMORY_BUDGET", raising=False)
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    avail = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    assert 0 < budget.memory_budget("cpu") < min(total, avail * 1.1)


def test_over_budget_names_the_biggest_consumer_and_what_to_lower(monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "2G")
    est = cost.estimate_training(get_preset("d2l"), TrainConfig(batch_size=4096), device="cpu")
    assert not est.fits and est.biggest == "activations kept for backward"
    with pytest.raises(budget.OverBudget) as e:
        budget.require_fits(est)
    msg = str(e.value)
    assert "\n" not in msg and "activations kept for backward" in msg and "lower the batch size" in msg
    most = int(msg.split("at most ")[1].split()[0])  # the batch it says fits does fit
    assert cost.estimate_training(get_preset("d2l"), TrainConfig(batch_size=most), device="cpu").fits
    assert not cost.estimate_training(get_preset("d2l"), TrainConfig(batch_size=most + 2), device="cpu").fits


def test_analysis_of_the_issues_network_is_refused_before_the_model_is_built(monkeypatch):
    from alexnet_viz.inspect import analysis as activations
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "2G")
    est = cost.estimate_analysis(HUGE)
    assert est.peak_memory_bytes > 4 * 2**30 and not est.fits
    assert "conv1" in est.message() and "input size" in est.message()
    monkeypatch.setattr(activations, "build_model", lambda *a, **k: pytest.fail("built before refusing"))
    with pytest.raises(budget.OverBudget):
        activations.untrained(HUGE)


def test_a_slow_run_says_what_would_make_it_fast(monkeypatch):
    rates = {"conv_macs_per_s": 1e11, "narrow_conv_macs_per_s": 2e10, "linear_macs_per_s": 5e10, "bytes_per_s": 1e10, "layer_s": 1e-4,
             **dict.fromkeys(("smooth_bytes_per_s", "window_bytes_per_s", "lrn_bytes_per_s"), 3e9)}
    laptop = profile.DeviceProfiles()
    laptop.remember("cpu", rates)  # a 2-core laptop's rates, fixed
    est = cost.estimate_training(get_preset("d2l"), TrainConfig(epochs=10, batch_size=128), device="cpu",
                                 profiles=laptop)
    assert est.fits and est.run_seconds > cost.SLOW_RUN_S
    assert "mini28" in est.advice and "batches per epoch" in est.advice


@pytest.mark.parametrize("n_train,n_test,max_batches", [(10_000, 2_000, 0), (60_000, 10_000, 0), (60_000, 10_000, 200)])
def test_the_suggested_cap_is_counted_on_the_real_training_set(n_train, n_test, max_batches):
    """The cap the advice suggests is fewer batches than an epoch of this data has (the sample's
    10,000 images make 79 batches of 128, not Fashion-MNIST's 469), and the run with it, and with
    the epochs it names, takes under SLOW_RUN_S."""
    laptop = profile.DeviceProfiles()
    laptop.remember("cpu", {"conv_macs_per_s": 1e11, "narrow_conv_macs_per_s": 2e10, "linear_macs_per_s": 5e10,
                            "bytes_per_s": 1e10, "layer_s": 1e-4,
                            **dict.fromkeys(("smooth_bytes_per_s", "window_bytes_per_s", "lrn_bytes_per_s"), 3e9)})
    t = TrainConfig(epochs=10, batch_size=128, max_batches=max_batches)
    kw = dict(n_train=n_train, n_test=n_test, device="cpu", profiles=laptop)
    est = cost.estimate_training(get_preset("d2l"), t, **kw)
    assert est.run_seconds > cost.SLOW_RUN_S
    m = re.search(r"a cap of (\d+) batch(?:es)? per epoch(?:, with (\d+) epochs?,)? keeps it under", est.advice)
    assert m, est.advice
    cap, epochs = int(m[1]), int(m[2] or t.epochs)
    assert cap < min(-(-n_train // 128), max_batches or 10**9)  # 79 or 469 batches, or the cap already set
    followed = cost.estimate_training(get_preset("d2l"), replace(t, max_batches=cap, epochs=epochs), **kw)
    assert followed.run_seconds < cost.SLOW_RUN_S


def test_evaluation_batch_follows_the_budget_and_the_training_batch(monkeypatch):
    d2l = get_preset("d2l")
    assert cost.eval_batch_size(d2l, "cpu", False) == cost.EVAL_BATCH
    one = cost.eval_batch_size(d2l, "cpu", False, train_batch=1)
    assert one < cost.EVAL_BATCH
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "40M")
    tight = cost.eval_batch_size(d2l, "cpu", False)
    per_image = cost._eval_per_image(d2l, cost.footprint(d2l), False)
    assert 1 <= tight and tight * per_image <= 10 * 2**20


def test_training_evaluates_in_the_batch_the_budget_allows(monkeypatch):
    from alexnet_viz.data import DeviceData
    from tests.test_training import TINY, synthetic
    seen = []
    real = DeviceData.test_batches
    monkeypatch.setattr(DeviceData, "test_batches", lambda self, bs: seen.append(bs) or real(self, bs))
    monkeypatch.setattr("alexnet_viz.training.engine.eval_batch_size", lambda *a: 7)
    from alexnet_viz.training.engine import train
    recs = list(train(TINY, TrainConfig(epochs=1, batch_size=32, device="cpu"), synthetic()))
    assert recs[-1].status == "finished" and seen == [7]


def _rss_of_cli(args: list[str], budget: str) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS bytes) of the CLI in a fresh process."""
    code = ("import resource, sys\nfrom alexnet_viz.__main__ import main\nrc = main(sys.argv[1:])\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)\n"
            "sys.exit(rc)")
    env = {**os.environ, "ALEXNET_VIZ_MEMORY_BUDGET": budget, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    rss = int(p.stderr.split("RSS ")[1].split()[0])
    return p.returncode, p.stderr, rss


def test_cli_refuses_a_run_over_the_budget_before_allocating(tmp_path):
    runs = tmp_path / "runs"
    rc, err, rss = _rss_of_cli(["train", "--preset", "d2l", "--batch-size", "4096", "--device", "cpu",
                                "--run-dir", str(runs)], "2G")
    need = cost.estimate_training(get_preset("d2l"), TrainConfig(batch_size=4096), device="cpu").peak_memory_bytes
    assert rc == 2 and "activations kept for backward" in err and "Traceback" not in err
    assert rss < need / 10  # nothing of the run was allocated: the process is its imports
    assert not runs.exists()  # and no run folder for a run that never started


def test_cli_estimate_prints_json_and_exits_2_when_it_does_not_fit(capsys, monkeypatch):
    from alexnet_viz.__main__ import main
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "1G")
    ok = main(["estimate", "--preset", "mini28", "--batch-size", "64", "--json"])
    a = json.loads(capsys.readouterr().out)
    big = main(["estimate", "--preset", "d2l", "--batch-size", "512", "--json"])
    b = json.loads(capsys.readouterr().out)
    assert ok == 0 and big == 2
    assert a["fits"] and not b["fits"] and a["peak_memory_bytes"] < b["peak_memory_bytes"]
    assert "at batch 64" in a["message"] and "lower the batch size" in b["message"]
    n = sum(p.numel() for p in build_model(get_preset("mini28")).parameters())  # the JSON's parts, counted here
    assert a["breakdown"]["weights"] == a["breakdown"]["gradients"] == 4 * n
    assert a["peak_memory_bytes"] == sum(a["breakdown"].values()) and a["batch_size"] == 64


# --- the pages: the same refusal before any allocation (AppTest, no browser) ------------------------
def _page(name: str, arch: ArchConfig | None = None):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "tests" / "apps" / f"{name}.py"), default_timeout=120)
    if arch is not None:
        at.session_state["last_valid"] = arch  # the Architect's network, as if chosen there
    return at.run()


def test_the_architect_shows_the_estimate_and_warns_when_it_does_not_fit(monkeypatch):
    at = _page("architect")
    assert any(c.value.startswith("Estimate: about") and "per epoch" in c.value and "peak" in c.value
               for c in [*at.caption, *at.warning])
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "100M")
    at.run()
    assert not at.exception
    assert any("would not fit" in e.value and "the biggest part is" in e.value for e in at.error)
    assert any("Explore cannot look inside this network" in w.value for w in at.warning)


def test_the_train_page_disables_start_when_the_run_does_not_fit(monkeypatch):
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "100M")
    at = _page("train")
    assert not at.exception
    start = next(b for b in at.button if b.label == "Start training")
    assert start.disabled and any("would not fit" in e.value for e in at.error)
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "8G")
    at.run()
    assert not next(b for b in at.button if b.label == "Start training").disabled


def test_explore_refuses_the_issues_network_before_allocating_it(tmp_path):
    """In a fresh process (its own RSS): the page says why, and the 4 GB of maps were never made."""
    code = ("import resource, sys\nsys.path.insert(0, sys.argv[1])\n"
            "from tests.test_cost import HUGE, _page\nat = _page('explore', HUGE)\n"
            "at.radio(key='model_kind').set_value('untrained').run()\n"  # the default is the shipped mini28
            "assert not at.exception, at.exception\n"
            "print('ERRORS', [e.value for e in [*at.error, *at.warning]])\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    env = {**os.environ, "ALEXNET_VIZ_MEMORY_BUDGET": "2G", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    errors = p.stdout.split("ERRORS ")[1].split("\nRSS")[0]
    assert "analysing one image with this network needs about" in errors and "conv1" in errors
    assert "Something went wrong" not in errors
    rss = int(p.stdout.split("RSS ")[1].split()[0])
    assert rss < cost.estimate_analysis(HUGE).peak_memory_bytes / 3


def test_the_estimate_counts_the_test_set_it_will_evaluate():
    """The bundled sample (10,000 + 2,000 images) is evaluated on 2,000 images, not the full 10,000."""
    arch, t = get_preset("mini28"), TrainConfig(batch_size=128)
    full = cost.estimate_training(arch, t, n_train=10_000, device="cpu")
    sample = cost.estimate_training(arch, t, n_train=10_000, device="cpu", n_test=2_000)
    assert sample.seconds_per_epoch < full.seconds_per_epoch
    assert full.breakdown["dataset on the device"] - sample.breakdown["dataset on the device"] == 8_000 * (28 * 28 + 8)
