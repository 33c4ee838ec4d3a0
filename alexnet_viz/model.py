"""build_model(cfg) -> nn.Module, and the same network as ready-to-paste PyTorch code."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from alexnet_viz.config import ArchConfig, feature_shapes, validate

_ACT = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
_ACT_CODE = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "gelu": "nn.GELU()"}
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # the 2012 paper's constants


class AlexNet(nn.Module):
    """features -> [avgpool] -> flatten -> classifier, every layer named (conv1, relu1, pool1, fc1 ...)."""

    def __init__(self, cfg: ArchConfig, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.cfg = cfg
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(cfg.adaptive_pool) if cfg.adaptive_pool else nn.Identity()
        self.flatten = nn.Flatten()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(self.flatten(x))


def _layer_plan(cfg: ArchConfig) -> tuple[list, list, int]:
    """(feature layers, classifier layers, flatten size) as (name, kind, kwargs) triples."""
    feats, c = [], cfg.in_channels
    for i, b in enumerate(cfg.convs, 1):
        feats.append((f"conv{i}", "conv", dict(in_channels=c, out_channels=b.out_channels, kernel_size=b.kernel,
                                               stride=b.stride, padding=b.padding, groups=b.groups)))
        if b.norm == "batchnorm":
            feats.append((f"bn{i}", "batchnorm", dict(num_features=b.out_channels)))
        feats.append((f"{b.activation}{i}", b.activation, {}))
        if b.norm == "lrn":  # after the activation, as in the paper
            feats.append((f"lrn{i}", "lrn", dict(LRN)))
        if b.pool != "none":
            feats.append((f"pool{i}", b.pool, dict(kernel_size=b.pool_kernel, stride=b.pool_stride)))
        c = b.out_channels
    side = cfg.adaptive_pool or feature_shapes(cfg)[-1][1]
    flat = c * side * side
    head, width = [], flat
    for j, h in enumerate(cfg.hidden, 1):
        head.append((f"fc{j}", "linear", dict(in_features=width, out_features=h)))
        head.append((f"{cfg.fc_activation}_fc{j}", cfg.fc_activation, {}))
        if cfg.dropout > 0:
            head.append((f"drop{j}", "dropout", dict(p=cfg.dropout)))
        width = h
    head.append((f"fc{len(cfg.hidden) + 1}", "linear", dict(in_features=width, out_features=cfg.num_classes)))
    return feats, head, flat


def _make(kind: str, kw: dict) -> nn.Module:
    if kind in _ACT:
        return _ACT[kind]()
    return {
        "conv": nn.Conv2d, "batchnorm": nn.BatchNorm2d, "lrn": nn.LocalResponseNorm,
        "max": nn.MaxPool2d, "avg": nn.AvgPool2d, "linear": nn.Linear, "dropout": nn.Dropout,
    }[kind](**kw)


def build_model(cfg: ArchConfig, device: str | torch.device | None = None) -> AlexNet:
    """The network described by cfg (validated first; raises ConfigError)."""
    validate(cfg)
    feats, head, _ = _layer_plan(cfg)
    with torch.device(device or "cpu"):
        return AlexNet(cfg,
                       nn.Sequential(OrderedDict((n, _make(k, kw)) for n, k, kw in feats)),
                       nn.Sequential(OrderedDict((n, _make(k, kw)) for n, k, kw in head)))


def _code(kind: str, kw: dict) -> str:
    if kind in _ACT_CODE:
        return _ACT_CODE[kind]
    cls = {"conv": "nn.Conv2d", "batchnorm": "nn.BatchNorm2d", "lrn": "nn.LocalResponseNorm",
           "max": "nn.MaxPool2d", "avg": "nn.AvgPool2d", "linear": "nn.Linear", "dropout": "nn.Dropout"}[kind]
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if not (k == "groups" and v == 1))
    return f"{cls}({args})"


def to_pytorch_code(cfg: ArchConfig) -> str:
    """Standalone code that builds the same network: only torch needed."""
    validate(cfg)
    feats, head, _ = _layer_plan(cfg)
    # The name is the user's text: repr() makes it a literal that cannot end the docstring or run code.
    doc = f"{cfg.name}: {cfg.in_channels}x{cfg.input_size}x{cfg.input_size} input, {cfg.num_classes} classes. " \
          f"Exported by AlexNet Explorer."
    lines = [repr(doc),
             "from collections import OrderedDict", "", "import torch", "from torch import nn", "",
             "", "def build() -> nn.Sequential:", "    return nn.Sequential(OrderedDict(["]
    lines += [f'        ("{n}", {_code(k, kw)}),' for n, k, kw in feats]
    if cfg.adaptive_pool:
        lines.append(f'        ("avgpool", nn.AdaptiveAvgPool2d({cfg.adaptive_pool})),')
    lines.append('        ("flatten", nn.Flatten()),')
    lines += [f'        ("{n}", {_code(k, kw)}),' for n, k, kw in head]
    lines += ["    ]))", "", "", 'if __name__ == "__main__":', "    net = build()",
              f"    x = torch.zeros(1, {cfg.in_channels}, {cfg.input_size}, {cfg.input_size})",
              "    print(net(x).shape, sum(p.numel() for p in net.parameters()), 'parameters')", ""]
    return "\n".join(lines)
