"""A network as data: frozen dataclasses, presets, validation and JSON.

Everything else (model, summary, export, training) reads an `ArchConfig`; nothing
hand-types a layer twice. Frozen dataclasses are hashable, so a config can key a cache.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields, replace

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
NORMS = ("none", "lrn", "batchnorm")
POOLS = ("max", "avg", "none")
SCHEMA_VERSION = 1

# Bounds that keep a config buildable on a laptop; they are sanity limits, not physics. The
# Architect's widgets take their ranges from here, so what a widget offers is what validation allows.
IN_CHANNELS = (1, 3)  # grayscale or RGB: the only images the data and upload paths can feed
LIMITS = {
    "in_channels": (1, 3), "dropout": (0.0, 0.99), "input_size": (8, 512), "out_channels": (1, 2048),
    "kernel": (1, 31), "stride": (1, 16), "padding": (0, 15), "groups": (1, 2048),
    "pool_kernel": (1, 15), "pool_stride": (1, 15), "hidden": (1, 16384),
    "num_classes": (2, 1000), "adaptive_pool": (0, 32), "convs": (1, 12), "hiddens": (0, 6),
}


NAME_MAX = 80  # characters in a network's name (it becomes part of a folder name)

# What a TrainConfig accepts; the Train page's widgets and the CLI use the same bounds.
TRAIN_LIMITS = {
    "epochs": (1, 1000), "batch_size": (1, 8192), "lr": (1e-6, 10.0), "weight_decay": (0.0, 1.0),
    "max_batches": (0, 1_000_000), "seed": (0, 2**31 - 1),
}
OPTIMIZERS = ("sgd", "momentum", "adam")
INITS = ("xavier", "default")


class ConfigError(ValueError):
    """A config that cannot work; the message names the layer, the size and the fix. `where` is the part
    at fault as data (name, input, network, conv3, pool3, avgpool, classifier, fc2); None when the
    problem is not one part's. The message starts with it."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


