"""The models Explore keeps in memory for every session, within a cap on their total size.

`st.cache_resource(max_entries=...)` counts models, not bytes: four cached d2l-sized networks pin
750 MB, four wide custom ones could pin the machine. This cache counts what each model's tensors
hold and evicts the least recently used ones while the total is over the cap. A model larger than
half the cap is handed out without being kept, so it is freed once its page is drawn: one session's
giant network never flushes the networks the rest of a class shares (under a cap that held only
one of d2l and alexnet2012 at 512 pixels, a hostile session and the class took turns rebuilding
them, and each rebuild dropped the class's top-9 results with its model).

What is computed from a model (top images, attributions, feature visualizations) is kept in a
PerObjectCache beside it, and goes when the model goes.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from typing import Callable, Hashable

from torch import nn

from alexnet_viz.cost.budget import memory_budget, size_from_env

ENV_LIMIT = "ALEXNET_VIZ_MODEL_CACHE"  # bytes, e.g. 2G; the default suits a classroom server
DEFAULT_LIMIT = 2 << 30  # every preset at once, and one 512-pixel alexnet2012 (873 MiB) beside them
BUDGET_SHARE = 4         # at most a quarter of the memory the server's work may use, on a small machine


def model_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def limit_from_env() -> int:
    """ALEXNET_VIZ_MODEL_CACHE, else DEFAULT_LIMIT or a quarter of the memory budget, whichever is less."""
    limit = size_from_env(ENV_LIMIT)
    return min(DEFAULT_LIMIT, memory_budget("cpu") // BUDGET_SHARE) if limit is None else limit


class ModelCache:
    """Least recently used first out, by bytes. Thread-safe; loads happen outside the lock, so one
    session's slow load never holds up another's cached model. Sessions that ask for a model while
    it is being loaded wait for that load: a model is built once, not once per waiting session
    (sixteen students opening the ImageNet model at once would otherwise hold sixteen copies)."""

    def __init__(self, limit_bytes: int | None = None):
        self.limit = limit_from_env() if limit_bytes is None else limit_bytes
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._loading: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def keys(self) -> list:
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable, load: Callable[[], object], model_of=lambda v: v.model):
        """The cached value for key, else load() — kept if its model is at most half the cap. A load's
        exception reaches every session waiting for it; the next request loads again."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            pending = self._loading.get(key)
            if pending is None:
                self._loading[key] = mine = Future()
        if pending is not None:
            return pending.result()  # another session is loading it: its value (or its exception)
        try:
            value = load()
            size = model_bytes(model_of(value))
        except BaseException as e:
            with self._lock:
                del self._loading[key]
            mine.set_exception(e)
            raise
        with self._lock:
            del self._loading[key]
            if 2 * size <= self.limit:  # else used for the requests waiting now only, never kept
                self._items[key] = (value, size)
                self._items.move_to_end(key)
                while sum(n for _, n in self._items.values()) > self.limit:
                    self._items.popitem(last=False)
        mine.set_result(value)
        return value


class PerObjectCache:
    """Results computed from an object (a model, a test set), kept while that object lives and
    dropped when it is collected; at most `most` results an object (the oldest go first).

    Keyed by identity, with a weak reference to each object: a WeakKeyDictionary would compare two
    tensors with `==`, which is elementwise. Thread-safe; the computation runs outside the lock."""

    def __init__(self, most: int | None = None):
        self.most = most
        self._items: dict[int, tuple[weakref.ref, dict]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many live objects have results here."""
        return len(self._items)

    def get(self, owner: object, key: Hashable, default=None):
        with self._lock:
            entry = self._items.get(id(owner))
            if entry is None or entry[0]() is not owner:
                return default
            return entry[1].get(key, default)

    def put(self, owner: object, key: Hashable, value) -> None:
        with self._lock:
            entry = self._items.get(id(owner))
            if entry is None or entry[0]() is not owner:
                entry = self._items[id(owner)] = (weakref.ref(owner, self._forget(id(owner))), {})
            results = entry[1]
            results[key] = value
            while self.most is not None and len(results) > self.most:
                results.pop(next(iter(results)))

    def _forget(self, i: int):
        # runs inside the garbage collector, maybe while this thread holds the lock: no lock here,
        # only atomic dict operations, and only this dead object's entry (not a newer one at its id)
        def forget(ref: weakref.ref) -> None:
            entry = self._items.get(i)
            if entry is not None and entry[0] is ref:
                self._items.pop(i, None)
        return forget
