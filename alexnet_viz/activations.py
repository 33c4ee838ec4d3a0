"""Looking inside: models to look at, every layer's output, predictions, filters and Grad-CAM."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ArchConfig, get_preset
from .cost import estimate_analysis, require_fits
from .data import CLASSES, MEAN, STD
from .model import build_model
from .runs import Run
from .summary import leaf_layers

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The app shares one model object between browser sessions (st.cache_resource); forward hooks on a
# shared model would catch other sessions' passes, so hooked passes take turns (~60 ms each).
_HOOKED = threading.Lock()


class ModelUnavailable(RuntimeError):
    """A model that cannot be had right now (no weights offline, a damaged run); says why."""


@dataclass(frozen=True, eq=False)
class Loaded:
    """A model ready for inference, with what it takes to feed it and read its output."""
    model: nn.Module
    cfg: ArchConfig
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    invert: bool          # photos are inverted for Fashion-MNIST models (light item on black)
    label: str


def _class_names(cfg: ArchConfig) -> tuple[str, ...]:
    return CLASSES if cfg.num_classes == 10 else tuple(f"class {i}" for i in range(cfg.num_classes))


def _fashion(model: nn.Module, cfg: ArchConfig, label: str) -> Loaded:
    c = cfg.in_channels
    return Loaded(model.eval(), cfg, _class_names(cfg), (MEAN,) * c, (STD,) * c, True, label)


def untrained(cfg: ArchConfig, seed: int = 0) -> Loaded:
    require_fits(estimate_analysis(cfg))  # refused before its weights exist (raises OverBudget)
    torch.manual_seed(seed)
    return _fashion(build_model(cfg), cfg, f"untrained {cfg.name} (seed {seed})")


def from_run(path: str | Path) -> Loaded:
    from .runs import RunError
    try:
        run = Run(Path(path))
        model = run.load_model()
        cfg = run.config()[0]
    except RunError as e:
        raise ModelUnavailable(str(e)) from None
    return _fashion(model, cfg, f"run {Path(path).name}")


def pretrained_path() -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights (TORCH_HOME aware)."""
    from torchvision.models import AlexNet_Weights
    url = AlexNet_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def pretrained() -> Loaded:
    """torchvision's ImageNet AlexNet, downloaded once into the torch cache, loaded safely."""
    from torchvision.models import AlexNet_Weights
    w = AlexNet_Weights.IMAGENET1K_V1
    path = pretrained_path()
    if not path.exists():
        if os.environ.get("ALEXNET_VIZ_OFFLINE") == "1":
            raise ModelUnavailable("the ImageNet weights are not in the cache and offline mode is on")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(w.url, str(path), hash_prefix=None, progress=False)
        except Exception as e:  # noqa: BLE001 - any network failure
            raise ModelUnavailable(f"the ImageNet weights cannot be fetched ({type(e).__name__}); "
                                   f"offline? put {path.name} in {path.parent} to use them") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelUnavailable(f"{path} is not a usable weights file ({type(e).__name__})") from None
    cfg = get_preset("torchvision")
    model = build_model(cfg)
    ours = model.state_dict()
    if len(sd) != len(ours) or any(a.shape != b.shape for a, b in zip(sd.values(), ours.values())):
        raise ModelUnavailable(f"{path} does not hold torchvision's AlexNet weights")
    # torchvision names layers features.0, classifier.1 ...; ours conv1, fc1: same order, same shapes.
    model.load_state_dict(OrderedDict(zip(ours.keys(), sd.values())))
    return Loaded(model.eval(), cfg, tuple(w.meta["categories"]), IMAGENET_MEAN, IMAGENET_STD, False,
                  "torchvision AlexNet, ImageNet-trained")


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> tuple["OrderedDict[str, torch.Tensor]", torch.Tensor]:
    """Every layer's output for x (1 image) in one pass, and the logits; the model's mode is restored."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    with _HOOKED:
        was = model.training
        model.eval()
        hooks = [m.register_forward_hook(lambda _m, _i, y, n=n: out.__setitem__(n, y[0].detach().clone()))
                 for n, m in leaf_layers(model)]
        try:
            logits = model(x)
        finally:
            for h in hooks:
                h.remove()
            model.train(was)
    return out, logits[0]


def topk(logits: torch.Tensor, classes: tuple[str, ...], k: int = 5) -> list[tuple[str, float]]:
    p = logits.float().softmax(0)
    v, i = p.topk(min(k, len(p)))
    return [(classes[j], float(q)) for q, j in zip(v.tolist(), i.tolist())]


def layer_stats(maps: "OrderedDict[str, torch.Tensor]") -> list[dict]:
    """Per layer: mean, max and fraction of exact zeros (dead units after ReLU)."""
    return [{"layer": n, "mean": float(t.mean()), "max": float(t.max()), "zeros": float((t == 0).float().mean())}
            for n, t in maps.items()]


def strongest_first(t: torch.Tensor) -> list[int]:
    """Channel indices of a C×H×W map by mean activation, strongest first."""
    return t.flatten(1).mean(1).argsort(descending=True).tolist()


def mosaic(t: torch.Tensor, max_channels: int = 64, cols: int | None = None) -> tuple[np.ndarray, list[int]]:
    """C×H×W -> one 2-D array of tiles (each channel scaled to 0..1), strongest channels first."""
    order = strongest_first(t)[:max_channels]
    n, (H, W) = len(order), t.shape[-2:]
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    pad = 1
    grid = np.full((rows * (H + pad) - pad, cols * (W + pad) - pad), np.nan, dtype=np.float32)
    for k, c in enumerate(order):
        a = t[c].float().numpy()
        lo, hi = a.min(), a.max()
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        r, q = divmod(k, cols)
        grid[r * (H + pad):r * (H + pad) + H, q * (W + pad):q * (W + pad) + W] = a
    return grid, order


def conv1_filters(model: nn.Module) -> np.ndarray:
    """The first conv's filters as images: N×k×k (grayscale) or N×k×k×3, each scaled to 0..1."""
    w = model.features.conv1.weight.detach().float().cpu()  # N×C×k×k
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    return w[:, 0].numpy() if w.shape[1] != 3 else w.permute(0, 2, 3, 1).numpy()


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, cls: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM (Selvaraju et al. 2017) at a conv layer: (H×W heat map in 0..1 at the input's size, class).

    Written out (15 lines) rather than pulling in captum: the method is a weighted sum of the
    layer's maps, the weights being the class score's mean gradient over each map.
    """
    m = dict(leaf_layers(model))[layer]
    saved = {}
    with _HOOKED:
        was = model.training
        model.eval()
        h = m.register_forward_hook(lambda _m, _i, y: saved.__setitem__("a", y))
        try:
            with torch.enable_grad():
                logits = model(x.detach().requires_grad_(True))
                cls = int(logits[0].argmax()) if cls is None else cls
                a = saved["a"]                                     # 1×C×h×w
                g, = torch.autograd.grad(logits[0, cls], a)
        finally:
            h.remove()
            model.train(was)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    hi = float(cam.max())
    return (cam / hi if hi > 0 else cam).numpy(), cls


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in leaf_layers(model) if isinstance(m, nn.Conv2d)]


@dataclass(frozen=True, eq=False)
class Analysis:
    x: torch.Tensor                               # 1×C×H×W, what the network receives
    maps: "OrderedDict[str, torch.Tensor]"        # every layer's output
    top: list[tuple[str, float]]                  # top-k (class name, probability)
    cam: np.ndarray                               # Grad-CAM heat map, H×W in 0..1
    cam_layer: str
    cam_class: int


def preprocess(loaded: Loaded, im, invert: bool | None = None) -> torch.Tensor:
    """PIL image -> the 1×C×H×W tensor this model takes; invert=None: only a light-background
    image for a Fashion-MNIST model."""
    from .images import light_background, to_tensor
    if invert is None:
        invert = loaded.invert and light_background(im)
    return to_tensor(im, loaded.cfg.in_channels, loaded.cfg.input_size, loaded.mean, loaded.std, invert)


@torch.no_grad()
def predict(loaded: Loaded, im, invert: bool | None = None, k: int = 5) -> list[tuple[str, float]]:
    """Top-k for one PIL image: a plain forward pass, no hooks, no gradients."""
    was = loaded.model.training
    loaded.model.eval()
    try:
        return topk(loaded.model(preprocess(loaded, im, invert))[0], loaded.classes, k)
    finally:
        loaded.model.train(was)


def analyze(loaded: Loaded, im, invert: bool | None = None, cam_layer: str | None = None,
            cam_class: int | None = None, k: int = 5) -> Analysis:
    """Upload-to-results: preprocess, all feature maps, top-k and Grad-CAM for one PIL image."""
    require_fits(estimate_analysis(loaded.cfg))  # raises OverBudget, a ConfigError the page shows
    x = preprocess(loaded, im, invert)
    maps, logits = feature_maps(loaded.model, x)
    layer = cam_layer or conv_layers(loaded.model)[-1]
    cam, cls = grad_cam(loaded.model, x, layer, cam_class)
    return Analysis(x, maps, topk(logits, loaded.classes, k), cam, layer, cls)
