"""Images and looking inside: an awkward-file corpus made here, feature maps, Grad-CAM, pretrained loading."""
import functools
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from alexnet_viz.inspect.analysis import (ModelUnavailable, analyze, conv1_filters, feature_maps, grad_cam, layer_stats,
                                     mosaic, pretrained, pretrained_path, untrained)
from alexnet_viz.config import get_preset
from alexnet_viz.data import CLASSES
from alexnet_viz.inspect.images import ImageError, open_image, to_tensor
from alexnet_viz.architect.summary import summarize

from tests.conftest import ROOT


def save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def rgb(w=64, h=48) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    a[: h // 2, :, 2] = 200
    return Image.fromarray(a)


def noise() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8))


def exif_rotated() -> bytes:
    im = rgb(64, 32)
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90° CW to display
    return save(im, "JPEG", exif=ex)


def animated_gif() -> bytes:
    frames = [Image.new("P", (20, 20), i * 40) for i in range(3)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def bomb_png() -> bytes:
    """A tiny file that claims 30,000×30,000 pixels."""
    return save(Image.new("1", (30000, 30000)), "PNG")


GOOD = {
    "cmyk.jpg": lambda: save(rgb().convert("CMYK"), "JPEG"),
    "16bit.png": lambda: save(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), "PNG"),
    "rgba.png": lambda: save(rgb().convert("RGBA"), "PNG"),
    "la.png": lambda: save(rgb().convert("LA"), "PNG"),
    "palette.gif": lambda: save(rgb().convert("P"), "GIF"),
    "animated.gif": animated_gif,
    "exif.jpg": exif_rotated,
    "photo.webp": lambda: save(rgb(), "WEBP"),
    "photo.bmp": lambda: save(rgb(), "BMP"),
    "tall.png": lambda: save(Image.new("L", (1, 20000), 128), "PNG"),
    "wide.png": lambda: save(Image.new("L", (20000, 1), 128), "PNG"),
}
BAD = {
    "truncated.png": lambda: save(noise(), "PNG")[:3000],
    "truncated.jpg": lambda: save(noise(), "JPEG")[:3000],
    "empty.png": lambda: b"",
    "text.png": lambda: b"hello, I am not an image\n" * 10,
    "bomb.png": bomb_png,
    "tiff": lambda: save(rgb(), "TIFF"),
}


@pytest.mark.parametrize("name", GOOD)
@pytest.mark.parametrize("channels", [1, 3])
def test_awkward_but_valid_images_give_a_tensor(name, channels):
    im = open_image(GOOD[name]())
    assert im.mode in ("L", "RGB")
    x = to_tensor(im, channels, 28, (0.5,) * channels, (0.5,) * channels)
    assert x.shape == (1, channels, 28, 28) and torch.isfinite(x).all()


# what each refusal must say: the reason, in the student's words (not a length: an empty reason is short too)
WHY = {"truncated.png": "cut short (truncated)", "truncated.jpg": "cut short (truncated)",
       "empty.png": "the file is empty (0 bytes)", "text.png": "not an image we can read",
       "bomb.png": "decompression bomb", "tiff": "this is a TIFF file"}


@pytest.mark.parametrize("name", BAD)
def test_unusable_files_raise_image_error(name):
    with pytest.raises(ImageError) as e:
        open_image(BAD[name]())
    msg = str(e.value)
    assert WHY[name] in msg and "\n" not in msg
    if name in ("text.png", "tiff"):  # a file of the wrong kind says which kinds we read
        assert "upload a PNG, JPEG, WebP, GIF or BMP file" in msg


def test_exif_rotation_is_applied():
    assert open_image(exif_rotated()).size == (32, 64)


def test_16bit_is_rescaled_not_clipped():
    a = np.array([[0, 1000, 30000, 65535]], np.uint16)
    out = np.asarray(open_image(save(Image.fromarray(a), "PNG")))
    assert out.tolist() == [[0, 4, 117, 255]]


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert np.asarray(open_image(save(im, "PNG"))).min() == 255


