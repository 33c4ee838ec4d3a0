"""Training throughput: our device-resident pipeline vs d2l's (DataLoader + PIL Resize + ToTensor, 4 workers).

Same network, same batch size, same optimizer step (train.train_step); steady state after one
warm-up batch. On the CPU both pay the same compute; what differs is data loading, layout
(channels_last) and, on CUDA, bf16 autocast.
"""
import os
import time

import torch

from alexnet_viz.config import TrainConfig, get_preset
from alexnet_viz.data import load_fashion_mnist, pick_device
from alexnet_viz.model import build_model
from alexnet_viz.train import init_weights, make_optimizer, setup, train_step

from . import print_table


def _time_batches(batches, model, opt, amp, n: int) -> float:
    """Examples/sec over n batches after one warm-up batch."""
    it = iter(batches)
    x, y = next(it)
    train_step(model, opt, x, y, amp)
    seen, t0 = 0, None
    for i, (x, y) in enumerate(it):
        if i == 0:
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        if i >= n:
            break
        train_step(model, opt, x, y, amp)
        seen += len(y)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def d2l_pipeline(preset: str, t: TrainConfig, n: int, device: torch.device) -> float:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST
    cfg = get_preset(preset)
    root = os.environ.get("ALEXNET_VIZ_DATA")
    tf = transforms.Compose([transforms.Resize(cfg.input_size), transforms.ToTensor()])
    ds = FashionMNIST(root, train=True, transform=tf, download=False)
    loader = DataLoader(ds, batch_size=t.batch_size, shuffle=True, num_workers=4)
    torch.manual_seed(t.seed)
    model = build_model(cfg)
    init_weights(model)
    model = model.to(device)
    opt = make_optimizer(model, t)

    def to_dev(b):
        for x, y in b:
            yield x.to(device), y.to(device)
    return _time_batches(to_dev(loader), model, opt, None, n)


def ours(preset: str, t: TrainConfig, n: int) -> float:
    ds = load_fashion_mnist()
    model, opt, data, prec = setup(get_preset(preset), t, ds)
    return _time_batches(data.train_batches(t.batch_size, torch.Generator().manual_seed(0)), model, opt, prec.dtype, n)


def main(quick: bool = False) -> None:
    if not os.environ.get("ALEXNET_VIZ_DATA"):
        print("\n## train: skipped — set ALEXNET_VIZ_DATA to a folder holding FashionMNIST/raw "
              "(the d2l baseline reads it through torchvision)")
        return
    device = pick_device("auto")
    big = 3 if quick else (40 if device.type == "cuda" else 8)
    rows = []
    for preset, n in (("d2l", big), ("mini28", 20 if quick else 100)):
        t = TrainConfig(batch_size=128)
        a = ours(preset, t, n)
        b = d2l_pipeline(preset, t, n, device)
        rows.append([preset, str(device), n, f"{a:,.0f}", f"{b:,.0f}", f"{a / b:.2f}×"])
    print_table(f"train: examples/sec, batch 128, {torch.get_num_threads()} threads "
                f"(targets at d2l: ≥ 3× on CPU, ≥ 8× on GPU)",
                ["preset", "device", "batches", "ours ex/s", "d2l pipeline ex/s", "ratio"], rows)
