"""Config, model, summary, validation, export: checked against real forward passes and torchvision."""
import json

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_viz.config import PRESETS, ArchConfig, ConfigError, ConvSpec, get_preset, with_conv
from alexnet_viz.model import build_model, to_pytorch_code
from alexnet_viz.architect.summary import leaf_layers, summarize


def forward_shapes(cfg: ArchConfig) -> list[tuple]:
    """Independent answer: a real tensor through the real layers."""
    model = build_model(cfg).eval()
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    out = []
    with torch.no_grad():
        for _, m in leaf_layers(model):
            x = m(x)
            out.append(tuple(x.shape[1:]))
    return out


def test_d2l_matches_the_book():
    s = summarize(get_preset("d2l"))
    shapes = [r.output_shape for r in s.rows if r.type in ("Conv2d", "MaxPool2d", "Flatten", "Linear")]
    assert shapes == [(96, 54, 54), (96, 26, 26), (256, 26, 26), (256, 12, 12), (384, 12, 12), (384, 12, 12),
                      (256, 12, 12), (256, 5, 5), (6400,), (4096,), (4096,), (10,)]
    assert s.total_params == 46_764_746


def test_torchvision_preset_is_torchvisions_alexnet():
    ours, ref = build_model(get_preset("torchvision")).eval(), torchvision.models.alexnet().eval()
    assert summarize(get_preset("torchvision")).total_params == 61_100_840 == sum(p.numel() for p in ref.parameters())
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            p.copy_(q)
        x = torch.randn(2, 3, 224, 224)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_alexnet2012_is_the_paper():
    s = summarize(get_preset("alexnet2012"))
    assert s.total_params == 60_965_224
    assert s.rows[0].name == "conv1" and s.rows[0].output_shape == (96, 55, 55)
    assert any(r.type == "LocalResponseNorm" for r in s.rows)


@pytest.mark.parametrize("name", PRESETS)
def test_summary_equals_forward_pass(name):
    cfg = PRESETS[name]
    s = summarize(cfg)
    assert [r.output_shape for r in s.rows] == forward_shapes(cfg)
    assert s.total_params == sum(p.numel() for p in build_model(cfg).parameters())
    conv1 = s.rows[0]
    assert conv1.macs == conv1.output_shape[0] * conv1.output_shape[1] * conv1.output_shape[2] * \
        cfg.in_channels * cfg.convs[0].kernel ** 2
    assert s.total_macs > 0 and all(r.memory == 4 * torch.Size(r.output_shape).numel() for r in s.rows)


def test_receptive_field_of_d2l():
    rows = {r.name: r for r in summarize(get_preset("d2l")).rows}
    assert (rows["conv1"].rf, rows["conv1"].jump) == (11, 4)
    assert (rows["pool1"].rf, rows["pool1"].jump) == (19, 8)   # 11 + (3-1)*4
    assert (rows["conv2"].rf, rows["conv2"].jump) == (51, 8)   # 19 + (5-1)*8
    assert rows["fc1"].rf is None


@pytest.mark.parametrize("name", PRESETS)
def test_json_round_trip(name):
    cfg = PRESETS[name]
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    assert hash(ArchConfig.from_json(cfg.to_json())) == hash(cfg)


@pytest.mark.parametrize("name", PRESETS)
def test_exported_code_builds_the_same_network(name):
    cfg = PRESETS[name]
    ns = {}
    exec(compile(to_pytorch_code(cfg), "<export>", "exec"), ns)
    net = ns["build"]()
    ref = build_model(cfg)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(1, cfg.in_channels, cfg.input_size, cfg.input_size)
    assert net.eval()(x).shape == (1, cfg.num_classes)


