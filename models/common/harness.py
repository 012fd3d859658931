"""The command line every model's training module exposes, shared by both frameworks.

A model's `train.py` defines `build_model(config, spec)` and ends with
`run(<Framework>(build_model))`. Pants runs it as one cached build step:

    python -m models.<name>.train build --config C --dataset D --dataset-sha256 S --out out/

which trains, writes the checkpoint to `out/train/`, then evaluates and exports that checkpoint,
as read back from disk, into `out/evaluate/` and `out/export/`. One interpreter for the three
steps: importing the framework costs more than training a small model, and evaluate and export
depend on nothing that training does not (their only other input is the checkpoint). Each step
also runs alone, on a checkpoint:

    python -m models.<name>.train train    --config C --dataset D --dataset-sha256 S --out train/
    python -m models.<name>.train evaluate --config C --dataset D --checkpoint train/ --out eval/
    python -m models.<name>.train export   --config C --dataset D --checkpoint train/ --out export/

Each command writes only into its `--out` directory, and only once all of it has succeeded, so a
failed step never leaves a half-written output behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.common.config import ConfigError, TrainingConfig, load_config
from models.common.datasets import (
    DatasetError,
    Split,
    StreamedFeatures,
    load_dataset,
    split_dataset,
)
from models.common.metrics import classification_metrics
from models.common.onnx_export import ExportError, canonicalize, compare_outputs, signature_of
from models.common.resources import require_resources

# The exported model must agree with the framework's own outputs on the test split this closely.
EXPORT_TOLERANCE = 1e-4
INPUT_NAME = "input"
OUTPUT_NAMES = ("probabilities", "predicted_class")


@dataclass(frozen=True)
class ModelSpec:
    """What `build_model` may know about the data: shapes, classes and the training features."""

    input_shape: tuple[int, ...]  # one example, in the framework's layout
    num_classes: int
    # In the framework's layout, e.g. for normalisation statistics; streamed for a large dataset.
    train_features: np.ndarray | StreamedFeatures


class Framework(ABC):
    """One framework's way to train, checkpoint, predict and export a model."""

    name: str

    @abstractmethod
    def prepare(self, features: np.ndarray) -> np.ndarray:
        """Puts dataset features into the layout the framework's models take (e.g. add channels)."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Makes training deterministic: seeds, deterministic kernels, one thread."""

    @abstractmethod
    def train(self, config: TrainingConfig, spec: ModelSpec, split: Split) -> tuple[Any, dict]:
        """Returns the trained model and a summary (losses, validation accuracy per epoch)."""

    @abstractmethod
    def save(self, model: Any, directory: Path) -> None: ...

    @abstractmethod
    def load(self, config: TrainingConfig, spec: ModelSpec, directory: Path) -> Any: ...

    @abstractmethod
    def predict_proba(self, model: Any, features: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def to_onnx(self, model: Any, spec: ModelSpec, directory: Path):
        """Returns an ONNX ModelProto whose outputs are (probabilities, predicted class)."""

    @abstractmethod
    def library_versions(self) -> dict[str, str]: ...


class StepError(Exception):
    """A training step failed for a reason the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class StepInputs:
    config: TrainingConfig
    split: Split
    spec: ModelSpec


def load_inputs(
    framework: Framework, config_path: Path, dataset_path: Path, dataset_sha256: str | None = None
) -> StepInputs:
    """Config, seeded split and model spec, exactly as every step (and the model tests) see them."""
    config = load_config(config_path)
    framework.seed(config.seed)
    dataset = load_dataset(dataset_path, dataset_sha256)
    split = split_dataset(
        dataset,
        seed=config.seed,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
    )
    features = split.train.features
    train_features = (
        features.transformed(framework.prepare)
        if isinstance(features, StreamedFeatures)
        else framework.prepare(features)
    )
    spec = ModelSpec(tuple(train_features.shape[1:]), dataset.num_classes, train_features)
    return StepInputs(config, split, spec)


def _load_inputs(framework: Framework, args: argparse.Namespace) -> StepInputs:
    return load_inputs(framework, args.config, args.dataset, getattr(args, "dataset_sha256", None))


def _reseeded(framework: Framework, inputs: StepInputs) -> StepInputs:
    """The inputs of a step that follows another in the same interpreter, seeded as if alone."""
    framework.seed(inputs.config.seed)
    return inputs


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _train(framework: Framework, inputs: StepInputs, args: argparse.Namespace, out: Path) -> None:
    require_resources(os.environ)
    started = time.perf_counter()
    model, summary = framework.train(inputs.config, inputs.spec, inputs.split)
    seconds = time.perf_counter() - started
    framework.save(model, out)
    _write_json(
        out / "training.json",
        {
            "framework": framework.name,
            "seconds": round(seconds, 3),
            "epochs": inputs.config.epochs,
            "seed": inputs.config.seed,
            "validation_fraction": inputs.config.validation_fraction,
            "test_fraction": inputs.config.test_fraction,
            "train_samples": len(inputs.split.train),
            "summary": summary,
            "libraries": framework.library_versions(),
        },
    )
    print(f"trained in {seconds:.2f}s: {json.dumps(summary.get('final', {}))}")


def _evaluate(
    framework: Framework, inputs: StepInputs, args: argparse.Namespace, out: Path
) -> None:
    model = framework.load(inputs.config, inputs.spec, Path(args.checkpoint))
    test = inputs.split.test
    probabilities = framework.predict_proba(model, framework.prepare(test.features))
    metrics = classification_metrics(test.labels, probabilities.argmax(axis=1), test.class_names)
    _write_json(out / "metrics.json", metrics)
    print(f"test accuracy {metrics['accuracy']:.4f} on {metrics['samples']} samples")


def _export(framework: Framework, inputs: StepInputs, args: argparse.Namespace, out: Path) -> None:
    model = framework.load(inputs.config, inputs.spec, Path(args.checkpoint))
    features = framework.prepare(inputs.split.test.features)
    expected = framework.predict_proba(model, features)
    proto = canonicalize(
        framework.to_onnx(model, inputs.spec, out),
        input_names=(INPUT_NAME,),
        output_names=OUTPUT_NAMES,
    )
    onnx_bytes = proto.SerializeToString()
    comparison = compare_outputs(onnx_bytes, features, expected, tolerance=EXPORT_TOLERANCE)
    (out / "model.onnx").write_bytes(onnx_bytes)
    _write_json(
        out / "export.json",
        {
            "signature": signature_of(proto),
            "class_names": list(inputs.split.test.class_names),
            "max_abs_diff": comparison.max_abs_diff,
            "tolerance": EXPORT_TOLERANCE,
            "verified_samples": int(len(features)),
            "opset": int(max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))),
        },
    )
    print(f"exported; ONNX Runtime vs {framework.name}: max abs diff {comparison.max_abs_diff:.3g}")


def _build(framework: Framework, inputs: StepInputs, args: argparse.Namespace, out: Path) -> None:
    for step in ("train", "evaluate", "export"):
        (out / step).mkdir(mode=0o755)
    _train(framework, inputs, args, out / "train")
    args.checkpoint = out / "train"
    _evaluate(framework, _reseeded(framework, inputs), args, out / "evaluate")
    _export(framework, _reseeded(framework, inputs), args, out / "export")


_STEPS = {"build": _build, "train": _train, "evaluate": _evaluate, "export": _export}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train, evaluate or export this model.")
    sub = parser.add_subparsers(dest="step", required=True)
    for step in _STEPS:
        p = sub.add_parser(step)
        p.add_argument("--config", type=Path, required=True)
        p.add_argument("--dataset", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
        if step in ("build", "train"):
            p.add_argument("--dataset-sha256", required=True)
        else:
            p.add_argument("--checkpoint", type=Path, required=True)
    return parser


def run(framework: Framework, argv: list[str] | None = None) -> None:
    """Runs one step; its outputs appear in `--out` only if the whole step succeeded.

    From the command line (`argv` None), a successful step then ends the process at once: the
    interpreter's teardown of torch or TensorFlow costs ~0.5 CPU s, a sixth of a small model's
    build, and frees nothing a finished process needs. Every output is already closed then."""
    _run(framework, argv)
    if argv is None:
        _exit_without_teardown()


def _exit_without_teardown() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run(framework: Framework, argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"error: --out {out} is not empty")
    staging = Path(
        tempfile.mkdtemp(prefix=f".{args.step}-", dir=out.parent if out.parent.exists() else None)
    )
    staging.chmod(0o755)
    try:
        _STEPS[args.step](framework, _load_inputs(framework, args), args, staging)
        if out.exists():
            out.rmdir()
        shutil.move(str(staging), str(out))
    except (ConfigError, DatasetError, ExportError, StepError) as e:
        sys.exit(f"error: {args.step} failed: {e}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
