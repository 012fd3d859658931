"""PyTorch side of the training harness: deterministic CPU training and ONNX export."""

from __future__ import annotations

import io
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from models.common.config import TrainingConfig
from models.common.datasets import Split
from models.common.harness import INPUT_NAME, OUTPUT_NAMES, Framework, ModelSpec, StepError
from models.common.metrics import epoch_metrics

BuildModel = Callable[[TrainingConfig, ModelSpec], nn.Module]


class _WithPredictions(nn.Module):
    """What gets exported: class probabilities and the predicted class from the model's logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return torch.softmax(logits, dim=1), torch.argmax(logits, dim=1)


class TorchFramework(Framework):
    name = "torch"

    def __init__(self, build_model: BuildModel) -> None:
        self.build_model = build_model

    def prepare(self, features: np.ndarray) -> np.ndarray:
        # Images (n, h, w) get a channel axis in front, as torch's Conv2d wants (n, c, h, w).
        return features[:, np.newaxis] if features.ndim == 3 else features

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)

    def train(self, config: TrainingConfig, spec: ModelSpec, split: Split):
        model = self.build_model(config, spec)
        x = torch.from_numpy(spec.train_features)
        y = torch.from_numpy(split.train.labels)
        x_val = torch.from_numpy(self.prepare(split.validation.features))
        y_val = split.validation.labels
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        shuffle = torch.Generator().manual_seed(config.seed)
        history = []
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(x), generator=shuffle)
            total = 0.0
            for start in range(0, len(x), config.batch_size):
                batch = order[start : start + config.batch_size]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            model.eval()
            with torch.no_grad():
                val_probabilities = torch.softmax(model(x_val), dim=1).numpy()
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": total / len(x),
                    **epoch_metrics(y_val, val_probabilities, split.validation.class_names),
                }
            )
        if not np.isfinite(history[-1]["train_loss"]):
            raise StepError(f"training diverged: final loss {history[-1]['train_loss']}")
        return model, {"history": history, "final": history[-1]}

    def save(self, model: nn.Module, directory: Path) -> None:
        torch.save(model.state_dict(), directory / "checkpoint.pt")

    def load(self, config: TrainingConfig, spec: ModelSpec, directory: Path) -> nn.Module:
        model = self.build_model(config, spec)
        state = torch.load(directory / "checkpoint.pt", weights_only=True)
        model.load_state_dict(state)
        return model.eval()

    def predict_proba(self, model: nn.Module, features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(features)), dim=1).numpy()

    def to_onnx(self, model: nn.Module, spec: ModelSpec, directory: Path) -> onnx.ModelProto:
        example = torch.from_numpy(spec.train_features[:2])
        buffer = io.BytesIO()
        torch.onnx.export(
            _WithPredictions(model).eval(),
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                INPUT_NAME: {0: "batch"},
                **{name: {0: "batch"} for name in OUTPUT_NAMES},
            },
            opset_version=17,
            dynamo=False,
        )
        return onnx.load_from_string(buffer.getvalue())

    def library_versions(self) -> dict[str, str]:
        return {p: version(p) for p in ("torch", "numpy", "onnx", "onnxruntime")}