@pytest.mark.parametrize("change, where, what", [
    (dict(input_size=32), "pool", "smaller than"),
    (dict(convs=(ConvSpec(96, 11, 4, 1), ConvSpec(250, 5, 1, 2, groups=4))), "conv2", "groups=4"),
    (dict(hidden=(0, 10)), "fc1", "between"),
    (dict(convs=()), "network", "between"),
    (dict(dropout=1.0), "classifier", "dropout"),
])
def test_impossible_configs_name_the_layer(change, where, what):
    from dataclasses import replace
    cfg = replace(get_preset("d2l"), **change)
    with pytest.raises(ConfigError) as e:
        summarize(cfg)
    assert where in str(e.value) and what in str(e.value)


def test_shrinking_message_says_the_size_and_the_fix():
    cfg = with_conv(with_conv(get_preset("d2l"), 2, pool="max"), 3, pool="max")  # 12 -> 5 -> 2: pool5 sees 2×2
    with pytest.raises(ConfigError, match=r"pool5: input 256×2×2 is smaller than pool kernel 3 — lower a stride"):
        build_model(cfg)


def test_classifier_width_follows_the_features():
    cfg = with_conv(get_preset("d2l"), 4, out_channels=128)
    assert build_model(cfg).classifier.fc1.in_features == 128 * 5 * 5


@pytest.mark.parametrize("text, msg", [
    ("{not json", "not valid JSON"),
    ('{"convs": [{"out_channels": 8, "kernel": 3, "colour": 1}]}', "conv1: unknown field"),
    ('{"input_size": "big"}', "expected a whole number"),
    ('{"hidden": [1.5]}', "hidden"),
    ('{"input_size": NaN}', "whole number"),
    ('{"input_size": Infinity}', "whole number"),
    ("[]", "expected an object"),
])
def test_bad_json_is_a_config_error(text, msg):
    with pytest.raises(ConfigError, match=msg):
        ArchConfig.from_json(text)


def test_older_json_missing_fields_takes_defaults():
    d = json.loads(get_preset("d2l").to_json())
    del d["fc_activation"], d["convs"][0]["norm"], d["version"]
    assert ArchConfig.from_dict(d) == get_preset("d2l")


def test_cli_summary_json(capsys):
    from alexnet_viz.__main__ import main
    assert main(["summary", "--preset", "d2l", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_params"] == 46_764_746
    assert out["layers"][0] | {} == {**out["layers"][0], "name": "conv1", "type": "Conv2d",
                                     "output_shape": [96, 54, 54]}
    assert out["total_macs"] == sum(layer["macs"] for layer in out["layers"])


# --- random configs -----------------------------------------------------------------------------
conv_st = st.builds(ConvSpec, out_channels=st.sampled_from([1, 2, 3, 4, 6, 8]), kernel=st.integers(1, 7),
                    stride=st.integers(1, 3), padding=st.integers(0, 3), groups=st.sampled_from([1, 1, 2, 3]),
                    activation=st.sampled_from(["relu", "sigmoid", "tanh", "gelu"]),
                    norm=st.sampled_from(["none", "lrn", "batchnorm"]), pool=st.sampled_from(["max", "avg", "none"]),
                    pool_kernel=st.integers(1, 4), pool_stride=st.integers(1, 3))
arch_st = st.builds(ArchConfig, in_channels=st.sampled_from([1, 2, 3]), input_size=st.integers(8, 48),
                    convs=st.lists(conv_st, min_size=1, max_size=4).map(tuple), adaptive_pool=st.sampled_from([0, 0, 2]),
                    hidden=st.lists(st.integers(1, 32), max_size=2).map(tuple),
                    dropout=st.sampled_from([0.0, 0.5]), num_classes=st.integers(2, 12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch_st)
def test_random_configs_summary_or_config_error(cfg):
    try:
        s = summarize(cfg)
    except ConfigError as e:
        assert str(e)
        with pytest.raises(ConfigError):  # and the builder agrees
            build_model(cfg)
        return
    assert [r.output_shape for r in s.rows] == forward_shapes(cfg)
    assert s.total_params == sum(p.numel() for p in build_model(cfg).parameters())
    assert s.rows[-1].output_shape == (cfg.num_classes,)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["in_channels", "input_size", "convs", "hidden", "dropout", "num_classes",
                                        "name", "bogus"]),
                       st.one_of(st.integers(-5, 600), st.text(max_size=3), st.none(), st.floats(allow_nan=True),
                                 st.lists(st.integers(-2, 5000), max_size=3),
                                 st.lists(st.dictionaries(st.sampled_from(["out_channels", "kernel", "stride", "groups"]),
                                                          st.integers(-2, 300)), max_size=3))))
