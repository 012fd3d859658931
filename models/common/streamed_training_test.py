"""Torch training on a streamed dataset (read a batch at a time) is the same training as in memory."""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.common import datasets
from models.common.datasets import StreamedFeatures
from models.common.harness import load_inputs
from models.common.torch_framework import TorchFramework

DATASET = Path("models/datasets/digits.npz")


def build_model(config, spec):
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))


def _train(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "epochs": 2, "batch_size": 50, "learning_rate": 0.01}))
    framework = TorchFramework(build_model)
    inputs = load_inputs(framework, config, DATASET)
    model, summary = framework.train(inputs.config, inputs.spec, inputs.split)
    return inputs, model.state_dict(), summary


def test_streamed_training_equals_in_memory_training(tmp_path, monkeypatch):
    in_memory, weights, summary = _train(tmp_path)
    assert isinstance(in_memory.spec.train_features, np.ndarray)
    monkeypatch.setattr(datasets, "STREAM_ABOVE_BYTES", 0)
    streamed, streamed_weights, streamed_summary = _train(tmp_path)
    assert isinstance(streamed.spec.train_features, StreamedFeatures)
    assert streamed.spec.input_shape == in_memory.spec.input_shape == (1, 8, 8)
    assert streamed_summary == summary
    for name, tensor in weights.items():
        assert torch.equal(streamed_weights[name], tensor), name
