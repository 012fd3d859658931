"""PyTorch side of the training harness: deterministic CPU training and ONNX export.

Nothing here imports `torch._dynamo` (the compiler stack): it costs ~2 s per process, more than
training a small model, and eager CPU training never uses it. `torch.use_deterministic_algorithms`
and every `torch.optim` optimizer import it (to configure or disable compilation), hence
`_enable_deterministic_algorithms` and `Adam` below.
"""

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


def _enable_deterministic_algorithms() -> None:
    """`torch.use_deterministic_algorithms(True)` without the import of the compiler's config
    (it also sets `torch._inductor.config.deterministic`, which only `torch.compile` reads)."""
    set_deterministic = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_deterministic is None:  # a torch without the private setter: the public call
        torch.use_deterministic_algorithms(True)
    else:
        set_deterministic(True)


class Adam:
    """Adam as `torch.optim.Adam(params, lr)` computes it on CPU (its default single-tensor
    path, no weight decay, no amsgrad), step for step bit-identical (tested against it in
    `torch_framework_test.py`), without `torch.optim`'s import of the compiler stack."""

    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.steps = [0] * len(self.params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad, exp_avg, exp_avg_sq = param.grad, self.exp_avgs[i], self.exp_avg_sqs[i]
            self.steps[i] += 1
            # torch.optim counts steps in a float32 tensor and reads them back as a float.
            step = float(self.steps[i])
            exp_avg.lerp_(grad, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1**step)
            denom = (exp_avg_sq.sqrt() / (1 - self.beta2**step) ** 0.5).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


class TorchFramework(Framework):
    name = "torch"

    def __init__(self, build_model: BuildModel) -> None:
        self.build_model = build_model

    def prepare(self, features: np.ndarray) -> np.ndarray:
        # Images (n, h, w) get a channel axis in front, as torch's Conv2d wants (n, c, h, w).
        return features[:, np.newaxis] if features.ndim == 3 else features

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        _enable_deterministic_algorithms()
        torch.set_num_threads(1)

    def train(self, config: TrainingConfig, spec: ModelSpec, split: Split):
        model = self.build_model(config, spec)
        features = spec.train_features
        # A streamed training set (a large dataset) is read and converted a batch at a time.
        x = torch.from_numpy(features) if isinstance(features, np.ndarray) else None
        y = torch.from_numpy(split.train.labels)
        x_val = torch.from_numpy(self.prepare(split.validation.features))
        y_val = split.validation.labels
        optimizer = Adam(model.parameters(), lr=config.learning_rate)
        shuffle = torch.Generator().manual_seed(config.seed)
        history = []
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(features), generator=shuffle)
            total = 0.0
            for start in range(0, len(features), config.batch_size):
                batch = order[start : start + config.batch_size]
                inputs = x[batch] if x is not None else torch.from_numpy(features[batch.numpy()])
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(inputs), y[batch])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            model.eval()
            with torch.no_grad():
                val_probabilities = torch.softmax(model(x_val), dim=1).numpy()
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": total / len(features),
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
