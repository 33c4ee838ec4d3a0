"""Coordinates onto the user's own image, on non-square photos: a unit's receptive box (unit_box),
the part of the photo the network sees (input_box), and the pictures that draw them (field_overlay,
attribution_panels, channel_heatmap, kernel_products), against boxes worked out here by hand.

Sizes are chosen so that one network pixel is a whole number of photo pixels (280×196 on a 28×28
input: 10×7 each), where the drawn box has exactly one right answer; other sizes get the range
between the pixels the box touches and the pixels it covers whole."""
import math

import numpy as np
import pytest
from PIL import Image

from alexnet_viz.config import get_preset
from alexnet_viz.inspect.analysis import Loaded, input_box, preprocess, untrained
from alexnet_viz.inspect.receptive import unit_box
from alexnet_viz.ui import plots

MINI = get_preset("mini28")  # conv1 k5 s2 p2 → 14×14; conv2 k3 s1 p1; pool2 max k3 s2 → 6×6; conv3 k3 s1 p1

# mini28's pool2 unit (row 1, column 3), walked back by hand (a range [a, b] comes from [a·s − p, b·s − p + k − 1]):
#   pool2 k3 s2 p0: rows 2..4,  cols 6..8  of conv2   conv2 k3 s1 p1: rows 1..5, cols 5..9 of conv1
#   conv1 k5 s2 p2: rows 1·2−2 = 0 .. 5·2−2+4 = 12,  cols 5·2−2 = 8 .. 9·2−2+4 = 20
POOL2_1_3 = (0, 8, 12, 20)  # (top, left, bottom, right), inclusive, in the 28×28 input


def imagenet_loaded() -> Loaded:
    """A Loaded with the ImageNet weights' own transforms (resize 256, centre crop 224): no weights needed."""
    from torchvision.models import AlexNet_Weights
    w = AlexNet_Weights.IMAGENET1K_V1
    return Loaded(None, get_preset("torchvision"), ("x",), w.transforms().mean, w.transforms().std, False, "imagenet",
                  w.transforms())


def grey(w: int, h: int) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


def red_bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pure red pixels: the drawn box (grey and heat are never pure red)."""
    ys, xs = np.nonzero((img[..., 0] == 255) & (img[..., 1] == 0) & (img[..., 2] == 0))
    assert len(xs), "no box drawn"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def photo_span(lo: float, hi: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The photo's pixel columns (or rows) that the edge-coordinate span [lo, hi) covers whole, and
    those it touches: a drawn box's first pixel lies between them, and so does its last."""
    return (math.ceil(lo), math.floor(hi) - 1), (math.floor(lo), math.ceil(hi) - 1)


# --- unit_box: by hand ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,row,col,exact,clipped", [
    ("conv1", 0, 0, (-2, -2, 2, 2), (0, 0, 2, 2)),           # k5 s2 p2 at the corner: 2 rows of padding
    ("conv1", 3, 10, (4, 18, 8, 22), (4, 18, 8, 22)),        # 3·2−2 = 4 .. 8;  10·2−2 = 18 .. 22
    ("relu2", 13, 12, (22, 20, 30, 28), (22, 20, 27, 27)),   # conv2 rows 12..14 → conv1 22..30, cols 11..13 → 20..28
    ("pool2", 1, 3, POOL2_1_3, POOL2_1_3),
    ("conv3", 2, 4, (0, 8, 20, 28), (0, 8, 20, 27)),         # pool2 1..3 × 3..5 → conv2 2..8 × 6..12 → 1..9 × 5..13
])
def test_unit_box_is_the_box_walked_back_by_hand(layer, row, col, exact, clipped):
    f = unit_box(untrained(MINI).model, layer, row, col)
    assert (f.exact.top, f.exact.left, f.exact.bottom, f.exact.right) == exact
    assert (f.clipped.top, f.clipped.left, f.clipped.bottom, f.clipped.right) == clipped


