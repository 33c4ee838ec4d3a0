"""Explore's per-session state that outlives one script run: widgets whose options change with the
model or the image, and the session's last results."""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

import streamlit as st

from alexnet_viz.inspect.memo import Recent


def settle(key: str, options: Sequence, default, keep: bool = True) -> None:
    """Before drawing a keyed widget whose options change (another model, another image): give it a
    value that is one of them — its last one if still there and `keep` (or on its first drawing, a
    value a link set), else `default` — and, when
    the options changed, set it explicitly, so that what the browser shows is what the page uses."""
    seen = f"{key}::options"
    now, before = tuple(map(str, options)), st.session_state.get(seen)
    current = st.session_state.get(key)
    if before != now or current not in options:
        # a first drawing keeps a valid value set beforehand (by a link); only new options reset it
        st.session_state[key] = current if current in options and (keep or before is None) else default
        st.session_state[seen] = now


def remembered(name: str, objects: tuple, key: Hashable, compute: Callable[[], object], size: int = 3):
    """compute() once per (objects, key) among this session's last `size` results called `name`."""
    memo = st.session_state.get(f"recent::{name}")
    if memo is None:
        memo = st.session_state[f"recent::{name}"] = Recent(size)
    return memo.get(objects, key, compute)
