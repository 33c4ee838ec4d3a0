"""Fashion-MNIST as uint8 tensors, and batches made on the training device.

Where the data comes from, in order:
1. `ALEXNET_VIZ_DATA=/path`: a folder that already holds `FashionMNIST/raw/` (no download).
2. The cache folder (`ALEXNET_VIZ_CACHE`, default `~/.cache/alexnet_viz`): downloaded there once
   by torchvision. Skipped when `ALEXNET_VIZ_OFFLINE=1`.
3. The sample bundled in `alexnet_viz/assets/` (1,000 train + 200 test images per class), said so loudly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexnet_viz.config import ConfigError, batches_per_epoch

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2861, 0.3528  # of the training images, on 0..1 pixels
ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE = ASSETS / "fashion_mnist_sample.npz"


class DataError(ConfigError):
    """ALEXNET_VIZ_DATA names a folder without Fashion-MNIST: the user asked for it, so no fallback."""


@dataclass(frozen=True)
class Dataset:
    train_x: torch.Tensor  # N×28×28 uint8
    train_y: torch.Tensor  # N int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str            # where it came from, for the page and the CLI
    is_sample: bool        # True when it is the bundled offline sample


def cache_dir() -> Path:
    return Path(os.environ.get("ALEXNET_VIZ_CACHE", Path.home() / ".cache" / "alexnet_viz"))


def _from_torchvision(root: Path, download: bool) -> tuple:
    from torchvision.datasets import FashionMNIST
    tr = FashionMNIST(str(root), train=True, download=download)
    te = FashionMNIST(str(root), train=False, download=download)
    return tr.data, tr.targets, te.data, te.targets


def _from_sample(path: Path = SAMPLE) -> tuple:
    with np.load(path) as z:
        return tuple(torch.from_numpy(z[k].astype(np.int64) if k.endswith("_y") else z[k])
                     for k in ("train_x", "train_y", "test_x", "test_y"))


def load_fashion_mnist() -> Dataset:
    """The best data available; never raises because the network is down. A wrong ALEXNET_VIZ_DATA
    raises DataError: that folder was asked for, so falling back to the sample would hide the mistake."""
    env = os.environ.get("ALEXNET_VIZ_DATA")
    problems = []
    if env:
        try:
            return Dataset(*_from_torchvision(Path(env), download=False), source=f"{env} (ALEXNET_VIZ_DATA)",
                           is_sample=False)
        except (RuntimeError, OSError, ValueError) as e:
            raise DataError(f"ALEXNET_VIZ_DATA={env} holds no Fashion-MNIST ({str(e).splitlines()[0][:120]}) — "
                            f"point it at the folder that holds FashionMNIST/raw, or unset it") from None
    root = cache_dir()
    try:
        return Dataset(*_from_torchvision(root, download=False), source=str(root), is_sample=False)
    except (RuntimeError, OSError):
        pass
    if os.environ.get("ALEXNET_VIZ_OFFLINE") != "1":
        try:
            return Dataset(*_from_torchvision(root, download=True), source=f"{root} (downloaded)", is_sample=False)
        except Exception as e:  # noqa: BLE001 - any network failure means: use the sample
            problems.append(f"download failed ({type(e).__name__}: no network?)")
    return load_sample("; ".join(problems) or "offline mode")


def load_sample(why: str = "asked for") -> Dataset:
    """The bundled 12,000-image sample (alexnet_viz/assets/), `why` the full dataset is not used."""
    return Dataset(*_from_sample(), source=f"bundled sample in alexnet_viz/assets/ — full dataset unavailable: {why}",
                   is_sample=True)


def available_devices() -> list[str]:
    """Best first: CUDA, then Apple MPS, then CPU."""
    out = ["cuda"] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def check_device(choice: str = "auto") -> torch.device:
    """The device asked for, or ConfigError saying what this machine has ("no CUDA GPU here; available: cpu")."""
    have = available_devices()
    dev = torch.device(have[0] if choice == "auto" else choice)
    names = {"cuda": "CUDA GPU", "mps": "Apple MPS device", "cpu": "CPU"}
    if dev.type not in have:
        raise ConfigError(f"no {names.get(dev.type, dev.type)} here; available: {', '.join(have)}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"no CUDA GPU {dev.index} here; this machine has {torch.cuda.device_count()}")
    return dev


def pick_device(choice: str = "auto") -> torch.device:
    """The best available device, unless chosen."""
    return torch.device(available_devices()[0] if choice == "auto" else choice)


class DeviceData:
    """The dataset held as uint8 on the device; batches are gathered, normalized and resized there."""

    def __init__(self, ds: Dataset, device: torch.device, size: int, channels: int,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32):
        self.device, self.size, self.channels = device, size, channels
        self.channels_last, self.dtype = channels_last, dtype
        self.rank, self.world = 0, 1  # this process's slice of every batch (torchrun: see shard)
        self.train_x = ds.train_x.to(device)
        self.train_y = ds.train_y.to(device)
        self.test_x = ds.test_x.to(device)
        self.test_y = ds.test_y.to(device)

    def prepare(self, x: torch.Tensor, augment: bool = False, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 B×28×28 -> normalized float B×C×size×size on the device."""
        x = prepare_images(x, self.channels, self.size, dtype=self.dtype, augment=augment, gen=gen)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def shard(self, rank: int, world: int) -> None:
        """Train on every `world`-th example of each batch, from the `rank`-th: the union over ranks
        of their batch k is the one-process batch k, as long as every rank shuffles with the same seed."""
        self.rank, self.world = rank, world

    def _usable(self) -> int:
        n = len(self.train_y)
        return n - n % self.world  # every rank the same number of examples, so the same number of steps

    def train_batches(self, batch_size: int, gen: torch.Generator, augment: bool = False):
        """Shuffled batches of `batch_size` examples; with shard(), this rank's batch_size/world of each."""
        order = torch.randperm(len(self.train_y), generator=gen, device="cpu")[:self._usable()]
        order = order[self.rank::self.world].to(self.device)
        b = batch_size // self.world
        for i in range(0, len(order), b):
            idx = order[i:i + b]
            yield self.prepare(self.train_x[idx], augment, gen), self.train_y[idx]

    def test_batches(self, batch_size: int):
        for i in range(0, len(self.test_y), batch_size):
            yield self.prepare(self.test_x[i:i + batch_size]), self.test_y[i:i + batch_size]

    def steps_per_epoch(self, batch_size: int, max_batches: int = 0) -> int:
        """This rank's batches in an epoch: every rank takes as many as one process would."""
        return batches_per_epoch(self._usable() // self.world, batch_size // self.world, max_batches)


def prepare_images(x: torch.Tensor, channels: int, size: int, mean: tuple = (MEAN,), std: tuple = (STD,),
                   dtype: torch.dtype = torch.float32, augment: bool = False,
                   gen: torch.Generator | None = None) -> torch.Tensor:
    """uint8 B×28×28 images -> the B×C×size×size tensor a model takes: scaled to 0..1, less `mean`
    over `std` (one value for every channel, or one per channel: ImageNet's for a pretrained model),
    randomly shifted and mirrored with `augment`, resized bilinearly, repeated to C channels."""
    x = x.unsqueeze(1).to(dtype).div_(255)
    if len(set(mean)) == 1 and len(set(std)) == 1:  # the same for every channel: on the one channel, in place
        x = x.sub_(mean[0]).div_(std[0])
    else:
        x = x.expand(-1, channels, -1, -1)
        x = (x - torch.tensor(mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)) / \
            torch.tensor(std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    if augment:
        x = random_crop_flip(x, gen)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x


def random_crop_flip(x: torch.Tensor, gen: torch.Generator | None, pad: int = 2) -> torch.Tensor:
    """AlexNet's augmentation at native resolution: a random shift of up to `pad` px and a mirror."""
    B, _, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(H, device=x.device))[:, :, None]  # B×H×1
    cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, :]  # B×1×W
    b = torch.arange(B, device=x.device)[:, None, None]
    x = xp[b, 0, rows, cols].unsqueeze(1)
    flip = (torch.rand(B, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