# --- input_box: where the network's pixels come from ----------------------------------------------------
def _source_of_input_columns(loaded: Loaded, w: int, h: int, axis: int) -> tuple[float, float]:
    """The photo span (edge coordinates) that the network's input covers along one axis, found from
    the input itself: the photo is a ramp (pixel value ∝ its column, or row), so each input pixel's
    value says where in the photo it came from; a line through the interior pixels gives the span."""
    side = (w, h)[axis]
    ramp = np.linspace(0, 255, side)                              # pixel i holds i · 255/(side − 1)
    a = np.broadcast_to(ramp[None, :] if axis == 0 else ramp[:, None], (h, w))
    im = Image.fromarray(np.round(a).astype(np.uint8), "L")
    x = preprocess(loaded, im, invert=False)[0, 0]                # first channel, normalized
    v = (x * loaded.std[0] + loaded.mean[0]).numpy() * (side - 1)  # back to photo pixel indices
    line = v.mean(axis) if axis == 1 else v.mean(0)               # one value per input column (or row)
    n = len(line)
    j = np.arange(n)[3:-3]                                        # the edges are clamped: leave them out
    slope, at0 = np.polyfit(j, line[3:-3], 1)                     # index of pixel j's centre = at0 + slope·j
    lo = at0 + 0.5 - slope / 2                                    # index i's centre is at edge coordinate i + 0.5
    return lo, lo + n * slope


@pytest.mark.parametrize("size", [(300, 200), (200, 300)])
@pytest.mark.parametrize("kind", ["fashion", "imagenet"])
def test_input_box_is_the_part_of_the_photo_the_network_receives(size, kind):
    loaded = untrained(MINI) if kind == "fashion" else imagenet_loaded()
    w, h = size
    x0, y0, x1, y1 = input_box(loaded, size)
    for axis, (lo, hi) in enumerate(((x0, x1), (y0, y1))):
        found = _source_of_input_columns(loaded, w, h, axis)
        assert found == pytest.approx((lo, hi), abs=0.3), (axis, found, (lo, hi))
    if kind == "imagenet":  # the centre square, 224/256 of the short side: 175 px
        short = min(size)
        assert (x1 - x0, y1 - y0) == (short * 224 / 256,) * 2


