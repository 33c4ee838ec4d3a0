"""Explore's shared model cache: bounded by bytes, least recently used out first, safe under threads;
and the results kept per model, which go when the model goes."""
import gc
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace

import torch
from torch import nn

from alexnet_viz.config import LIMITS, get_preset
from alexnet_viz.inspect import top
from alexnet_viz.inspect.modelcache import ModelCache, PerObjectCache, model_bytes
from alexnet_viz.model import build_model


def loaded(n_weights: int):
    return SimpleNamespace(model=nn.Linear(n_weights, 1, bias=False))  # n_weights float32 values


def test_model_bytes_counts_parameters_and_buffers():
    m = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))
    # Linear 10*5+5, BatchNorm weight+bias 5+5 and buffers running mean/var 5+5 (float32) + 1 int64 counter
    assert model_bytes(m) == (55 + 10 + 10) * 4 + 8


def test_the_cache_stays_under_its_byte_limit_and_evicts_the_oldest():
    cache = ModelCache(limit_bytes=1000 * 4)  # room for 1,000 float32 weights
    loads = []

    def load(n, key):
        loads.append(key)
        return loaded(n)
    a = cache.get("a", lambda: load(400, "a"))
    cache.get("b", lambda: load(400, "b"))
    assert cache.get("a", lambda: load(400, "a")) is a and loads == ["a", "b"]  # a hit, and now the newest
    cache.get("c", lambda: load(400, "c"))  # 1,200 weights: the least recently used (b) goes
    assert cache.keys() == ["a", "c"] and cache.total <= cache.limit
    big = cache.get("big", lambda: load(5000, "big"))  # larger than the whole cap: served, never kept
    assert big.model.weight.numel() == 5000 and "big" not in cache.keys() and cache.keys() == ["a", "c"]


def test_results_kept_per_object_are_capped_and_go_with_their_object():
    cache = PerObjectCache(most=2)
    a, b = nn.Linear(1, 1), torch.zeros(3, 2)  # a model, and a tensor (whose == is elementwise)
    cache.put(a, "x", 1)
    cache.put(b, "fp", (3, 0))
    assert cache.get(a, "x") == 1 and cache.get(b, "fp") == (3, 0) and cache.get(b, "x") is None
    cache.put(a, "y", 2)
    cache.put(a, "z", 3)  # a third result for a: its oldest goes
    assert [cache.get(a, k) for k in "xyz"] == [None, 2, 3] and len(cache) == 2
    del a
    gc.collect()
    assert len(cache) == 1 and cache.get(b, "fp") == (3, 0)
    del b
    gc.collect()
    assert len(cache) == 0


def test_top_images_passes_and_test_set_fingerprints_go_when_the_model_and_the_data_go():
    passes, prints = len(top._PASSES), len(top._PRINTS)
    model = build_model(get_preset("mini28")).eval()
    xs, ys = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8), torch.arange(20) % 10
    ix = top.index_layer(model, xs, ys, "relu1", (0.5,), (0.5,))
    assert top.index_layer(model, xs, ys, "relu1", (0.5,), (0.5,), only_cached=True) is ix
    assert (len(top._PASSES), len(top._PRINTS)) == (passes + 1, prints + 1)
    del model, xs, ix
    gc.collect()
    assert (len(top._PASSES), len(top._PRINTS)) == (passes, prints)  # the old _PRINTS kept every id forever


# --- many sessions at once (Streamlit runs each session's script in its own thread) -------------------
class Loads:
    """load() functions that take a while (asleep: no CPU), count their calls per key and record
    when each ran; every value says which key it was built for."""

    def __init__(self, seconds: float = 0.2):
        self.seconds, self.lock = seconds, threading.Lock()
        self.calls, self.spans = Counter(), []

    def __call__(self, key, n_weights: int = 250):
        def load():
            t0 = time.perf_counter()
            with self.lock:
                self.calls[key] += 1
            time.sleep(self.seconds)
            v = loaded(n_weights)
            v.key = key
            with self.lock:
                self.spans.append((key, t0, time.perf_counter()))
            return v
        return load


def run_at_once(n: int, fn) -> list:
    """fn(i) in n threads released together; their results in order, any exception raised here."""
    start = threading.Barrier(n)

    def go(i):
        start.wait()
        return fn(i)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_sessions_asking_for_one_model_at_once_build_it_once():
    cache, loads = ModelCache(limit_bytes=10_000), Loads()
    got = run_at_once(16, lambda i: cache.get("a", loads("a")))
    assert loads.calls == {"a": 1}
    assert all(g is got[0] for g in got) and cache.keys() == ["a"]


