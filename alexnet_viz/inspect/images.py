"""Turning an uploaded file into a tensor, safely.

Every refusal is an ImageError whose message a student understands; nothing else escapes.

A phone photo (48–200 megapixels) is a JPEG, and a JPEG can be decoded at 1/2, 1/4 or 1/8 of its
size by the decoder itself (Pillow's `draft`: libjpeg scales the DCT, never building the full
image), so a baseline JPEG up to MAX_JPEG_PIXELS is decoded at the smallest such scale that keeps
its long side at DECODE_SIDE or more: a 200 MP photo costs a 3 MP image (then reduced to 0.35 MP).
Every other format, and a progressive JPEG (whose decoder keeps every coefficient of the full
image), is decoded whole, so it keeps the bomb guard: refused above MAX_PIXELS with a message that
says so. What the reading costs is measured by `python -m alexnet_viz bench photos`.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from alexnet_viz.units import MB, megabytes

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MAX_BYTES = 50 * MB             # an upload: a 200 MP phone photo is 25–50 MB
MAX_PIXELS = 40_000_000         # decoded whole: well below Pillow's decompression-bomb threshold (~89 M)
MAX_JPEG_PIXELS = 210_000_000   # a baseline JPEG, decoded at reduced scale: 200 MP phone sensors and a margin
DECODE_SIDE = 512               # a big image's long side is kept at least this (the largest network input)
CACHE_BYTES = 48 * MB           # decoded images kept for the page's next run (every slider step decodes again)


class ImageError(ValueError):
    """A file that is not a usable image; the message says why and what to do."""


_decoded: OrderedDict[bytes, Image.Image] = OrderedDict()  # sha256 of the file -> its image, newest last
_decoded_lock = threading.Lock()


def clear_decoded() -> None:
    """Forget the decoded images kept for the next run of a page (for benchmarks of a first decode)."""
    with _decoded_lock:
        _decoded.clear()


def open_image(data: bytes) -> Image.Image:
    """bytes -> an 'L' or 'RGB' PIL image, upright, first frame, alpha composited on white; its long
    side at most 2 × DECODE_SIDE (a larger one is reduced by a whole factor, to no less than DECODE_SIDE).

    A page decodes its image on every run (each slider step), and a 200 MP JPEG's Huffman data takes
    a third of a second to read however small the decode: the last images decoded are kept (by the
    file's SHA-256, up to CACHE_BYTES of pixels), and a copy is returned."""
    key = hashlib.sha256(data).digest()  # ~15 ms for 30 MB; a weaker hash would let a crafted file collide
    with _decoded_lock:
        hit = _decoded.get(key)
        if hit is not None:
            _decoded.move_to_end(key)
    if hit is not None:
        return hit.copy()
    im = _decode(data)
    size = im.width * im.height * len(im.getbands())
    with _decoded_lock:
        if size <= CACHE_BYTES // 4:
            _decoded[key] = im
            while sum(i.width * i.height * len(i.getbands()) for i in _decoded.values()) > CACHE_BYTES:
                _decoded.popitem(last=False)
    return im.copy()


def _decode(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("the file is empty (0 bytes) — choose an image file")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is {megabytes(len(data), 0)}; the limit is {megabytes(MAX_BYTES, 0)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if data[:3] == b"\xff\xd8\xff":  # JPEG's start-of-image marker
                im = _open_jpeg(data)
            else:
                im = Image.open(io.BytesIO(data), formats=FORMATS)
                _check_pixels(im.size, MAX_PIXELS)
                im.seek(0)  # animated GIF/WebP: the first frame
            im.load()
            im = ImageOps.exif_transpose(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        kind = _other_format(data)
        raise ImageError((f"this is {'an' if kind[0] in 'AEIOSH' else 'a'} {kind} file, not one of the image formats we read" if kind else
                          "this is not an image we can read") + " — upload a PNG, JPEG, WebP, GIF or BMP file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the image claims to be enormous (a decompression bomb?) — refused") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg or isinstance(e, EOFError):
            raise ImageError("the image file is cut short (truncated) — upload it again or re-save it") from None
        raise ImageError(f"the image could not be decoded ({msg or type(e).__name__})") from None
    if im.width < 1 or im.height < 1:
        raise ImageError("the image has no pixels")
    try:
        im = _to_l_or_rgb(im)
    except (ValueError, OSError) as e:  # a colour mode Pillow cannot turn into RGB
        raise ImageError(f"the image's colour mode ({im.mode}) cannot be converted ({e})") from None
    if max(im.size) > 2 * DECODE_SIDE:  # what no network or display needs: later steps work on less
        im = im.reduce(max(im.size) // DECODE_SIDE)
    return im


def _check_pixels(size: tuple[int, int], limit: int, kind: str = "") -> None:
    w, h = size
    if w * h > limit:
        raise ImageError(f"the image is {w}×{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                         f"{limit / 1e6:.0f}{kind} — scale it down first")


def _open_jpeg(data: bytes) -> Image.Image:
    """A JPEG set to decode at the smallest of 1/2, 1/4, 1/8 that keeps its long side ≥ DECODE_SIDE.
    Opened by its plugin, not Image.open, whose fixed bomb check (89 MP) would refuse a phone's photo;
    the limits here are by what decoding costs: MAX_JPEG_PIXELS scaled, MAX_PIXELS whole."""
    im = JpegImagePlugin.jpeg_factory(io.BytesIO(data))
    _check_pixels(im.size, MAX_JPEG_PIXELS)
    w, h = im.size
    k = max(w, h) / DECODE_SIDE
    scaled = None
    if im.info.get("progressive") or im.info.get("progression"):
        _check_pixels(im.size, MAX_PIXELS, " for a progressive JPEG, which is decoded whole (a baseline "
                                           f"JPEG may have up to {MAX_JPEG_PIXELS / 1e6:.0f})")
    elif k >= 2:
        scaled = im.draft(None, (max(1, int(w / k)), max(1, int(h / k))))
    if scaled is None:  # not scaled by the decoder: decoded whole, so the whole-image limit holds
        _check_pixels(im.size, MAX_PIXELS)
    return im


_MAGIC = ((b"%PDF", "PDF"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"\0\0\1\0", "ICO"),
          (b"\0\0\2\0", "CUR"), (b"8BPS", "Photoshop"))


def _other_format(data: bytes) -> str | None:
    """The name of a well-known file kind we do not read, to say what was uploaded."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "HEIC"
    return "SVG" if b"<svg" in data[:2048].lower() else None


def encode_png(a: np.ndarray) -> bytes:
    """An H×W or H×W×3 uint8 array as PNG file bytes (a test image, handled like an upload)."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def display_copy(im: Image.Image, max_side: int = 640) -> Image.Image:
    """A copy at most max_side on its long side, for showing; never 0 pixels on the short side
    (a 20000×1 image scaled down naively would be 640×0)."""
    k = min(1.0, max_side / max(im.size))
    size = (max(1, round(im.width * k)), max(1, round(im.height * k)))
    return im if size == im.size else im.resize(size, Image.Resampling.BILINEAR)


def _to_l_or_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB', rescaling deep images instead of clipping them."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / (65535.0 if a.max(initial=0) <= 65535 else a.max()) * 255
        elif mode == "F":
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "L")
    if mode == "P":
        im = im.convert("RGBA")
    elif mode in ("PA", "La"):
        im = im.convert("RGBA" if mode == "PA" else "LA")
    if im.mode in ("RGBA", "LA", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
        return im
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV ...


def load_image(path) -> Image.Image:
    """A file -> an image; refused by its size (stat) before any of it is read, and only a regular file."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise ImageError(f"the file is {megabytes(st.st_size, 0)}; the limit is {megabytes(MAX_BYTES, 0)}")
        with open(path, "rb") as f:
            return open_image(f.read(MAX_BYTES + 1))
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror or e}") from None


def to_tensor(im: Image.Image, channels: int, size: int, mean: tuple, std: tuple,
              invert: bool = False) -> torch.Tensor:
    """PIL image -> 1×C×size×size float tensor: channels as the model wants, resized, normalized.

    `invert`: Fashion-MNIST items are light on black; a photo of an item on a white background
    is inverted to match what the network was trained on.
    """
    im = im.convert("L" if channels == 1 else "RGB")
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).float().div_(255)
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    if invert:
        x = 1 - x
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: tuple, std: tuple) -> np.ndarray:
    """1×C×H×W normalized tensor -> H×W or H×W×3 uint8, to show what the network receives."""
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    a = (x[0].detach().cpu() * s + m).clamp(0, 1).mul(255).byte()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def light_background(im: Image.Image) -> bool:
    """True when the image's border is mostly light (a photo on white), so it should be inverted
    for a Fashion-MNIST model, whose items are light on black."""
    a = np.asarray(im.convert("L"), dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return float(border.mean()) > 127
