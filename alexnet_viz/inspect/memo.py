"""One session's last few results, so that a rerun which changes nothing upstream of them (a new
unit, a new channel) does not compute them again.

Kept in the session, not shared: the key holds values (an image's digest, the chosen layer) and
objects compared by identity (the model), so a model the shared cache has since replaced is
never mistaken for its successor.
"""
from __future__ import annotations

from typing import Callable, Hashable


class Recent:
    """The last `size` results, the most recently used first."""

    def __init__(self, size: int = 3):
        self.size = size
        self._items: list[tuple[tuple, Hashable, object]] = []

    def get(self, objects: tuple, key: Hashable, compute: Callable[[], object]):
        for i, (objs, k, v) in enumerate(self._items):
            if k == key and len(objs) == len(objects) and all(a is b for a, b in zip(objs, objects)):
                self._items.insert(0, self._items.pop(i))
                return v
        v = compute()
        self._items.insert(0, (objects, key, v))
        del self._items[self.size:]
        return v