def test_animated_gif_uses_the_first_frame():
    assert np.asarray(open_image(animated_gif()).convert("L")).mean() < 10


def phone_photo(w=8000, h=6000, **kw) -> bytes:
    """A 48 MP JPEG as a phone shoots it, made here: red on the left half, blue on the right (flat
    colour, so the file is small and quick to build)."""
    im = Image.new("RGB", (w, h), (220, 20, 20))
    im.paste((20, 20, 220), (w // 2, 0, w, h))
    return save(im, "JPEG", **kw)


def test_a_48_megapixel_phone_photo_is_decoded_at_reduced_scale():
    from alexnet_viz.inspect.images import DECODE_SIDE
    data = phone_photo()
    assert len(data) < 2 * 2**20  # it compresses small: an upload well under the limit
    im = open_image(data)
    assert im.mode == "RGB" and im.size == (1000, 750)  # the decoder's 1/8 scale: long side ≥ DECODE_SIDE
    assert DECODE_SIDE <= max(im.size) < 2 * DECODE_SIDE
    a = np.asarray(im, dtype=int)
    assert np.abs(a[375, 250] - (220, 20, 20)).max() < 12 and np.abs(a[375, 750] - (20, 20, 220)).max() < 12
    again = open_image(data)  # the page's next run: the same pixels (kept), in an image of its own
    assert again is not im and np.array_equal(np.asarray(again), np.asarray(im))
    x = to_tensor(im, 3, 224, (0.5,) * 3, (0.5,) * 3)
    assert x.shape == (1, 3, 224, 224) and x[0, 0, 112, 20] > x[0, 2, 112, 20]  # still red on the left


def test_a_phone_photos_orientation_survives_the_reduced_decode():
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90° clockwise to display: the phone was held upright
    im = open_image(phone_photo(exif=ex))
    assert im.size == (750, 1000)
    assert np.asarray(im, dtype=int)[250, 375, 0] > 150  # the left (red) half is now on top


def test_other_formats_keep_the_pixel_limit():
    png = save(Image.new("L", (8000, 6000), 128), "PNG")
    assert len(png) < 2**20
    with pytest.raises(ImageError, match=r"8000×6000 = 48 megapixels; the limit is 40 — scale it down"):
        open_image(png)
    with pytest.raises(ImageError, match=r"48 megapixels; the limit is 40 for a progressive JPEG, which is decoded whole"):
        open_image(phone_photo(progressive=True))  # its decoder keeps the whole image's coefficients


def test_a_big_image_of_another_format_is_reduced_after_decoding():
    im = open_image(save(Image.new("RGB", (6000, 4000), (10, 200, 10)), "PNG"))  # 24 MP: under the limit
    assert im.size == (546, 364) and im.getpixel((300, 200)) == (10, 200, 10)  # reduced by 6000 // 512 = 11


def test_a_jpeg_over_200_megapixels_is_refused_by_its_header():
    data = bytearray(save(rgb(), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2  # claims 30000×30000 = 900 MP
    with pytest.raises(ImageError, match=r"30000×30000 = 900 megapixels; the limit is 210"):
        open_image(bytes(data))


@pytest.mark.parametrize("name", ["d2l", "mini28", "alexnet2012"])
def test_feature_maps_match_the_summary_and_restore_mode(name):
    cfg = get_preset(name)
    m = untrained(cfg)
    m.model.train()
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    maps, logits = feature_maps(m.model, x)
    assert m.model.training
    assert [tuple(t.shape) for t in maps.values()] == [r.output_shape for r in summarize(cfg).rows]
    assert list(maps) == [r.name for r in summarize(cfg).rows] and logits.shape == (cfg.num_classes,)
    stats = layer_stats(maps)
    relu = next(s for s in stats if s["layer"] == "relu1")
    assert relu["zeros"] > 0 and relu["max"] >= relu["mean"]


def test_mosaic_orders_strongest_first():
    t = torch.zeros(3, 4, 4)
    t[2] += 5
    t[0] += 1
    grid, order = mosaic(t)
    assert order == [2, 0, 1] and grid.shape == (9, 9)


def test_conv1_filters_as_images():
    assert conv1_filters(untrained(get_preset("d2l")).model).shape == (96, 11, 11)
    assert conv1_filters(untrained(get_preset("torchvision")).model).shape == (64, 11, 11, 3)


@functools.cache
def trained_tiny_run():
    """mini28 trained briefly on the bundled sample: enough to make Grad-CAM meaningful. Made once per test
    process (in the first asker's tmp folder, which outlives it) and only read by the tests that use it."""
    from alexnet_viz.config import TrainConfig
    from alexnet_viz.data import load_fashion_mnist
    from alexnet_viz.runs.store import Run
    from alexnet_viz.training.engine import train
    cfg, t = get_preset("mini28"), TrainConfig(epochs=1, max_batches=40, lr=0.05, optimizer="momentum", device="cpu")
    ds = load_fashion_mnist()
    run = Run.create(cfg, t, ds.source)
    list(train(cfg, t, ds, run=run))
    return run, ds


@pytest.mark.parametrize("channels", [1, 3])
def test_grad_cam_is_input_sized_and_not_constant(channels):
    run, ds = trained_tiny_run()
    from alexnet_viz.inspect.analysis import from_run
    m = from_run(run.path)
    assert m.model.training is False
    model = m.model
    if channels == 3:  # a 3-channel model: the torchvision preset, untrained, still has gradients
        model = untrained(get_preset("torchvision")).model
        x = torch.randn(1, 3, 224, 224)
    else:
        x = ((ds.test_x[:1].float() / 255 - 0.2861) / 0.3528)[:, None]
    model.train()
    cam, cls = grad_cam(model, x, "conv2")
    assert model.training
    assert cam.shape == x.shape[-2:] and cam.max() == pytest.approx(1.0) and cam.std() > 0.01
    assert 0 <= cls < (10 if channels == 1 else 1000)


def test_analyze_end_to_end_on_a_saved_run():
    from alexnet_viz.inspect.analysis import from_run
    run, _ = trained_tiny_run()
    from torchvision.transforms import functional as TF
    im = open_image(save(rgb(), "PNG"))
    a = analyze(from_run(run.path), im, invert=False, k=3)
    assert a.cam.shape == (28, 28) and a.x.shape == (1, 1, 28, 28)
    # independently: torchvision's resize of the grey image, normalized, through the saved weights
    grey = TF.resize(TF.to_tensor(im.convert("L")), [28, 28], antialias=True)
    torch.testing.assert_close(a.x, TF.normalize(grey, [0.2861], [0.3528])[None], atol=1e-5, rtol=0)
    with torch.no_grad():
        p = run.load_model()(a.x).softmax(1)[0]
    v, i = p.topk(3)
    assert [c for c, _ in a.top] == [CLASSES[j] for j in i.tolist()]
    assert [q for _, q in a.top] == pytest.approx(v.tolist(), abs=1e-6)


def test_pretrained_offline_says_so():
    with pytest.raises(ModelUnavailable, match="offline"):
        pretrained()


def test_pretrained_loads_a_cached_weights_file_safely():
    """torchvision's weights file layout, written here, is found in the torch cache and loads."""
    ref = torchvision.models.alexnet().eval()
    path = pretrained_path()
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    m = pretrained()
    assert len(m.classes) == 1000 and m.classes[0] == "tench"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m.model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_pretrained_damaged_file_is_unavailable():
    path = pretrained_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"junk")
    with pytest.raises(ModelUnavailable, match="not a usable weights file"):
        pretrained()


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "alexnet_viz", "predict", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_predict(tmp_path):
    img = tmp_path / "shirt.png"
    img.write_bytes(save(rgb(), "PNG"))
    out = _cli(str(img), "--untrained", "--preset", "mini28", "--topk", "3", "--json")
    assert out.returncode == 0, out.stderr
    preds = json.loads(out.stdout)["predictions"]
    assert len(preds) == 3 and preds[0]["prob"] >= preds[1]["prob"] >= preds[2]["prob"]
    assert {p["class"] for p in preds} <= set(CLASSES)


def test_cli_predict_bad_image_one_line_error(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = _cli(str(bad), "--untrained", "--preset", "mini28")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_upload_limits_agree_and_are_enforced():
    import tomllib

    from alexnet_viz.inspect.images import MAX_BYTES
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] * 2**20 == MAX_BYTES  # Streamlit refuses larger files first
    assert cfg["client"]["showErrorDetails"] == "none"          # and never shows a trace
    with pytest.raises(ImageError, match="limit is 50 MB"):
        open_image(b"\x89PNG" + b"\0" * MAX_BYTES)


def test_shared_model_serves_concurrent_sessions():
    """The app caches one model for every session: hooked passes must not see each other's images."""
    from concurrent.futures import ThreadPoolExecutor
    m = untrained(get_preset("mini28"))
    xs = [torch.randn(1, 1, 28, 28) for _ in range(8)]
    want = [feature_maps(m.model, x)[0]["conv4"] for x in xs]

    def look(i):
        maps, _ = feature_maps(m.model, xs[i % 8])
        cam, _ = grad_cam(m.model, xs[i % 8], "conv2")
        return i % 8, maps["conv4"]
    with ThreadPoolExecutor(4) as pool:
        for i, got in pool.map(look, range(64)):
            torch.testing.assert_close(got, want[i])


def test_predict_equals_the_full_analysis():
    from alexnet_viz.inspect.analysis import predict
    m = untrained(get_preset("mini28"))
    im = open_image(save(rgb(), "PNG"))
    top = predict(m, im, k=3)
    assert [c for c, _ in top] == [c for c, _ in analyze(m, im, k=3).top]
    assert [p for _, p in top] == pytest.approx([p for _, p in analyze(m, im, k=3).top])


def test_imagenet_model_uses_its_weights_own_transforms():
    """Resize the short side to 256, centre-crop 224 (not a squash), ImageNet normalization."""
    from torchvision.transforms import functional as TF

    from alexnet_viz.inspect.analysis import input_box, preprocess
    path = pretrained_path()
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    m = pretrained()
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    x = preprocess(m, im)
    want = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(im, 256), 224)), m.mean, m.std)
    assert x.shape == (1, 3, 224, 224)
    assert torch.corrcoef(torch.stack([x.flatten(), want.flatten()]))[0, 1] > 0.99
    assert input_box(m, im.size) == (62.5, 12.5, 237.5, 187.5)  # the centre 175×175 of the original


def test_a_clothing_model_says_what_it_knows_and_whether_it_was_right():
    from alexnet_viz.inspect.analysis import knows_only, verdict
    m = untrained(get_preset("mini28"))
    a = analyze(m, open_image(save(rgb(), "PNG")))
    assert "only the 10 Fashion-MNIST clothing classes" in knows_only(m)
    p = a.logits.softmax(0)
    best, worst = CLASSES[int(p.argmax())], CLASSES[int(p.argmin())]
    assert verdict(a, m.classes, best) == (True, f"Right: the first guess is the true label, {best} ({float(p.max()):.0%}).")
    ok, text = verdict(a, m.classes, worst)
    assert not ok and text == (f"Wrong: the first guess is {best}; the true label, {worst}, comes 10th "
                               f"({float(p.min()):.1%}).")
    # a middle rank, counted here: the classes more probable than the truth, plus one
    third = CLASSES[int(p.argsort(descending=True)[2])]
    assert verdict(a, m.classes, third)[1].startswith(f"Wrong: the first guess is {best}; the true label, {third}, "
                                                      f"comes 3rd (")