def test_sessions_asking_for_many_models_build_each_once_and_in_parallel():
    cache, loads = ModelCache(limit_bytes=8 * 250 * 4), Loads()  # room for all 8
    keys = [f"k{i % 8}" for i in range(32)]                        # 4 sessions for each model
    got = run_at_once(32, lambda i: cache.get(keys[i], loads(keys[i])))
    assert [g.key for g in got] == keys and loads.calls == Counter({k: 1 for k in set(keys)})
    for i, g in enumerate(got):  # one object per key, shared by all who asked
        assert g is got[i % 8]
    assert sorted(cache.keys()) == sorted(set(keys)) and cache.total == 8 * 250 * 4
    # different models do not wait for each other: the 8 loads overlap (each takes 0.2 s)
    starts, ends = [s for _, s, _ in loads.spans], [e for *_, e in loads.spans]
    assert max(starts) < min(ends)


def test_under_many_threads_the_cache_stays_within_its_limit_and_serves_the_right_model():
    limit = 3 * 250 * 4  # room for three
    cache, loads = ModelCache(limit_bytes=limit), Loads(seconds=0.01)
    rng = random.Random(0)
    plan = [[f"k{rng.randrange(6)}" for _ in range(20)] for _ in range(12)]  # 12 sessions, 20 requests each
    seen = []

    def session(i):
        for key in plan[i]:
            v = cache.get(key, loads(key))
            assert v.key == key
            seen.append((cache.total, len(cache.keys())))
        return i
    assert run_at_once(12, session) == list(range(12))             # no thread raised
    assert all(total <= limit and n <= 3 for total, n in seen)
    assert cache.total == sum(250 * 4 for _ in cache.keys()) <= limit and len(cache.keys()) == 3
    assert sum(loads.calls.values()) <= 12 * 20


def test_a_model_larger_than_the_cap_is_built_once_for_those_waiting_and_never_kept():
    cache, loads = ModelCache(limit_bytes=1000), Loads()
    got = run_at_once(8, lambda i: cache.get("big", loads("big", n_weights=5000)))
    assert loads.calls == {"big": 1} and all(g is got[0] for g in got)
    assert cache.keys() == [] and cache.total == 0
    cache.get("big", loads("big", n_weights=5000))   # asked again later: built again (it was not kept)
    assert loads.calls == {"big": 2}


def test_a_model_over_half_the_cap_is_served_without_flushing_the_shared_ones():
    cache, loads = ModelCache(limit_bytes=1000 * 4), Loads()
    small = cache.get("small", loads("small", n_weights=300))
    cache.get("other", loads("other", n_weights=200))
    for _ in range(3):  # a hostile session asks for its 600-weight network again and again
        assert cache.get("huge", loads("huge", n_weights=600)).model.weight.numel() == 600
    assert cache.get("small", loads("small", n_weights=300)) is small            # never flushed
    assert cache.keys() == ["other", "small"] and loads.calls == {"small": 1, "other": 1, "huge": 3}


def test_the_default_cap_holds_a_class_and_the_largest_alexnet_together_and_shrinks_on_a_small_machine(monkeypatch):
    from alexnet_viz.inspect import modelcache
    monkeypatch.delenv(modelcache.ENV_LIMIT, raising=False)
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "16G")
    assert modelcache.limit_from_env() == modelcache.DEFAULT_LIMIT == 2 << 30
    with torch.device("meta"):  # the sizes without the memory
        sizes = {n: model_bytes(build_model(get_preset(n))) for n in ("mini28", "lenet5", "d2l", "alexnet2012")}
        biggest = replace(get_preset("alexnet2012"), input_size=LIMITS["input_size"][1])
        sizes["alexnet2012 at its largest input"] = model_bytes(build_model(biggest))
    # the presets and the largest input the Architect allows, kept together (under 1 GiB they were not)
    assert sum(sizes.values()) <= modelcache.DEFAULT_LIMIT and 2 * max(sizes.values()) <= modelcache.DEFAULT_LIMIT
    assert sizes["d2l"] + sizes["alexnet2012 at its largest input"] > 1 << 30
    monkeypatch.setenv("ALEXNET_VIZ_MEMORY_BUDGET", "2G")
    assert modelcache.limit_from_env() == 512 << 20
    monkeypatch.setenv(modelcache.ENV_LIMIT, "300M")
    assert modelcache.limit_from_env() == 300 << 20


def test_a_failed_load_reaches_everyone_waiting_and_the_next_request_tries_again():
    cache = ModelCache(limit_bytes=10_000)
    calls = Counter()

    def broken():
        calls["x"] += 1
        time.sleep(0.2)
        raise RuntimeError("no weights")

    def ask(i):
        try:
            cache.get("x", broken)
        except RuntimeError as e:
            return str(e)
    assert run_at_once(6, ask) == ["no weights"] * 6 and calls["x"] == 1
    assert cache.get("x", lambda: loaded(10)).model.weight.numel() == 10 and cache.keys() == ["x"]
