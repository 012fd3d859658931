"""A small CNN on the 8x8 digits: two conv -> ReLU -> max-pool blocks, then two dense layers."""

from torch import nn

from models.common.config import TrainingConfig
from models.common.harness import ModelSpec, run
from models.common.torch_framework import TorchFramework


def build_model(config: TrainingConfig, spec: ModelSpec) -> nn.Module:
    params = config.architecture({"conv1_channels": 16, "conv2_channels": 32, "hidden_units": 64})
    c1, c2, hidden = params["conv1_channels"], params["conv2_channels"], params["hidden_units"]
    channels, _, width = spec.input_shape
    return nn.Sequential(
        nn.Conv2d(channels, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4 -> 2x2
        nn.Flatten(),
        nn.Linear(c2 * (width // 4) ** 2, hidden),
        nn.ReLU(),
        nn.Linear(hidden, spec.num_classes),
    )


if __name__ == "__main__":
    run(TorchFramework(build_model))
