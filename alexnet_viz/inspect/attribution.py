"""Where the network looked, by captum's attribution methods (imported on first use: ~2 s).

Each method runs on a private copy of the model (walk.private_copy): captum registers hooks on
the layers it reads (and Guided Backprop on every ReLU), which must not touch a model that other
sessions are using at the same moment.
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
from torch import nn

from alexnet_viz.architect.summary import leaf_layers
from alexnet_viz.inspect.modelcache import PerObjectCache
from alexnet_viz.inspect.walk import private_copy

METHODS = {
    "Grad-CAM": "the layer's maps weighted by the class score's mean gradient (coarse: the layer's grid)",
    "Guided Grad-CAM": "Grad-CAM times guided backpropagation: where, and which edges",
    "Integrated Gradients": "gradients summed along a straight path from a black image to yours",
    "Occlusion": "how much the class score drops when a grey square hides each part",
    "Saliency": "|gradient| of the class score: which pixels would change it fastest",
}

_RESULTS = PerObjectCache(most=8)  # per model, its last 8 inputs


def _layer(net: nn.Module, name: str) -> nn.Module:
    return dict(leaf_layers(net))[name]


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, cls: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM (Selvaraju et al. 2017) at a conv layer, by captum's LayerGradCam: (H×W heat map in
    0..1 at the input's size, the class it explains — the predicted one unless given)."""
    from captum.attr import LayerAttribution, LayerGradCam
    net = private_copy(model)
    x = x.detach()
    if cls is None:
        with torch.no_grad():
            cls = int(net(x)[0].argmax())
    with torch.enable_grad():
        a = LayerGradCam(net, _layer(net, layer)).attribute(x, target=cls, relu_attributions=True)
    cam = LayerAttribution.interpolate(a.detach(), tuple(x.shape[-2:]), "bilinear")[0, 0]
    hi = float(cam.max())
    return (cam / hi if hi > 0 else cam).cpu().numpy(), cls


def black_image(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """An all-black image in the model's normalized space, shaped like x (1×C×H×W): Integrated
    Gradients' baseline and Occlusion's fill."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (torch.zeros_like(x) - m) / s


def attributions(model: nn.Module, x: torch.Tensor, cls: int, layer: str, black: torch.Tensor,
                 occlusion_grid: int = 7) -> dict[str, np.ndarray]:
    """Every method of METHODS for class `cls`: H×W maps (summed over the input's channels), each
    scaled to −1..1 by its largest |value| so that one colour scale reads them all.

    `black` is the baseline (an all-black image in the model's normalized space, 1×C×H×W) for
    Integrated Gradients and the fill for Occlusion."""
    key = (hashlib.sha1(x.detach().numpy().tobytes()).hexdigest(), cls, layer, occlusion_grid,
           tuple(black.flatten()[:1].tolist()))
    hit = _RESULTS.get(model, key)
    if hit is not None:
        return hit
    from captum.attr import GuidedGradCam, IntegratedGradients, Occlusion, Saliency
    net = private_copy(model)
    x = x.detach()
    C, n = x.shape[1], x.shape[-1]
    win = max(2, n // occlusion_grid)
    out = {"Grad-CAM": torch.from_numpy(grad_cam(net, x, layer, cls)[0])}
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # on our private copy
        out["Guided Grad-CAM"] = GuidedGradCam(net, _layer(net, layer)).attribute(
            x.clone().requires_grad_(True), target=cls, interpolate_mode="bilinear")[0].sum(0)
        out["Integrated Gradients"] = IntegratedGradients(net).attribute(
            x, baselines=black, target=cls, n_steps=32, internal_batch_size=16)[0].sum(0)
    with torch.no_grad():
        out["Occlusion"] = Occlusion(net).attribute(
            x, sliding_window_shapes=(C, win, win), strides=(C, max(1, win // 2), max(1, win // 2)),
            baselines=black, target=cls, perturbations_per_eval=16)[0].sum(0)
    with torch.enable_grad():
        out["Saliency"] = Saliency(net).attribute(x.clone().requires_grad_(True), target=cls, abs=True)[0].sum(0)
    scaled = {}
    for k, v in out.items():
        v = v.detach().float()
        hi = float(v.abs().max())
        scaled[k] = (v / hi if hi > 0 else v).numpy()
    _RESULTS.put(model, key, scaled)
    return scaled
