"""Time to summarize each preset (meta device) vs d2l's layer_summary (a real forward on the CPU)."""
import torch

from alexnet_viz.config import PRESETS
from alexnet_viz.model import build_model
from alexnet_viz.architect.summary import summarize

from alexnet_viz.bench import print_table, timeit


def d2l_layer_summary(cfg) -> list:
    """The baseline: build the net for real and push a real tensor through it, layer by layer."""
    net = build_model(cfg)
    X = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    shapes = []
    with torch.no_grad():
        for layer in [*net.features, net.avgpool, net.flatten, *net.classifier]:
            X = layer(X)
            shapes.append(tuple(X.shape))
    return shapes


def main(quick: bool = False) -> None:
    rows = []
    n = 5 if quick else 30
    for name, cfg in PRESETS.items():
        ours = timeit(lambda: summarize(cfg), n, warmup=2)
        base = timeit(lambda: d2l_layer_summary(cfg), max(n // 5, 3), warmup=1)
        rows.append([name, f"{ours * 1e3:.1f}", f"{base * 1e3:.1f}", f"{base / ours:.1f}×",
                     "yes" if ours <= 0.020 else "NO"])
    print_table(f"summary: median of {n} (target ≤ 20 ms each)",
                ["preset", "ours ms (meta)", "d2l layer_summary ms", "speed-up", "≤ 20 ms"], rows)
