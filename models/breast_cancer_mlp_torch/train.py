"""A tabular classifier: an MLP on the 30 raw breast-cancer features, binary outcome.

Unlike the image models, raw features span five orders of magnitude, so the network standardises
its input itself with statistics taken from the training split. Those statistics are buffers of
the model, which puts them into the checkpoint and the exported ONNX graph: clients send raw
features and never need to know them.
"""

import torch
from torch import nn

from models.common.config import TrainingConfig
from models.common.harness import ModelSpec, run
from models.common.torch_framework import TorchFramework


class Standardize(nn.Module):
    def __init__(self, train_features) -> None:
        super().__init__()
        features = torch.from_numpy(train_features)
        self.register_buffer("mean", features.mean(dim=0))
        self.register_buffer("scale", features.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def build_model(config: TrainingConfig, spec: ModelSpec) -> nn.Module:
    params = config.architecture({"hidden_units": 32, "dropout": 0.1})
    hidden, dropout = params["hidden_units"], params["dropout"]
    (num_features,) = spec.input_shape
    return nn.Sequential(
        Standardize(spec.train_features),
        nn.Linear(num_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, spec.num_classes),
    )


if __name__ == "__main__":
    run(TorchFramework(build_model))
