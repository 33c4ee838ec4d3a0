"""A network from outside (a JSON file, a shared link): validated like any config, then cost-checked.

One path for both, so a link can never carry a network an import would refuse.
"""
from __future__ import annotations

from alexnet_viz.config import ArchConfig, ConfigError, arch_from_dict, read_json, trace

# What one imported network may ask of the server before anything is built: a link is input from
# anyone, and the Architect summarizes it, Explore may build its weights. alexnet2012 has 61 M
# parameters and 0.72 G MACs an image; these leave room for bold experiments, not for a denial of service.
MAX_PARAMS = 500_000_000      # 2 GB of float32 weights
MAX_MACS = 50_000_000_000     # multiply-accumulates for one image (~minutes on a laptop CPU per batch)


def count_cost(cfg: ArchConfig) -> tuple[int, int]:
    """(parameters, MACs for one image) by formula from the trace (no model built); cfg must be valid."""
    t = trace(cfg)
    if t.error is not None:
        raise t.error
    params = macs = 0
    c = cfg.in_channels
    for b, (out, h_conv, _) in zip(cfg.convs, t.blocks):
        weights = out * (c // b.groups) * b.kernel ** 2
        params += weights + out + (2 * out if b.norm == "batchnorm" else 0)
        macs += weights * h_conv ** 2
        c = out
    widths = (t.flat, *cfg.hidden, cfg.num_classes)
    for a, b in zip(widths, widths[1:]):
        params += a * b + b
        macs += a * b
    return params, macs


def check_cost(cfg: ArchConfig) -> ArchConfig:
    """Raise ConfigError when cfg is valid but too big to accept from outside; return cfg otherwise."""
    params, macs = count_cost(cfg)
    if params > MAX_PARAMS:
        raise ConfigError(f"network: {params:,} parameters is more than this app accepts ({MAX_PARAMS:,}) — "
                          f"lower the channels or the hidden widths")
    if macs > MAX_MACS:
        raise ConfigError(f"network: {macs:,} multiply-accumulates per image is more than this app accepts "
                          f"({MAX_MACS:,}) — lower the input size, the channels or add stride")
    return cfg


def network_from_dict(d: object) -> ArchConfig:
    """A network from a parsed JSON object: validated (config.arch_from_dict), then cost-checked."""
    if not isinstance(d, dict):
        raise ConfigError(f"config: expected an object, got {type(d).__name__}")
    return check_cost(arch_from_dict(d))


def import_network(data: str | bytes) -> ArchConfig:
    """A network from JSON text or UTF-8 bytes; ConfigError (one readable line) for anything else."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("it is not UTF-8 text") from None
    return network_from_dict(read_json(data))  # too deep, 5,000-digit numbers, lone surrogates: one line
