"""Checks that a packaged model artifact is what its `model.json` says it is.

Used by each model's artifact test, which gets the artifact from `pants package` through
`runtime_package_dependencies`: so the test also fails when the model fails its gate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from models.common.datasets import load_dataset, split_dataset
from models.common.metrics import classification_metrics

_NUMPY_DTYPES = {"FP32": np.float32, "INT64": np.int64}


def load_artifact(directory: Path) -> tuple[dict, bytes]:
    directory = Path(directory)
    description = json.loads((directory / "model.json").read_text())
    return description, (directory / description["artifact"]["file"]).read_bytes()


def check_artifact(directory: Path, *, expected_name: str, expected_framework: str) -> dict:
    """Digest, signature, metrics and gate of one artifact; returns its model.json."""
    import onnxruntime

    description, onnx_bytes = load_artifact(directory)
    assert description["name"] == expected_name
    assert description["framework"] == expected_framework
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    assert description["version"] == digest == description["artifact"]["sha256"]
    assert description["artifact"]["size"] == len(onnx_bytes)

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    signature = description["signature"]
    for declared, actual in zip(signature["inputs"], session.get_inputs(), strict=True):
        assert declared["name"] == actual.name
        assert [d if isinstance(d, int) else -1 for d in actual.shape] == declared["shape"]
    assert [o["name"] for o in signature["outputs"]] == [o.name for o in session.get_outputs()]

    # Recompute the test split from the recorded dataset and seed, and re-measure the metrics
    # with the exported model itself: they must equal what the evaluation step recorded.
    dataset = load_dataset(Path(description["dataset"]["file"]), description["dataset"]["sha256"])
    training = description["training"]
    test = split_dataset(
        dataset,
        seed=training["seed"],
        validation_fraction=training["validation_fraction"],
        test_fraction=training["test_fraction"],
    ).test
    shape = [len(test) if d == -1 else d for d in signature["inputs"][0]["shape"]]
    features = test.features.reshape(shape).astype(
        _NUMPY_DTYPES[signature["inputs"][0]["datatype"]]
    )
    probabilities, predicted = session.run(None, {signature["inputs"][0]["name"]: features})
    assert probabilities.shape == (len(test), dataset.num_classes)
    assert predicted.dtype == _NUMPY_DTYPES[signature["outputs"][1]["datatype"]]
    measured = classification_metrics(test.labels, predicted, dataset.class_names)
    recorded = description["metrics"]
    assert measured["confusion_matrix"] == recorded["confusion_matrix"]
    assert measured["accuracy"] == recorded["accuracy"]
    for metric, threshold in description["thresholds"].items():
        assert recorded[metric] >= threshold, f"{metric} {recorded[metric]} < {threshold}"
    assert description["export"]["max_abs_diff"] <= description["export"]["tolerance"]
    return description