JSON_MAX_DIGITS = 40  # digits in one number of a config: far beyond any limit, far below Python's 4,300


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise ConfigError(f"a number with {len(text.lstrip('-')):,} digits — no setting is that large")
    return int(text)


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ConfigError(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is too large to be a setting")
    return v


def _parse_constant(name: str):
    raise ConfigError(f"{name} is not a number a setting can have (expected a whole number or a decimal)")


def _not_text(v, where: str = "") -> str | None:
    """Where v (parsed JSON) holds a string that is not text (a lone surrogate, from a \\ud800 escape):
    no page could show it, no file name could hold it."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"{where or 'the file'} holds {v[e.start]!r}, half of a character (a lone surrogate)"
        return None
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        bad = _not_text(k, f"{where or 'config'}: a field name") if isinstance(k, str) else None
        bad = bad or _not_text(x, f"{where or 'config'}.{k}" if isinstance(k, str) else f"{where}[{k}]")
        if bad:
            return bad
    return None


def read_json(text: str):
    """JSON text -> its value, refusing what no config holds with a ConfigError that says which: nesting
    too deep for the parser (a network JSON is 3 deep), a number of more than JSON_MAX_DIGITS digits
    (Python's int() refuses 4,300), NaN or Infinity, and strings that are not text (lone surrogates)."""
    try:
        v = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except ConfigError as e:
        raise ConfigError(f"not a network JSON: {e}") from None
    except RecursionError:
        raise ConfigError("not a network JSON: it is nested too deeply to read (a network JSON is 3 levels deep)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"not valid JSON: {e}") from None
    except ValueError as e:  # whatever else the parser refuses: one line, never a trace
        raise ConfigError(f"not a network JSON: {str(e).splitlines()[0][:200]}") from None
    bad = _not_text(v)
    if bad:
        raise ConfigError(f"not a network JSON: {bad} — export the network again from the Architect page")
    return v


@dataclass(frozen=True)
class ConvSpec:
    """One conv block: conv -> activation -> [norm] -> [pool]."""
    out_channels: int              # feature maps produced by the conv
    kernel: int                    # square kernel side, pixels
    stride: int = 1                # conv stride, pixels
    padding: int = 0               # zero padding on each side, pixels
    groups: int = 1                # channel groups (2 = AlexNet's two-GPU split)
    activation: str = "relu"       # one of ACTIVATIONS
    norm: str = "none"             # none | lrn (local response norm, 2012) | batchnorm
    pool: str = "max"              # max | avg | none
    pool_kernel: int = 3           # pooling window side, pixels
    pool_stride: int = 2           # pooling stride, pixels


@dataclass(frozen=True)
class ArchConfig:
    """A whole AlexNet-style network: conv blocks, optional adaptive pool, an MLP head."""
    name: str = "custom"                      # label shown in the UI and saved runs
    in_channels: int = 1                      # 1 = grayscale, 3 = RGB
    input_size: int = 224                     # square input side, pixels
    convs: tuple[ConvSpec, ...] = ()          # feature extractor, in order
    adaptive_pool: int = 0                    # 0 = none, else AdaptiveAvgPool to n x n
    hidden: tuple[int, ...] = (4096, 4096)    # widths of the hidden Linear layers
    fc_activation: str = "relu"               # activation after each hidden Linear
    dropout: float = 0.5                      # p after each hidden layer; 0 = no Dropout
    num_classes: int = 10                     # outputs of the last Linear

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = SCHEMA_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_dict(d: dict) -> "ArchConfig":
        return arch_from_dict(d)

    @staticmethod
    def from_json(text: str) -> "ArchConfig":
        return arch_from_dict(read_json(text))


def _fields_from(cls, d: dict, where: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - {"version"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    out = {}
    for f in fields(cls):
        if f.name not in d:
            continue  # older files: missing fields take their defaults
        v = d[f.name]
        if f.name in ("convs", "hidden"):
            out[f.name] = v
        elif f.type == "int" or f.type is int:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
                raise ConfigError(f"{where}.{f.name}: expected a whole number, got {v!r}")
            out[f.name] = int(v)
        elif f.type == "float" or f.type is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{where}.{f.name}: expected a number, got {v!r}")
            out[f.name] = float(v)
        else:
            if not isinstance(v, str):
                raise ConfigError(f"{where}.{f.name}: expected text, got {v!r}")
            out[f.name] = v
    return out


def _conv_from(d: dict, where: str) -> ConvSpec:
    kw = _fields_from(ConvSpec, d, where)
    missing = [f for f in ("out_channels", "kernel") if f not in kw]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)} — every conv block needs at least these")
    return ConvSpec(**kw)


def arch_from_dict(d: dict) -> ArchConfig:
    """Parse and validate a dict (from JSON); raises ConfigError naming the bad field."""
    kw = _fields_from(ArchConfig, d, "config")
    if len(kw.get("name", "")) > NAME_MAX:
        raise ConfigError(f"config.name: at most {NAME_MAX} characters (got {len(kw['name'])}) — shorten it")
    if bad := _not_text(kw.get("name", ""), "config.name"):
        raise ConfigError(f"{bad} — type the name again")
    convs = kw.get("convs", ())
    if not isinstance(convs, (list, tuple)):
        raise ConfigError("config.convs: expected a list of conv blocks")
    kw["convs"] = tuple(_conv_from(c, f"conv{i + 1}") for i, c in enumerate(convs))
    hidden = kw.get("hidden", (4096, 4096))
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
        raise ConfigError(f"config.hidden: expected a list of whole numbers, got {hidden!r}")
    kw["hidden"] = tuple(hidden)
    cfg = ArchConfig(**kw)
    validate(cfg)
    return cfg


def _check_range(where: str, what: str, v: int) -> None:
    lo, hi = LIMITS[what]
    if not lo <= v <= hi:
        raise ConfigError(f"{what.replace('_', ' ')} must be between {lo} and {hi} (got {v})", where)


def _shrink(where: str, kind: str, c: int, h: int, k: int, s: int, p: int) -> int:
    """Output side of a conv/pool; raises when the window does not fit."""
    if h + 2 * p < k:
        padded = f" (padded to {h + 2 * p}×{h + 2 * p})" if p else ""
        raise ConfigError(f"input {c}×{h}×{h}{padded} is smaller than {kind} kernel {k} — lower a stride or "
                          f"a kernel before it, add padding, or raise the input size", where)
    return (h + 2 * p - k) // s + 1


def _check_block(i: int, b: ConvSpec, c: int, h: int) -> tuple[int, int]:
    """Every check of conv block i (1-based) fed c×h×h maps; returns its side after the conv and after the pool."""
    where = f"conv{i}"
    for name in ("out_channels", "kernel", "stride", "padding", "groups"):
        _check_range(where, name, getattr(b, name))
    if b.activation not in ACTIVATIONS:
        raise ConfigError(f"activation {b.activation!r} is not one of {', '.join(ACTIVATIONS)}", where)
    if b.norm not in NORMS:
        raise ConfigError(f"norm {b.norm!r} is not one of {', '.join(NORMS)}", where)
    if b.pool not in POOLS:
        raise ConfigError(f"pool {b.pool!r} is not one of {', '.join(POOLS)}", f"pool{i}")
    if b.pool != "none":
        _check_range(f"pool{i}", "pool_kernel", b.pool_kernel)
        _check_range(f"pool{i}", "pool_stride", b.pool_stride)
    if c % b.groups or b.out_channels % b.groups:
        raise ConfigError(f"groups={b.groups} must divide both its in channels ({c}) and out channels "
                          f"({b.out_channels}) — pick groups from {_common_divisors(c, b.out_channels)} "
                          f"or change the channel counts", where)
    h_conv = _shrink(where, "conv", c, h, b.kernel, b.stride, b.padding)
    h_pool = h_conv if b.pool == "none" else _shrink(f"pool{i}", "pool", b.out_channels, h_conv,
                                                     b.pool_kernel, b.pool_stride, 0)
    return h_conv, h_pool


@dataclass(frozen=True)
class Trace:
    """A config followed layer by layer up to the first one that cannot work (for drawing a broken net)."""
    blocks: tuple[tuple[int, int, int], ...]  # per working conv block: (channels, side after conv, after pool)
    flat: int | None                          # flatten size, None if the features failed
    error: ConfigError | None                 # the first problem in forward order, None if it all works
    where: str | None = None                  # the failing part (input, conv3, pool3, classifier, fc2 ...)


def trace(cfg: ArchConfig) -> Trace:
    """Check cfg in forward order: input, each conv block, the classifier; stop at the first problem."""
    blocks: list[tuple[int, int, int]] = []
    flat = None
    try:
        if not isinstance(cfg.name, str) or len(cfg.name) > NAME_MAX:
            raise ConfigError(f"at most {NAME_MAX} characters (got {len(str(cfg.name))}) — shorten it", "name")
        if bad := _not_text(cfg.name, "it"):
            raise ConfigError(f"{bad} — type the name again", "name")
        if cfg.in_channels not in IN_CHANNELS:
            raise ConfigError(f"in channels must be 1 (grayscale) or 3 (RGB), got {cfg.in_channels} — "
                              f"images have one or three channels", "input")
        _check_range("input", "input_size", cfg.input_size)
        _check_range("network", "convs", len(cfg.convs))
        c, h = cfg.in_channels, cfg.input_size
        for i, b in enumerate(cfg.convs, 1):
            h_conv, h = _check_block(i, b, c, h)
            c = b.out_channels
            blocks.append((c, h_conv, h))
        _check_range("avgpool", "adaptive_pool", cfg.adaptive_pool)
        flat = c * (cfg.adaptive_pool or h) ** 2
        _check_range("classifier", "hiddens", len(cfg.hidden))
        for i, w in enumerate(cfg.hidden, 1):
            _check_range(f"fc{i}", "hidden", w)
        _check_range("classifier", "num_classes", cfg.num_classes)
        if cfg.fc_activation not in ACTIVATIONS:
            raise ConfigError(f"activation {cfg.fc_activation!r} is not one of {', '.join(ACTIVATIONS)}",
                              "classifier")
        lo, hi = LIMITS["dropout"]
        if isinstance(cfg.dropout, bool) or not isinstance(cfg.dropout, (int, float)) or not lo <= cfg.dropout <= hi:
            raise ConfigError(f"dropout p must be between {lo:g} and {hi:g} (got {cfg.dropout})", "classifier")
        widths = (flat, *cfg.hidden)
        weights = sum(a * b for a, b in zip(widths, (*cfg.hidden, cfg.num_classes)))
        if weights > 400_000_000:
            raise ConfigError(f"{weights:,} weights in the Linear layers (flatten size {flat:,}) is too big "
                              f"for this app — add pooling, lower the channels or the hidden widths", "classifier")
    except ConfigError as e:  # each check names its part: the drawing reads it here, not from the text
        return Trace(tuple(blocks), flat, e, e.where)
    return Trace(tuple(blocks), flat, None)


def feature_shapes(cfg: ArchConfig) -> list[tuple[int, int]]:
    """(channels, side) after each conv block, by formula; raises ConfigError on the first bad layer."""
    c, h, out = cfg.in_channels, cfg.input_size, []
    for i, b in enumerate(cfg.convs, 1):
        h = _check_block(i, b, c, h)[1]
        c = b.out_channels
        out.append((c, h))
    return out


def validate(cfg: ArchConfig) -> None:
    """Raise ConfigError with the layer, the size and what to change; return None if it can work."""
    err = trace(cfg).error
    if err is not None:
        raise err


def _common_divisors(a: int, b: int) -> str:
    g = math.gcd(a, b)
    return ", ".join(str(d) for d in range(1, g + 1) if g % d == 0 and d <= 64)


def with_conv(cfg: ArchConfig, i: int, **changes) -> ArchConfig:
    """A copy of cfg with conv block i (0-based) changed; no validation."""
    convs = list(cfg.convs)
    convs[i] = replace(convs[i], **changes)
    return replace(cfg, convs=tuple(convs))


def _d2l() -> ArchConfig:
    return ArchConfig(
        name="d2l", in_channels=1, input_size=224,
        convs=(ConvSpec(96, 11, 4, 1), ConvSpec(256, 5, 1, 2),
               ConvSpec(384, 3, 1, 1, pool="none"), ConvSpec(384, 3, 1, 1, pool="none"),
               ConvSpec(256, 3, 1, 1)),
        hidden=(4096, 4096), dropout=0.5, num_classes=10)


def _alexnet2012() -> ArchConfig:
    return ArchConfig(
        name="alexnet2012", in_channels=3, input_size=227,
        convs=(ConvSpec(96, 11, 4, 0, norm="lrn"), ConvSpec(256, 5, 1, 2, groups=2, norm="lrn"),
               ConvSpec(384, 3, 1, 1, pool="none"), ConvSpec(384, 3, 1, 1, groups=2, pool="none"),
               ConvSpec(256, 3, 1, 1, groups=2)),
        hidden=(4096, 4096), dropout=0.5, num_classes=1000)


def _torchvision() -> ArchConfig:
    return ArchConfig(
        name="torchvision", in_channels=3, input_size=224,
        convs=(ConvSpec(64, 11, 4, 2), ConvSpec(192, 5, 1, 2),
               ConvSpec(384, 3, 1, 1, pool="none"), ConvSpec(256, 3, 1, 1, pool="none"),
               ConvSpec(256, 3, 1, 1)),
        adaptive_pool=6, hidden=(4096, 4096), dropout=0.5, num_classes=1000)


def _mini28() -> ArchConfig:
    # AlexNet's shape scaled to native 28x28: a strided large first conv, overlapping 3/2 pooling,
    # three stacked 3x3 convs, a dropout MLP. BatchNorm (not LRN) lets one CPU epoch reach ~0.87.
    bn = "batchnorm"
    return ArchConfig(
        name="mini28", in_channels=1, input_size=28,
        convs=(ConvSpec(32, 5, 2, 2, norm=bn, pool="none"), ConvSpec(64, 3, 1, 1, norm=bn),
               ConvSpec(64, 3, 1, 1, norm=bn, pool="none"), ConvSpec(64, 3, 1, 1, norm=bn)),
        hidden=(256,), dropout=0.3, num_classes=10)


def _lenet5() -> ArchConfig:
    return ArchConfig(
        name="lenet5", in_channels=1, input_size=28,
        convs=(ConvSpec(6, 5, 1, 2, activation="sigmoid", pool="avg", pool_kernel=2, pool_stride=2),
               ConvSpec(16, 5, 1, 0, activation="sigmoid", pool="avg", pool_kernel=2, pool_stride=2)),
        hidden=(120, 84), fc_activation="sigmoid", dropout=0.0, num_classes=10)


PRESETS: dict[str, ArchConfig] = {
    "d2l": _d2l(), "alexnet2012": _alexnet2012(), "torchvision": _torchvision(),
    "mini28": _mini28(), "lenet5": _lenet5(),
}

PRESET_NOTES = {
    "d2l": "Dive into Deep Learning's AlexNet for Fashion-MNIST upscaled to 224×224.",
    "alexnet2012": "The 2012 paper: 227×227 RGB, LRN, conv2/4/5 split into two groups (two GPUs).",
    "torchvision": "torchvision.models.alexnet(): 64 first filters, adaptive average pool to 6×6.",
    "mini28": "AlexNet's shape shrunk to native 28×28 Fashion-MNIST: trains on a laptop CPU.",
    "lenet5": "LeNet-5 (1998): sigmoid and average pooling — what AlexNet changed.",
}


def get_preset(name: str) -> ArchConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class TrainConfig:
    """How to train; defaults are d2l's AlexNet recipe."""
    epochs: int = 10                   # passes over the training set
    batch_size: int = 128              # examples per step
    lr: float = 0.01                   # learning rate
    optimizer: str = "sgd"             # sgd | momentum (SGD, 0.9) | adam
    weight_decay: float = 0.0          # L2 penalty
    augment: bool = False              # random crop (pad 2 px) + horizontal flip, on the device
    amp: bool = True                   # bf16 autocast where it pays (off = fp32 everywhere)
    precision: str = "auto"            # with amp: auto (measured on this CPU, see precision.py) | bf16 | fp32
    seed: int = 0                      # init, shuffling and augmentation
    device: str = "auto"               # auto | cuda | mps | cpu
    max_batches: int = 0               # 0 = whole epoch, else a cap per epoch for quick demos
    init: str = "xavier"               # xavier (d2l) | default (PyTorch's)

    def __post_init__(self):
        # here, not in from_dict: dataclasses.replace() builds through __init__ too, so no copy skips it
        for name, (lo, hi) in TRAIN_LIMITS.items():
            v = getattr(self, name)
            whole = isinstance(lo, int) and isinstance(hi, int)
            if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)) or not lo <= v <= hi:
                kind, fmt = ("a whole number", "{:,}") if whole else ("a number", "{:g}")
                raise ConfigError(f"{name.replace('_', ' ')} must be {kind} from {fmt.format(lo)} to "
                                  f"{fmt.format(hi)} (got {v!r})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise ConfigError(f"init {self.init!r} is not one of {', '.join(INITS)}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", self.device):
            raise ConfigError(f"device {self.device!r} is not one of auto, cpu, cuda, mps")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision {self.precision!r} is not one of auto, bf16, fp32")
        for name in ("augment", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false (got {getattr(self, name)!r})")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"training settings: expected an object, got {type(d).__name__}")
        kw = {k: v for k, v in d.items() if k in {f.name for f in fields(TrainConfig)}}
        return TrainConfig(**kw)


def batches_per_epoch(n_train: int, batch_size: int, max_batches: int = 0) -> int:
    """Training batches in one epoch over `n_train` examples (the last one partial), at most
    `max_batches` when that cap is set (TrainConfig.max_batches; 0 = no cap)."""
    steps = -(-n_train // batch_size)
    return min(steps, max_batches) if max_batches else steps


# Training settings that suit a preset better than d2l's (used as the page's and CLI's defaults).
PRESET_TRAINING: dict[str, TrainConfig] = {
    # measured on 2 CPU cores, seeds 0/1/2: test acc 0.876/0.876/0.873 after one epoch in 22-26 s
    "mini28": TrainConfig(epochs=1, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=5e-4),
    "lenet5": TrainConfig(epochs=10, batch_size=256, lr=0.9),
}


def preset_of(arch: ArchConfig) -> str | None:
    """The preset that `arch` is, by its layers and sizes (its name is ignored: a renamed mini28 is
    mini28, an edited one is a network of one's own); None for a network of one's own."""
    return next((name for name, p in PRESETS.items() if replace(arch, name=p.name) == p), None)


def default_training(arch: ArchConfig | str) -> TrainConfig:
    """The training settings that suit `arch` (a network, or a preset's name): its preset's (see
    preset_of), else d2l's recipe."""
    preset = get_preset(arch).name if isinstance(arch, str) else preset_of(arch)
    return PRESET_TRAINING.get(preset, TrainConfig())


__all__ = [
    "ACTIVATIONS", "NORMS", "POOLS", "TRAIN_LIMITS", "NAME_MAX", "ConfigError", "ConvSpec", "ArchConfig", "TrainConfig",
    "PRESETS", "PRESET_NOTES", "get_preset", "validate", "feature_shapes", "with_conv", "trace", "Trace",
    "LIMITS", "IN_CHANNELS",
    "default_training", "batches_per_epoch", "preset_of",
]