def test_random_json_gives_config_or_config_error(d):
    try:
        ArchConfig.from_dict(d)
    except ConfigError as e:
        assert str(e)


def test_cli_summary_of_an_exported_config(tmp_path, capsys):
    from alexnet_viz.__main__ import main
    path = tmp_path / "net.json"
    path.write_text(with_conv(get_preset("lenet5"), 0, out_channels=8).to_json())
    assert main(["summary", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][0]["output_shape"] == [8, 28, 28]
    path.write_text('{"convs": [{"out_channels": 8, "kernel": 40}]}')
    assert main(["summary", "--config", str(path)]) == 2
    assert "conv1" in capsys.readouterr().err
    assert main(["summary", "--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- identity from structure, not from strings ----------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_known_by_its_layers_whatever_its_name(name):
    from dataclasses import replace
    from alexnet_viz.config import preset_of
    p = PRESETS[name]
    assert preset_of(p) == name and preset_of(replace(p, name="my own net")) == name
    others = [n for n in PRESETS if n != name]
    assert preset_of(replace(p, name=others[0])) == name   # another preset's name does not make it that preset
    assert preset_of(replace(p, num_classes=p.num_classes + 1)) is None
    assert preset_of(with_conv(p, 0, out_channels=p.convs[0].out_channels + 1)) is None


def test_training_defaults_follow_the_network_not_its_name():
    from dataclasses import replace
    from alexnet_viz.config import TrainConfig, default_training
    mini = PRESETS["mini28"]
    minis = TrainConfig(epochs=1, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=5e-4)  # config.py's table
    assert default_training(mini) == minis == default_training("mini28")
    assert default_training(replace(mini, name="my net")) == minis                # renamed: still mini28
    assert default_training(replace(mini, name="mini28 wide", hidden=(512,))) == TrainConfig()  # edited: its own
    assert default_training(replace(mini, name="mini28 (edited)", dropout=0.5)) == TrainConfig()
    assert default_training(replace(PRESETS["d2l"], name="mini28")) == TrainConfig()  # d2l named mini28 is d2l
    with pytest.raises(ConfigError, match="unknown preset 'mini28 wide'"):
        default_training("mini28 wide")                                          # a name is a preset's or nothing


@pytest.mark.parametrize("change, where", [
    (dict(name="x" * 81), "name"),
    (dict(in_channels=2), "input"),
    (dict(convs=()), "network"),
    (dict(convs=(ConvSpec(96, 11, 4, 1), ConvSpec(250, 5, 1, 2, groups=4))), "conv2"),
    (dict(input_size=40), "pool5"),  # by hand: conv1 (40+2-11)//4+1 = 8, pool1 3, conv2 3, pool2 1, conv3-5 1: pool5 sees 1×1
    (dict(adaptive_pool=40), "avgpool"),
    (dict(hidden=()), None),
    (dict(hidden=(4096, 0)), "fc2"),
    (dict(num_classes=1), "classifier"),
])
def test_the_trace_names_the_failing_part_as_data(change, where):
    from dataclasses import replace
    from alexnet_viz.config import trace
    cfg = replace(get_preset("d2l"), **change)
    t = trace(cfg)
    if where is None:
        assert t.error is None and t.where is None
        return
    assert t.error is not None and t.where == t.error.where
    assert t.where == where and str(t.error).startswith(f"{where}: ")  # the message still names it first
