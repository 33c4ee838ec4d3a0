"""The GPU path: run where CUDA is present, skipped with the reason everywhere else.

On a CUDA machine: `python -m pytest -q -m cuda` (see the README's GPU section for the benchmarks).
"""
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_viz.inspect import analysis as activations
from alexnet_viz.config import ArchConfig, ConvSpec, TrainConfig, get_preset
from alexnet_viz.data import DeviceData
from alexnet_viz.training.engine import evaluate, setup, train

from tests.test_training import synthetic

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU here: the GPU path is checked on a CUDA machine (README, GPU)")]


def test_training_on_the_gpu_uses_bf16_channels_last_and_cudnn_benchmark():
    t = TrainConfig(epochs=3, batch_size=64, lr=1e-3, optimizer="adam", device="cuda")
    model, _, data, prec = setup(get_preset("mini28"), t, synthetic(2048, 512))
    assert next(model.parameters()).is_cuda and data.train_x.is_cuda  # the dataset lives on the GPU
    assert model.features.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.backends.cudnn.benchmark
    assert prec.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None) and "GPU" in prec.reason
    recs = list(train(get_preset("mini28"), t, synthetic(2048, 512)))
    assert recs[0].kind == "precision" and recs[0].device.startswith("cuda")
    epochs = [r for r in recs if r.kind == "epoch"]
    assert recs[-1].status == "finished", recs[-1].message
    assert epochs[-1].train_loss < epochs[0].train_loss and epochs[-1].test_acc > 0.5


def test_a_batch_past_the_card_ends_with_the_out_of_memory_message():
    free, _ = torch.cuda.mem_get_info()
    # d2l keeps well over 4 MB of activations per 224×224 image for the backward pass
    batch = min(8192, int(free / 4e6) + 1024)
    huge = ArchConfig(name="huge", in_channels=1, input_size=512, convs=(ConvSpec(256, 3, 1, 1), ConvSpec(256, 3, 1, 1)),
                      adaptive_pool=2, hidden=(16,), dropout=0.0)
    t = TrainConfig(epochs=1, batch_size=batch, max_batches=1, device="cuda", amp=False)
    end = list(train(huge, t, synthetic(batch, 16)))[-1]
    assert end.status == "error" and "ran out of memory" in end.message and "batch size" in end.message
    torch.cuda.empty_cache()
    small = list(train(huge, replace(t, batch_size=2), synthetic(64, 16)))[-1]  # the card is usable again
    assert small.status == "finished", small.message


def test_evaluation_on_the_gpu_matches_the_cpu():
    arch = get_preset("mini28")
    ds = synthetic(256, 512)
    torch.manual_seed(0)
    model, _, _, _ = setup(arch, TrainConfig(device="cpu", amp=False), ds)
    acc_cpu, p_cpu = evaluate(model, DeviceData(ds, torch.device("cpu"), 28, 1), None)
    gpu = model.to("cuda")
    acc_gpu, p_gpu = evaluate(gpu, DeviceData(ds, torch.device("cuda"), 28, 1), None)
    assert (p_cpu == p_gpu).mean() > 0.99 and abs(acc_cpu - acc_gpu) < 0.01


def test_explore_analysis_with_the_model_on_the_gpu():
    loaded = activations.untrained(get_preset("mini28"))
    im = Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8))
    on_cpu = activations.analyze(loaded, im)
    on_gpu = activations.analyze(replace(loaded, model=loaded.model.to("cuda")), im)
    assert [c for c, _ in on_gpu.top] == [c for c, _ in on_cpu.top]
    assert np.allclose([p for _, p in on_gpu.top], [p for _, p in on_cpu.top], atol=1e-3)
    assert on_gpu.cam.shape == on_cpu.cam.shape and all(not m.is_cuda for m in on_gpu.maps.values())
