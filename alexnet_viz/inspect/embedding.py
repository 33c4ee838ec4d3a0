"""The embedding view: the penultimate layer's features of test images, projected to 2-D per snapshot.

A fixed subset of the test set (N_IMAGES, drawn once with a fixed seed; fewer for networks with a
large input, whose forward passes are slow on a CPU) goes through each snapshot. Each snapshot's
features are projected with PCA (torch.pca_lowrank) and then rotated/reflected onto the last
snapshot's projection (orthogonal Procrustes) and scaled to unit spread, so that scrubbing shows the
classes separating rather than the axes spinning.

A projection is kept beside the run (`embedding-<data>.npz`, one per data set: the full test set or
the bundled sample's), valid while the run's snapshots (or, without any, its weights) and the images
are the ones it was made from: the shipped example's are made when it is built (16 snapshots of
2,000 images took 13 s on one CPU thread), a user's run's the first time anyone asks.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from alexnet_viz.data import Dataset, prepare_images
from alexnet_viz.runs.store import Run, is_example

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
    with torch.random.fork_rng(devices=[]):  # a randomized method: seeded, the same points every time
        torch.manual_seed(0)
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


Frames = list[tuple[str, np.ndarray]]


def project_run(run_path: str | Path, ds: Dataset, n: int | None = None,
                keep: bool | None = None) -> tuple[Frames, np.ndarray, np.ndarray]:
    """([(snapshot label, n×2 points)] oldest first, true labels, test indices) for a run's snapshots
    (its final weights when it kept none). Read from the run's kept projection when it is still valid;
    else made, and kept when `keep` (by default: unless the run is a shipped example, whose files never
    change)."""
    run = Run(Path(run_path))
    arch = run.config()[0]
    n = n or (N_IMAGES if arch.input_size <= 64 else N_IMAGES_LARGE)
    idx = subset(len(ds.test_y), n)
    images, labels = ds.test_x[idx], ds.test_y[idx].numpy()
    data = hashlib.sha1(images.contiguous().numpy().tobytes() + labels.tobytes()).hexdigest()[:16]
    kept, key = run.path / f"embedding-{data}.npz", _made_from(run)
    frames = _read(kept, key)
    if frames is None:
        frames = _project(run, prepare_images(images, arch.in_channels, arch.input_size))
        if keep if keep is not None else not is_example(run.path):
            _write(kept, key, frames)
    return frames, labels, idx


def _made_from(run: Run) -> str:
    """What a projection depends on besides the images: the snapshots' index, or the final weights."""
    index = run.path / "snapshots" / "index.json"
    try:
        return hashlib.sha1((index if index.is_file() else run.path / "weights.pt").read_bytes()).hexdigest()
    except OSError:
        return ""


def _project(run: Run, x: torch.Tensor) -> Frames:
    snaps = run.snapshots()
    moments = [(s["label"], s["label"]) for s in snaps] or [("final weights", None)]
    raw = [(label, normalize(pca2(penultimate(run.load_model(at), x)))) for label, at in moments]
    ref = raw[-1][1]
    return [(label, align(xy, ref).numpy()) for label, xy in raw]


def _read(path: Path, key: str) -> Frames | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not key or str(z["key"]) != key:
                return None
            return [(str(label), xy) for label, xy in zip(z["labels"], z["points"])]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):  # none yet, or a file cut short: made again
        return None


def _write(path: Path, key: str, frames: Frames) -> None:
    """Kept for next time, whole or not at all; a run folder that cannot take it (disk full, read-only)
    just goes without."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), labels=np.array([label for label, _ in frames]),
                     points=np.stack([xy for _, xy in frames]).astype(np.float32))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
