"""Explore's shared model cache: bounded by bytes, least recently used out first; and the results
kept per model, which go when the model goes."""
import gc
from types import SimpleNamespace

import torch
from torch import nn

from alexnet_viz.config import get_preset
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
