"""Sizes, counts and durations as people read them, and sizes as people write them.

Two conventions, each where people expect it: counts and memory estimates take decimal prefixes
(12_345_678 parameters -> '12.3 M', as papers print them); file limits are powers of two (a 50 MB
upload limit is Streamlit's `maxUploadSize` of 50, i.e. 50 × 2**20 bytes), and so is what people
type for a budget ('2G').
"""
from __future__ import annotations

import re

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def human(n: float, unit: str = "") -> str:
    """One decimal with a unit prefix: 12_345_678 -> '12.3 M', (2_500, 'B') -> '2.5 kB'."""
    for div, p in _PREFIXES:
        if abs(n) >= div:
            return f"{n / div:.1f} {p}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def approx(n: float) -> str:
    """Three significant figures with a unit prefix: 415_334_400 -> '415 M', 950 -> '950'."""
    for div, p in _PREFIXES:
        if abs(n) >= div:
            return f"{n / div:.3g} {p}"
    return f"{n:,.0f}"


def megabytes(n: float, digits: int = 1) -> str:
    """Bytes in units of 2**20, as file limits are stated: 3 * 2**30 -> '3072.0 MB'."""
    return f"{n / MB:.{digits}f} MB"


def parse_bytes(text: str) -> int:
    """'2G', '512M', '1.5GB', '3000000' -> bytes (powers of 1024); ValueError for anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text or "")
    if not m:
        raise ValueError(f"{text!r} is not a size: write bytes or a size like 512M or 2G")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2].upper() or " "))


def duration(s: float) -> str:
    """Seconds as one rounded figure: '45 s', '12 min', '2.5 h' (never '0 s')."""
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
