"""The embedding view: the penultimate layer's features of test images, projected to 2-D per snapshot.

A fixed subset of the test set (N_IMAGES, drawn once with a fixed seed; fewer for networks with a
large input, whose forward passes are slow on a CPU) goes through each snapshot. Each snapshot's
features are projected with PCA (torch.pca_lowrank) and then rotated/reflected onto the last
snapshot's projection (orthogonal Procrustes) and scaled to unit spread, so that scrubbing shows the
classes separating rather than the axes spinning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alexnet_viz.data import Dataset, prepare_images
from alexnet_viz.runs.store import Run

N_IMAGES = 2000
N_IMAGES_LARGE = 500     # for inputs over 64×64 (d2l's 224×224): ~0.7 GMAC an image


def subset(n_test: int, n: int, seed: int = 0) -> np.ndarray:
    """n test indices, the same every time (sorted)."""
    g = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(n_test, generator=g)[:min(n, n_test)].numpy())


@torch.no_grad()
def penultimate(model: torch.nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """The input of the last layer (features → flatten → every classifier layer but the last), eval mode.
    No hooks: the model may be shared."""
    out = []
    for i in range(0, len(x), batch):
        h = model.flatten(model.avgpool(model.features(x[i:i + batch])))
        out.append(model.classifier[:-1](h).float())
    return torch.cat(out)


def pca2(f: torch.Tensor) -> torch.Tensor:
    """n×d -> n×2 along the two directions of largest variance."""
    f = f - f.mean(0)
    if f.shape[1] < 2 or not torch.isfinite(f).all() or f.abs().max() == 0:
        return torch.zeros(len(f), 2)
    _, _, v = torch.pca_lowrank(f, q=2, center=False, niter=4)
    return f @ v[:, :2]


def normalize(xy: torch.Tensor) -> torch.Tensor:
    """Centred, root-mean-square distance from the centre 1."""
    xy = xy - xy.mean(0)
    return xy / xy.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)


def align(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a rotated (or reflected) to best match b, both n×2: the orthogonal Procrustes solution."""
    u, _, vt = torch.linalg.svd(a.T @ b)
    return a @ (u @ vt)


def project_run(run_path: str | Path, ds: Dataset, n: int | None = None) -> tuple[list[tuple[str, np.ndarray]], np.ndarray, np.ndarray]:
    """([(snapshot label, n×2 points)] oldest first, true labels, test indices) for a run's snapshots
    (its final weights when it kept none)."""
    run = Run(Path(run_path))
    arch = run.config()[0]
    n = n or (N_IMAGES if arch.input_size <= 64 else N_IMAGES_LARGE)
    idx = subset(len(ds.test_y), n)
    x = prepare_images(ds.test_x[idx], arch.in_channels, arch.input_size)
    snaps = run.snapshots()
    moments = [(s["label"], s["label"]) for s in snaps] or [("final weights", None)]
    raw = [(label, normalize(pca2(penultimate(run.load_model(at), x)))) for label, at in moments]
    ref = raw[-1][1]
    frames = [(label, align(xy, ref).numpy()) for label, xy in raw]
    return frames, ds.test_y[idx].numpy(), idx
