"""Looking inside: models to look at, every layer's output, predictions, filters and Grad-CAM."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from alexnet_viz.config import ArchConfig, get_preset
from alexnet_viz.inspect.attribution import grad_cam  # noqa: F401 - captum's LayerGradCam, part of this module's API
from alexnet_viz.cost.budget import require_fits, server_budget
from alexnet_viz.cost.estimate import estimate_analysis
from alexnet_viz.inspect.walk import layer_outputs, private_copy
from alexnet_viz.data import CLASSES, MEAN, STD
from alexnet_viz.model import build_model
from alexnet_viz.inspect.images import light_background, to_tensor
from alexnet_viz.runs.snapshots import find, read_index
from alexnet_viz.runs.store import Run, RunError
from alexnet_viz.architect.summary import leaf_layers

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    transforms: object = None  # the weights' own preprocessing (PIL -> C×H×W), e.g. ImageNet's resize + crop


def _class_names(cfg: ArchConfig) -> tuple[str, ...]:
    return CLASSES if cfg.num_classes == 10 else tuple(f"class {i}" for i in range(cfg.num_classes))


def _fashion(model: nn.Module, cfg: ArchConfig, label: str) -> Loaded:
    c = cfg.in_channels
    return Loaded(model.eval(), cfg, _class_names(cfg), (MEAN,) * c, (STD,) * c, True, label)


def untrained(cfg: ArchConfig, seed: int = 0) -> Loaded:
    require_fits(estimate_analysis(cfg))  # refused before its weights exist (raises OverBudget)
    torch.manual_seed(seed)
    return _fashion(build_model(cfg), cfg, f"untrained {cfg.name} (seed {seed})")


def from_run(path: str | Path, at: float | str | None = None) -> Loaded:
    """A saved run's final weights, or its snapshot at epoch/label `at` (see Run.load_model)."""
    try:
        run = Run(Path(path))
        model = run.load_model(at)
        cfg = run.config()[0]
        when = "" if at is None else f" ({find(read_index(run.path), at).label})"
    except RunError as e:
        raise ModelUnavailable(str(e)) from None
    return _fashion(model, cfg, f"run {Path(path).name}{when}")


