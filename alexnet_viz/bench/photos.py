"""Phone photos in Explore: a 12, 48 and 200 MP JPEG decoded at reduced scale and analysed, beside a
640×480 photo (the baseline) and the 48 MP one decoded whole (what it cost before).

Each photo is measured in a fresh process (so one photo's memory is not another's): its peak RSS
above the process's RSS before the upload (/proc's high-water mark, reset first), the peak of what
tracemalloc sees (numpy and torch's CPU tensors, not Pillow's own buffers), the whole process's peak
(torch and d2l's model included: compare it with the 640×480 photo's), and the median time of
`open_image` and of `open_image` + the Explore analysis of d2l's network, first as an upload (the
decode cache cleared) and then as the page's next run (a slider step: the same bytes). The JPEGs are made here,
photo-like (smooth shapes with sensor noise, about 1 bit a pixel as phones save them).
Targets: ≤ 300 MB and ≤ 1.5× the 640×480 photo's time, up to 200 MP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alexnet_viz.bench import print_table

SIZES = {"640×480": (640, 480), "12 MP": (4000, 3000), "48 MP": (8000, 6000), "200 MP": (16320, 12240)}


def make_photo(w: int, h: int, path: Path, quality: int = 85) -> None:
    """A photo-like JPEG: a smooth picture scaled up (phones' optics are soft) plus fine noise; made
    strip by strip from a small noise tile, so a 200 MP photo needs only its own 600 MB to build."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    small = Image.fromarray((rng.random((max(h // 64, 2), max(w // 64, 2), 3)) * 255).astype(np.uint8))
    base = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))
    tile = rng.normal(0, 6, (256, 256, 3)).astype(np.int16)
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, 256):
        rows = base[y:y + 256].astype(np.int16)
        noise = np.tile(tile, (1, -(-w // 256), 1))[:rows.shape[0], :w]
        out[y:y + 256] = np.clip(rows + noise, 0, 255)
    del base
    Image.fromarray(out).save(path, "JPEG", quality=quality)


def _hwm_reset() -> int:
    """RSS now, in bytes, with the peak (VmHWM) reset to it; Linux's /proc/self/clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(path: str, whole: bool, repeat: int) -> None:
    """In a fresh process: decode and analyse the photo at `path` as an upload (the decode cache
    cleared each time) and as the page's next run (the same bytes again); print the figures as JSON."""
    import io
    import tracemalloc

    from PIL import Image

    from alexnet_viz.bench.explore import photo_bytes
    from alexnet_viz.config import get_preset
    from alexnet_viz.inspect.analysis import analyze, untrained
    from alexnet_viz.inspect.images import clear_decoded, open_image

    def decode(data: bytes):
        if not whole:
            return open_image(data)
        Image.MAX_IMAGE_PIXELS = None  # the old way: the whole image decoded on every run, then scaled
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")

    def timed(fresh: bool) -> tuple[float, float, tuple]:
        if fresh:
            clear_decoded()
        t = time.perf_counter()
        im = decode(data)
        d = time.perf_counter() - t
        analyze(m, im)
        return d, time.perf_counter() - t, im.size

    m = untrained(get_preset("d2l"))
    analyze(m, open_image(photo_bytes()))  # warm-up: imports, kernels, the model's first pass
    data = Path(path).read_bytes()
    before = _hwm_reset()
    tracemalloc.start()
    first = [timed(True)]
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _status("VmHWM") - before
    first += [timed(True) for _ in range(repeat - 1)]
    again = [timed(False) for _ in range(repeat)]

    def median(rows, i):
        return sorted(r[i] for r in rows)[len(rows) // 2]
    print(json.dumps({"size": first[0][2], "peak": peak, "traced": traced, "process": _status("VmHWM"),
                      "decode": median(first, 0),
                      "total": median(first, 1), "again": median(again, 1)}))


def _run_child(path: Path, whole: bool, repeat: int) -> dict:
    root = str(Path(__file__).resolve().parents[2])
    env = os.environ | {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = f"from alexnet_viz.bench.photos import child; child({str(path)!r}, {whole}, {repeat})"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool = False) -> None:
    repeat = 3 if quick else 5
    sizes = dict(SIZES) if not quick else {k: SIZES[k] for k in ("640×480", "48 MP")}
    rows, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(name, w, h, False) for name, (w, h) in sizes.items()] + [("48 MP, decoded whole (before)", 8000, 6000, True)]
        for name, w, h, whole in cases:
            path = Path(tmp, f"{w}x{h}.jpg")
            if not path.exists():
                make_photo(w, h, path)
            r = _run_child(path, whole, repeat)
            base = base or r
            rows.append([name, f"{path.stat().st_size / 2**20:.1f}", "×".join(map(str, r["size"])),
                         f"{r['decode'] * 1e3:,.0f}", f"{r['total'] * 1e3:,.0f}", f"{r['total'] / base['total']:.2f}×",
                         f"{r['again'] * 1e3:,.0f}", f"{r['again'] / base['again']:.2f}×",
                         f"{r['peak'] / 2**20:,.0f}", f"{r['traced'] / 2**20:,.0f}",
                         f"{r['process'] / 2**20:,.0f}",
                         "yes" if r["peak"] <= 300 * 2**20 and r["again"] <= 1.5 * base["again"] else "NO"])
    print_table(f"photos: a JPEG decoded and analysed (d2l) as an upload and as the page's next run (a slider step), "
                f"each photo in a fresh process, median of {repeat} (targets up to 200 MP: ≤ 300 MB, ≤ 1.5× the "
                f"640×480 photo's time)",
                ["photo", "file MB", "decoded to", "upload: decode ms", "decode + analysis ms", "× 640×480",
                 "next run ms", "× 640×480", "peak RSS MB", "tracemalloc MB", "process peak MB", "on target"], rows)
    print(f"load average {os.getloadavg()[0]:.1f} (times are noisy on a shared machine: read the ratios)")
