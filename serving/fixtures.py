"""Small artifacts for tests and the benchmark: a seeded linear softmax classifier built with
onnx.helper, written in the artifact format the `ml_model` packaging produces."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIGITS_INPUT_SHAPE = (-1, 1, 8, 8)


def classifier_graph(
    input_shape: tuple[int, ...] = DIGITS_INPUT_SHAPE,
    classes: int = 10,
    *,
    seed: int = 0,
    slow_matmul: int = 0,
) -> onnx.ModelProto:
    """input -> flatten -> linear -> softmax = `probabilities`, argmax = `predicted_class`.

    `slow_matmul=N` adds an N x N matrix product that depends on the input and contributes zero,
    so each call takes measurably long (for shutdown tests) without changing the results.
    """
    features = math.prod(input_shape[1:])
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(features, classes)).astype(np.float32)
    bias = rng.normal(size=(classes,)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    initializers = [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")]
    if slow_matmul:
        initializers += [
            numpy_helper.from_array(np.array([slow_matmul, slow_matmul], np.int64), "big_shape"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ]
        nodes += [
            helper.make_node("ReduceSum", ["flat"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "one"], ["unit"]),
            helper.make_node("Expand", ["unit", "big_shape"], ["big"]),
            helper.make_node("MatMul", ["big", "big"], ["square"]),
            helper.make_node("ReduceSum", ["square"], ["square_total"], keepdims=0),
            helper.make_node("Mul", ["square_total", "zero"], ["zero_again"]),
            helper.make_node("Add", ["logits", "zero_again"], ["final_logits"]),
        ]
    logits = "final_logits" if slow_matmul else "logits"
    nodes += [
        helper.make_node("Softmax", [logits], ["probabilities"], axis=1),
        helper.make_node("ArgMax", [logits], ["predicted_class"], axis=1, keepdims=0),
    ]
    batch_dims = ["batch" if d == -1 else d for d in input_shape]
    graph = helper.make_graph(
        nodes,
        "fixture_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, batch_dims)],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("predicted_class", TensorProto.INT64, ["batch"]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def signature(input_shape: tuple[int, ...], classes: int) -> dict:
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(input_shape)}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "predicted_class", "datatype": "INT64", "shape": [-1]},
        ],
    }


def write_artifact(
    directory: str | Path,
    name: str = "fixture_digits",
    input_shape: tuple[int, ...] = DIGITS_INPUT_SHAPE,
    classes: int = 10,
    *,
    seed: int = 0,
    slow_matmul: int = 0,
) -> Path:
    """Writes `model.onnx` and a matching `model.json` into `directory`; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = classifier_graph(input_shape, classes, seed=seed, slow_matmul=slow_matmul)
    blob = data.SerializeToString()
    (directory / "model.onnx").write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    meta = {
        "format_version": 1,
        "name": name,
        "address": f"tests/fixtures:{name}",
        "framework": "onnx",
        "version": digest,
        "artifact": {"file": "model.onnx", "format": "onnx", "sha256": digest, "size": len(blob)},
        "signature": signature(input_shape, classes),
        "class_names": [str(i) for i in range(classes)],
    }
    (directory / "model.json").write_text(json.dumps(meta, indent=2))
    return directory
