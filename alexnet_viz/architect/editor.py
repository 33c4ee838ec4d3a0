"""The Architect's editor as tables: a config <-> rows (one per conv block, one per hidden layer).

Pure functions, no streamlit: the page turns `CONV_COLUMNS` into typed table columns, so every
range a cell accepts is `config.LIMITS` and nothing else.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

from alexnet_viz.config import ACTIVATIONS, LIMITS, NAME_MAX, NORMS, POOLS, ArchConfig, ConfigError, ConvSpec


@dataclass(frozen=True)
class Column:
    label: str                          # header shown above the column
    help: str                           # tooltip on the header
    default: int | str                  # value of a freshly added row
    limits: tuple[int, int] | None = None    # (min, max) for a number column, from config.LIMITS
    choices: tuple[str, ...] | None = None   # options for a choice column


def _num(label: str, key: str, default: int, help: str) -> Column:
    return Column(label, help, default, limits=LIMITS[key])


# Keys are ConvSpec's fields, in its order.
CONV_COLUMNS: dict[str, Column] = {
    "out_channels": _num("out ch", "out_channels", 64, "feature maps this conv makes"),
    "kernel": _num("kernel", "kernel", 3, "square kernel side, pixels"),
    "stride": _num("stride", "stride", 1, "conv stride, pixels"),
    "padding": _num("pad", "padding", 1, "zero padding on each side, pixels"),
    "groups": _num("groups", "groups", 1, "channel groups (2 = the paper's two-GPU split)"),
    "activation": Column("activation", "after the conv", "relu", choices=ACTIVATIONS),
    "norm": Column("norm", "lrn: the paper's local response norm; batchnorm: modern", "none", choices=NORMS),
    "pool": Column("pool", "pooling after the block", "none", choices=POOLS),
    "pool_kernel": _num("pool k", "pool_kernel", 3, "pooling window side, pixels"),
    "pool_stride": _num("pool s", "pool_stride", 2, "pooling stride, pixels"),
}
HIDDEN_COLUMNS: dict[str, Column] = {
    "width": _num("width", "hidden", 4096, "outputs of this hidden Linear layer (the last layer has one per class)"),
}
assert tuple(CONV_COLUMNS) == tuple(f.name for f in fields(ConvSpec))


def conv_rows(cfg: ArchConfig) -> list[dict]:
    return [{k: getattr(b, k) for k in CONV_COLUMNS} for b in cfg.convs]


def hidden_rows(cfg: ArchConfig) -> list[dict]:
    return [{"width": w} for w in cfg.hidden]


def _cell(where: str, col: Column, v):
    """One cell as the config's type; an empty or wrong cell is a ConfigError naming it."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise ConfigError(f"{where}: {col.label} is empty — fill it in or delete the row")
    if col.choices is not None:
        if v not in col.choices:
            raise ConfigError(f"{where}: {col.label} {v!r} is not one of {', '.join(col.choices)}")
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or float(v) != int(v):
        raise ConfigError(f"{where}: {col.label} must be a whole number (got {v!r})")
    return int(v)


def config_from_rows(settings: ArchConfig, convs: list[dict], hidden: list[dict]) -> ArchConfig:
    """`settings` with its conv blocks and hidden widths replaced by the tables' rows (not validated)."""
    blocks = tuple(ConvSpec(**{k: _cell(f"conv{i}", c, r.get(k)) for k, c in CONV_COLUMNS.items()})
                   for i, r in enumerate(convs, 1))
    widths = tuple(_cell(f"fc{i}", HIDDEN_COLUMNS["width"], r.get("width")) for i, r in enumerate(hidden, 1))
    return replace(settings, convs=blocks, hidden=widths)


def edited_name(base: ArchConfig, cfg: ArchConfig) -> str:
    """The base's name while cfg is the base network, "<base> (edited)" once it differs."""
    if replace(cfg, name=base.name) == base:
        return base.name
    suffix = " (edited)"
    if base.name.endswith(suffix):
        return base.name
    return base.name[:NAME_MAX - len(suffix)] + suffix


# The network-wide settings the editor shows above its tables (ArchConfig fields, in display order).
SETTINGS = ("in_channels", "input_size", "num_classes", "fc_activation", "dropout", "adaptive_pool")


def file_stem(cfg: ArchConfig) -> str:
    """The network's name as a download's file name: letters, digits, - and _ only."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cfg.name)[:80] or "network"
