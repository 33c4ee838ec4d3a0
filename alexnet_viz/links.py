"""A page's state as a link: each page declares its query parameters as a schema, and this module
reads and writes them. Pure (no streamlit), so every rule here is tested without a browser.

A link is input from anyone: `read` never raises; a value that is malformed, out of range, too long,
repeated, not UTF-8 or otherwise hostile is dropped and its parameter named, so the page can say
which parts of the link it ignored. A network travels as compact JSON → zlib → URL-safe base64 and
comes back through the same validation and cost check as a JSON import (architect/importing.py).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from alexnet_viz.architect.importing import network_from_dict
from alexnet_viz.config import PRESETS, ArchConfig, ConfigError

VALUE_MAX = 200          # characters of any one value but a network
NETWORK_MAX = 4000       # characters of an encoded network (alexnet2012 edited: about 400)
NETWORK_BYTES_MAX = 64 * 1024  # its JSON once inflated: a zip bomb stops here
NETWORK_PREFIX = "n1."   # format version: a later format gets another prefix, old links still read
GLOBAL = ("sid",)        # kept in the URL by every page, never part of a shared link (the session id)
_SAFE_TEXT = re.compile(r"[A-Za-z0-9 ._:()+\-]{1,80}")
_INT = re.compile(r"[+-]?\d{1,12}")
_FLOAT = re.compile(r"[+-]?(\d{1,12}(\.\d{0,12})?|\.\d{1,12})([eE][+-]?\d{1,3})?")
_B64 = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Param:
    """One query parameter: its kind and what it accepts. Build it with choice/integer/number/flag/text/network."""
    kind: str                              # choice | int | float | bool | text | network
    options: tuple[str, ...] = ()          # choice: the accepted values
    lo: float | None = None                # int, float: inclusive range
    hi: float | None = None
    default: object = None                 # written links leave a parameter out while it has this value


def choice(options, default: str | None = None) -> Param:
    return Param("choice", options=tuple(str(o) for o in options), default=default)


def integer(lo: int, hi: int, default: int | None = None) -> Param:
    return Param("int", lo=lo, hi=hi, default=default)


def number(lo: float, hi: float, default: float | None = None) -> Param:
    return Param("float", lo=lo, hi=hi, default=default)


def flag(default: bool = False) -> Param:
    return Param("bool", default=default)


def text(default: str | None = None) -> Param:
    """A short safe string: letters, digits, space and ._:()+- , at most 80 characters."""
    return Param("text", default=default)


def network() -> Param:
    return Param("network")


PRESENT = "present"
PRESENTER = {PRESENT: flag()}  # every page's presenter mode, `?present=1`

# The Architect's view: a preset by name, any other network packed whole, presenter mode. Here, not in
# the page, because other pages (Lessons) build links to it.
ARCHITECT = {"preset": choice(PRESETS, default="d2l"), "net": network(), **PRESENTER}


def architect_values(cfg: ArchConfig, presenter: bool = False) -> dict:
    """The Architect's link values for a network: the preset's name when cfg is one, else cfg itself."""
    preset = next((name for name, p in PRESETS.items() if p == cfg), None)
    return {"preset": preset, "net": None if preset else cfg, PRESENT: presenter}

Schema = Mapping[str, Param]


def _one(raw: object) -> str:
    """The single text value of a parameter; ValueError for a repeat, bytes that are not UTF-8, etc."""
    if isinstance(raw, (list, tuple)):
        if len(raw) != 1:
            raise ValueError("given more than once" if raw else "empty")
        raw = raw[0]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not isinstance(raw, str):
        raise ValueError(f"not text: {type(raw).__name__}")
    raw.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise ValueError("control characters")
    return raw


def _parse(p: Param, s: str) -> object:
    """The value s stands for under p; ValueError (or ConfigError for a network) when it does not fit."""
    if p.kind == "network":
        if len(s) > NETWORK_MAX:
            raise ValueError("too long")
        return decode_network(s)
    if len(s) > VALUE_MAX:
        raise ValueError("too long")
    if p.kind == "choice":
        if s not in p.options:
            raise ValueError("not an option")
        return s
    if p.kind == "bool":
        if s.lower() in ("1", "true", "yes", "on"):
            return True
        if s.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a yes/no")
    if p.kind == "int":
        if not _INT.fullmatch(s):
            raise ValueError("not a whole number")
        v = int(s)
    elif p.kind == "float":
        if not _FLOAT.fullmatch(s):
            raise ValueError("not a number")
        v = float(s)
        if not math.isfinite(v):
            raise ValueError("not finite")
    elif p.kind == "text":
        if not _SAFE_TEXT.fullmatch(s):
            raise ValueError("not short safe text")
        return s
    else:
        raise ValueError(f"unknown kind {p.kind!r}")
    if (p.lo is not None and v < p.lo) or (p.hi is not None and v > p.hi):
        raise ValueError("out of range")
    return v


def read(params: Mapping, schema: Schema) -> tuple[dict, list[str]]:
    """(the values the schema accepts from a query-param mapping, the names of parameters it ignored).

    `params` maps a name to a string, bytes, or a list of them (a repeated key); keys outside the
    schema are left alone (other pages' parameters, the session id). Never raises."""
    values, ignored = {}, []
    try:
        items = list(params.items())
    except Exception:  # noqa: BLE001 — a mapping that cannot even be listed gives nothing
        return {}, []
    for key, raw in items:
        if not isinstance(key, str) or key not in schema:
            continue
        try:
            values[key] = _parse(schema[key], _one(raw))
        except (ValueError, ConfigError, TypeError, RecursionError, MemoryError, OverflowError):
            ignored.append(key)
    return values, ignored


def _format(p: Param, v: object) -> str:
    if p.kind == "network":
        return encode_network(v)
    if p.kind == "bool":
        return "1" if v else "0"
    if p.kind == "float":
        return f"{float(v):g}"
    return str(v)


def write(values: Mapping, schema: Schema) -> dict[str, str]:
    """The query parameters for `values` under `schema`, in schema order; a value that is None or its
    parameter's default is left out, so a link carries only what differs from a fresh page."""
    out = {}
    for key, p in schema.items():
        v = values.get(key)
        if v is None or (p.default is not None and v == p.default):
            continue
        out[key] = _format(p, v)
    return out


def encode_network(arch: ArchConfig) -> str:
    """A network as URL-safe text: compact JSON, zlib, base64 without padding, behind a version prefix."""
    body = json.dumps(arch.to_dict(), separators=(",", ":"), sort_keys=True).encode("utf-8")
    return NETWORK_PREFIX + base64.urlsafe_b64encode(zlib.compress(body, 9)).decode("ascii").rstrip("=")


def decode_network(text: str) -> ArchConfig:
    """encode_network's inverse, through the import's validation and cost check; ConfigError otherwise."""
    if not isinstance(text, str) or not text.startswith(NETWORK_PREFIX):
        raise ConfigError("network: not a network link (it should start with n1.)")
    body = text[len(NETWORK_PREFIX):]
    if len(text) > NETWORK_MAX or not _B64.fullmatch(body):
        raise ConfigError("network: the link's network is damaged (wrong characters or too long)")
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, NETWORK_BYTES_MAX)
        whole = inflate.eof and not inflate.unconsumed_tail
        d = json.loads(raw.decode("utf-8")) if whole else None
    except (binascii.Error, zlib.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise ConfigError("network: the link's network is damaged (it does not decode)") from None
    if not whole:
        raise ConfigError("network: the link's network is damaged or too large")
    return network_from_dict(d)


__all__ = ["Param", "Schema", "choice", "integer", "number", "flag", "text", "network", "PRESENT", "PRESENTER",
           "GLOBAL", "ARCHITECT", "architect_values", "read", "write", "encode_network", "decode_network"]
