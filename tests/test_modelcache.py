"""Explore's shared model cache: bounded by bytes, least recently used out first."""
from types import SimpleNamespace

from torch import nn

from alexnet_viz.inspect.modelcache import ModelCache, model_bytes


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