def pretrained_path() -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights (TORCH_HOME aware)."""
    from torchvision.models import AlexNet_Weights
    url = AlexNet_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


HOW_TO_ADD = ("To add them: on a computer with internet, run python -c \"import torchvision; "
              "torchvision.models.alexnet(weights='IMAGENET1K_V1')\" and copy the file it downloads, "
              "alexnet-owt-7be5be79.pth, into hub/checkpoints/ under this machine's torch cache "
              "($TORCH_HOME, by default ~/.cache/torch); then reload the page.")


def pretrained() -> Loaded:
    """torchvision's ImageNet AlexNet, downloaded once into the torch cache, loaded safely."""
    from torchvision.models import AlexNet_Weights
    w = AlexNet_Weights.IMAGENET1K_V1
    path = pretrained_path()
    if not path.exists():
        if os.environ.get("ALEXNET_VIZ_OFFLINE") == "1":
            raise ModelUnavailable(f"the ImageNet weights are not here and offline mode is on. {HOW_TO_ADD}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(w.url, str(path), hash_prefix=None, progress=False)
        except Exception as e:  # noqa: BLE001 - any network failure
            raise ModelUnavailable(f"the ImageNet weights are not here and cannot be fetched "
                                   f"({type(e).__name__}: offline?). {HOW_TO_ADD}") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelUnavailable(f"the ImageNet weights file {path.name} is not a usable weights file "
                               f"({type(e).__name__}). {HOW_TO_ADD}") from None
    cfg = get_preset("torchvision")
    model = build_model(cfg)
    ours = model.state_dict()
    if len(sd) != len(ours) or any(a.shape != b.shape for a, b in zip(sd.values(), ours.values())):
        raise ModelUnavailable(f"{path.name} does not hold torchvision's AlexNet weights. {HOW_TO_ADD}")
    # torchvision names layers features.0, classifier.1 ...; ours conv1, fc1: same order, same shapes.
    model.load_state_dict(OrderedDict(zip(ours.keys(), sd.values())))
    return Loaded(model.eval(), cfg, tuple(w.meta["categories"]), IMAGENET_MEAN, IMAGENET_STD, False,
                  "torchvision AlexNet, ImageNet-trained", w.transforms())


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> tuple["OrderedDict[str, torch.Tensor]", torch.Tensor]:
    """Every layer's output for x (1 image) in one pass, and the logits.

    No hooks and no mode switch on `model` (the app shares it between sessions): the layers are
    walked in order on a private eval-mode copy, so concurrent sessions never wait on each other."""
    outs = layer_outputs(model, x)
    maps = OrderedDict((n, y[0]) for n, y in outs.items())
    return maps, next(reversed(maps.values()))


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
    return filters_as_images(model.features.conv1.weight)


def filters_as_images(w: torch.Tensor) -> np.ndarray:
    """Conv weights N×C×k×k as images: N×k×k (C ≠ 3: the first channel) or N×k×k×3, each scaled to 0..1."""
    w = w.detach().float().cpu()
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    return w[:, 0].numpy() if w.shape[1] != 3 else w.permute(0, 2, 3, 1).numpy()


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

    @property
    def logits(self) -> torch.Tensor:
        return next(reversed(self.maps.values()))


def preprocess(loaded: Loaded, im, invert: bool | None = None) -> torch.Tensor:
    """PIL image -> the 1×C×H×W tensor this model takes; invert=None: only a light-background
    image for a Fashion-MNIST model."""
    if loaded.transforms is not None:  # the weights' own: resize 256, centre crop 224, normalize
        return loaded.transforms(im.convert("RGB"))[None]
    if invert is None:
        invert = loaded.invert and light_background(im)
    return to_tensor(im, loaded.cfg.in_channels, loaded.cfg.input_size, loaded.mean, loaded.std, invert)


@torch.no_grad()
def predict(loaded: Loaded, im, invert: bool | None = None, k: int = 5) -> list[tuple[str, float]]:
    """Top-k for one PIL image: a plain forward pass on a private eval copy, no gradients."""
    return topk(private_copy(loaded.model)(preprocess(loaded, im, invert))[0], loaded.classes, k)


def input_box(loaded: Loaded, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the original image (w×h pixels) that the network's input covers:
    all of it, squashed, for our models; the centre crop for the ImageNet weights' transforms."""
    w, h = size
    if loaded.transforms is None:
        return 0.0, 0.0, float(w), float(h)
    side = min(w, h) * loaded.transforms.crop_size[0] / loaded.transforms.resize_size[0]
    return (w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2


def knows_only(loaded: Loaded) -> str | None:
    """What a clothing model can answer, said before its answer; None for other models."""
    if loaded.classes != CLASSES:
        return None
    return (f"This model knows only the {len(CLASSES)} Fashion-MNIST clothing classes ("
            + ", ".join(CLASSES) + "): whatever the image shows, it answers with one of them.")


def verdict(a: "Analysis", classes: tuple[str, ...], truth: str) -> tuple[bool, str]:
    """(right?, sentence) for a test image whose true label is known."""
    p = a.logits.float().softmax(0)
    t = classes.index(truth)
    rank = int((p > p[t]).sum()) + 1
    if rank == 1:
        return True, f"Right: the first guess is the true label, {truth} ({float(p[t]):.0%})."
    return False, (f"Wrong: the first guess is {classes[int(p.argmax())]}; the true label, {truth}, "
                   f"comes {_ordinal(rank)} ({float(p[t]):.1%}).")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def analyze(loaded: Loaded, im, invert: bool | None = None, cam_layer: str | None = None,
            cam_class: int | None = None, k: int = 5, on_wait: Callable[[int | None], None] | None = None) -> Analysis:
    """Upload-to-results: preprocess, all feature maps, top-k and Grad-CAM for one PIL image.

    Its memory (all but the weights, which the model already holds) is reserved from the server's
    budget first: beside other work it may wait its turn (on_wait(ahead) meanwhile, on_wait(None)
    once it runs); OverBudget (a ConfigError the page shows) when it could never fit or runs out."""
    est = estimate_analysis(loaded.cfg)
    device = next(loaded.model.parameters()).device  # the model may be on a GPU
    need = est.peak_memory_bytes - est.breakdown["weights"]
    with server_budget(device).reserve(need, "this analysis", est.advice, on_wait):
        x = preprocess(loaded, im, invert).to(device)
        maps, logits = feature_maps(loaded.model, x)
        layer = cam_layer or conv_layers(loaded.model)[-1]
        cam, cls = grad_cam(loaded.model, x, layer, int(logits.argmax()) if cam_class is None else cam_class)
        maps = OrderedDict((n, t.cpu()) for n, t in maps.items())  # the page draws them with numpy
        return Analysis(x.cpu(), maps, topk(logits.cpu(), loaded.classes, k), cam, layer, cls)