# --- field_overlay: the box and the heat on the photo ---------------------------------------------------
@pytest.mark.parametrize("w,h", [(280, 196), (196, 280)])
def test_field_overlay_draws_the_units_box_on_a_non_square_photo(w, h):
    """A 280×196 photo squashed into 28×28: each input pixel is 10 photo pixels wide and 7 tall."""
    sx, sy = w // 28, h // 28
    t, l, b, r = POOL2_1_3
    out = plots.field_overlay(grey(w, h), np.zeros((28, 28)), POOL2_1_3, (0, 0, w, h), 28)
    assert out.shape == (h, w, 3)
    assert red_bbox(out) == (l * sx, t * sy, (r + 1) * sx - 1, (b + 1) * sy - 1)
    # an outline, not a filled block: the inside stays the photo
    assert (out[(t + b + 1) * sy // 2, (l + r + 1) * sx // 2] == 128).all()


def test_field_overlay_on_what_the_network_receives_is_the_box_itself():
    seen = np.full((28, 28), 90, np.uint8)
    out = plots.field_overlay(seen, np.zeros((28, 28)), POOL2_1_3, (0, 0, 28, 28), 28)
    t, l, b, r = POOL2_1_3
    assert red_bbox(out) == (l, t, r, b)


@pytest.mark.parametrize("w,h", [(300, 200), (200, 300), (301, 97)])
def test_field_overlay_box_on_a_photo_of_any_size(w, h):
    t, l, b, r = POOL2_1_3
    sx, sy = w / 28, h / 28
    x0, y0, x1, y1 = red_bbox(plots.field_overlay(grey(w, h), np.zeros((28, 28)), POOL2_1_3, (0, 0, w, h), 28))
    (xin, xout), (yin, yout) = photo_span(l * sx, (r + 1) * sx), photo_span(t * sy, (b + 1) * sy)
    assert xout[0] <= x0 <= xin[0] and xin[1] <= x1 <= xout[1], (x0, x1, xin, xout)
    assert yout[0] <= y0 <= yin[0] and yin[1] <= y1 <= yout[1], (y0, y1, yin, yout)


@pytest.mark.parametrize("size", [(300, 200), (200, 300)])
def test_field_overlay_box_inside_the_imagenet_centre_crop(size):
    """torchvision's conv1 (k11 s4 p2) unit (10, 20): input rows 38..48, columns 78..88, of the
    centre 175×175 of the photo (input_box, tested above)."""
    w, h = size
    loaded = imagenet_loaded()
    box = unit_box(untrained(loaded.cfg).model, "conv1", 10, 20).clipped
    assert (box.top, box.left, box.bottom, box.right) == (38, 78, 48, 88)
    cover = input_box(loaded, size)
    cx, cy, s = cover[0], cover[1], (cover[2] - cover[0]) / 224
    x0, y0, x1, y1 = red_bbox(plots.field_overlay(grey(w, h), np.zeros((224, 224)), (38, 78, 48, 88), cover, 224))
    (xin, xout), (yin, yout) = photo_span(cx + 78 * s, cx + 89 * s), photo_span(cy + 38 * s, cy + 49 * s)
    assert xout[0] <= x0 <= xin[0] and xin[1] <= x1 <= xout[1], (x0, x1, xin, xout)
    assert yout[0] <= y0 <= yin[0] and yin[1] <= y1 <= yout[1], (y0, y1, yin, yout)


def _heat_centre(out: np.ndarray, base: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    """(x, y) centroid of how much the overlay changed each photo pixel, the red box left out."""
    change = np.abs(out.astype(float) - base).sum(-1)
    x0, y0, x1, y1 = box
    change[y0:y1 + 1, x0:x1 + 1][[0, -1]] = 0   # the box's outline rows and columns are not heat
    change[y0:y1 + 1, [x0, x1]] = 0
    ys, xs = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    return float((change * xs).sum() / change.sum()), float((change * ys).sum() / change.sum())


@pytest.mark.parametrize("w,h", [(280, 196), (196, 280)])
@pytest.mark.parametrize("i,j", [(5, 17), (1, 2), (26, 25)])
def test_field_overlay_puts_the_heat_on_the_pixel_it_belongs_to(w, h, i, j):
    """|∂unit/∂input| non-zero at one input pixel (row i, column j): the heat on the photo is
    centred on that pixel's block, 10 (or 7) photo pixels per input pixel."""
    sx, sy = w // 28, h // 28
    erf = np.zeros((28, 28))
    erf[i, j] = 1.0
    base = grey(w, h)
    out = plots.field_overlay(base, erf, POOL2_1_3, (0, 0, w, h), 28)
    cx, cy = _heat_centre(out, base, red_bbox(out))
    # the block of input pixel (i, j) spans photo columns j·sx .. (j + 1)·sx − 1: its centre
    assert (cx, cy) == pytest.approx(((j + 0.5) * sx - 0.5, (i + 0.5) * sy - 0.5), abs=0.05)


@pytest.mark.parametrize("size", [(300, 200), (200, 300)])
def test_field_overlay_heat_inside_the_centre_crop(size):
    """The crop starts mid-pixel (62.5, 12.5): the heat is laid on whole photo pixels, so within one."""
    erf = np.zeros((224, 224))
    erf[40, 150] = 1.0
    base = grey(*size)
    cover = input_box(imagenet_loaded(), size)   # (62.5, 12.5, 237.5, 187.5) on 300×200
    s = 175 / 224
    out = plots.field_overlay(base, erf, (38, 78, 48, 88), cover, 224)
    cx, cy = _heat_centre(out, base, red_bbox(out))
    assert (cx, cy) == pytest.approx((cover[0] + 150.5 * s - 0.5, cover[1] + 40.5 * s - 0.5), abs=1.0)


@pytest.mark.parametrize("size", [(1, 1), (5000, 1), (1, 5000)])
def test_field_overlay_draws_a_box_on_a_one_pixel_photo(size):
    w, h = size
    out = plots.field_overlay(grey(w, h), np.ones((28, 28)), (0, 0, 27, 27), (0, 0, w, h), 28)
    assert out.shape == (h, w, 3) and red_bbox(out) == (0, 0, w - 1, h - 1)


# --- attribution_panels: each map over the photo, where the network saw it -----------------------------
def _extent(trace, n: int, axis: str, default_x0: float = 0.0) -> tuple[float, float]:
    """(first edge, last edge) of an Image's pixels or a Heatmap's cells along 'x' or 'y' (Plotly
    puts pixel i's centre at x0 + i·dx)."""
    x0 = getattr(trace, f"{axis}0")
    dx = getattr(trace, f"d{axis}")
    x0 = default_x0 if x0 is None else x0
    dx = 1.0 if dx is None else dx
    return x0 - dx / 2, x0 + (n - 0.5) * dx


@pytest.mark.parametrize("size,kind", [((300, 200), "fashion"), ((200, 300), "fashion"),
                                       ((300, 200), "imagenet"), ((200, 300), "imagenet")])
def test_attribution_maps_lie_on_the_part_of_the_photo_the_network_saw(size, kind):
    w, h = size
    cover = (0.0, 0.0, float(w), float(h)) if kind == "fashion" else input_box(imagenet_loaded(), size)
    n = 7
    a = np.zeros((n, n))
    a[1, 5] = 1.0   # top right: a transposed map would put it bottom left
    b = -a
    fig = plots.attribution_panels(grey(w, h), {"Saliency": a, "Occlusion": b}, cover, "Coat")
    images = [t for t in fig.data if t.type == "image"]
    heats = [t for t in fig.data if t.type == "heatmap"]
    assert len(images) == len(heats) == 2
    for img, heat, m in zip(images, heats, (a, b)):
        assert (img.xaxis, img.yaxis) == (heat.xaxis, heat.yaxis)     # on the same panel
        assert np.asarray(img.z).shape == (h, w, 3)
        np.testing.assert_array_equal(np.asarray(heat.z), m)
        # the photo's edges in the panel's coordinates, and the cover's edges on them
        ix0, ix1 = _extent(img, w, "x")
        iy0, iy1 = _extent(img, h, "y")
        assert _extent(heat, n, "x") == pytest.approx((ix0 + cover[0], ix0 + cover[2]))
        assert _extent(heat, n, "y") == pytest.approx((iy0 + cover[1], iy0 + cover[3]))
    assert fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]   # row 0 on top, as in the photo
    # side by side: the second photo starts right of the first one's last pixel
    assert _extent(images[1], w, "x")[0] > _extent(images[0], w, "x")[1]


# --- channel_heatmap: the unit clicked is the unit framed ----------------------------------------------
def test_channel_heatmap_frames_the_selected_unit_of_a_non_square_map():
    H, W = 3, 5
    a = np.arange(H * W, dtype=float).reshape(H, W) / 10   # every cell its own value
    fig = plots.channel_heatmap(a, (2, 4), "t")
    heat, marks = fig.data[0], fig.data[1]
    np.testing.assert_array_equal(np.asarray(heat.z), a)
    # Plotly draws cell (r, c) of a heat map without x/y centred at x = c, y = r
    (rect,) = fig.layout.shapes
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (3.5, 4.5, 1.5, 2.5)
    # a click reports a marker's x (column) and y (row): each marker sits on the cell whose value it carries
    xs, ys, vals = np.asarray(marks.x), np.asarray(marks.y), np.asarray(marks.customdata)
    assert len(xs) == H * W and sorted(zip(ys, xs)) == [(r, c) for r in range(H) for c in range(W)]
    np.testing.assert_array_equal(vals, a[ys.astype(int), xs.astype(int)])
    assert "row %{y}, column %{x}" in marks.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"    # row 0 at the top
    assert plots.channel_heatmap(a, None, "t").layout.shapes == ()


# --- kernel_products: each term's patch, kernel and products, in that order ----------------------------
def test_kernel_products_show_each_terms_numbers_in_place():
    rng = np.random.default_rng(0)
    terms = []
    for label in ("ch 3", "ch 0"):
        patch, kernel = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
        patch[0, 2] = 9.0   # top right, so a transposed heat map shows
        terms.append((label, patch, kernel, patch * kernel))
    fig = plots.kernel_products(terms)
    titles = fig.layout.annotations
    assert [a.text for a in titles] == [f"{lab}: {n}" for lab, *_ in terms
                                        for n in ("input patch", "kernel", "patch × kernel")]
    (heat,) = fig.data                                    # one heat map holds every panel
    colour, value, text = np.asarray(heat.z, float), np.asarray(heat.customdata, float), np.asarray(heat.text)
    assert (heat.zmin, heat.zmax) == (-1, 1)
    panels = [z for _, *zs in terms for z in zs]
    for title, z in zip(titles, panels):
        # each panel hangs under its title: centred on its columns, its top row just below it
        top, left = int(title.y + 0.5), int(round(title.x - 1))
        block = (slice(top, top + 3), slice(left, left + 3))
        np.testing.assert_array_equal(value[block], z)
        np.testing.assert_array_equal(colour[block], z / np.abs(z).max())   # 0 is white: the sign is the colour
        assert text[block].tolist() == [[f"{v:.2f}" for v in row] for row in np.round(z, 2)]
    assert np.isnan(colour).sum() == colour.size - 6 * 9  # blank cells between the panels, and no others
    assert fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]   # row 0 on top


# --- the boxes drawn on small images (top images) and boxes moved onto a shown copy ----------------------
def test_draw_box_frames_exactly_the_boxs_pixels_of_a_non_square_image():
    from alexnet_viz.inspect.display import draw_box
    a = np.arange(60, dtype=np.uint8).reshape(6, 10) + 100          # 6 rows, 10 columns, no pure red
    out = draw_box(a, (1, 2, 3, 7), side=60)                        # rows 1..3, columns 2..7; ×6 sharp pixels
    assert out.shape == (36, 60, 3)
    assert red_bbox(out) == (2 * 6, 1 * 6, 8 * 6 - 1, 4 * 6 - 1)
    big = np.repeat(np.repeat(a, 6, 0), 6, 1)
    outside = np.ones((36, 60), bool)
    outside[6:24, 12:48] = False
    assert (out[outside] == big[outside][:, None]).all()          # nothing outside the box is covered
    assert (out[12:18, 18:42] == big[12:18, 18:42, None]).all()    # nor its inside: an outline


def test_a_top_images_window_keeps_its_box_on_the_units_pixels():
    """A 100×100 input (over 64: a window of the field's size on each side): the field at rows 0..9,
    columns 95..99 gets the window rows 0..19, columns 85..99, and the box lies on its own pixels."""
    from alexnet_viz.inspect.receptive import Box
    from alexnet_viz.inspect.top import TopImage, framed
    seen = (np.add.outer(np.arange(100), np.arange(100)) % 200).astype(np.uint8)   # every pixel told by its value
    t = TopImage(0, 0, 1.0, 0, 0, seen, Box(0, 95, 9, 99))
    out = framed(t, side=128)
    k = 128 // 20                                                   # the window is 20 rows × 15 columns
    assert out.shape == (20 * k, 15 * k, 3)
    assert red_bbox(out) == (10 * k, 0, 15 * k - 1, 10 * k - 1)
    np.testing.assert_array_equal(out[-1, ::k, 0], seen[19, 85:100])  # the window's last row, from the input


def test_scale_box_moves_a_box_onto_a_copy_resized_unevenly():
    from alexnet_viz.inspect.display import scale_box
    # the ImageNet crop of a 300×200 photo, on a copy shown at 320×213 (213/200 ≠ 320/300)
    got = scale_box((62.5, 12.5, 237.5, 187.5), (300, 200), (320, 213))
    assert got == pytest.approx((62.5 * 320 / 300, 12.5 * 213 / 200, 237.5 * 320 / 300, 187.5 * 213 / 200))
    assert scale_box((0, 0, 200, 300), (200, 300), (120, 180)) == pytest.approx((0, 0, 120, 180))
