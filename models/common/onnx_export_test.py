import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.common.onnx_export import (
    ExportError,
    canonicalize,
    compare_outputs,
    signature_of,
)

NAMES = {"input_names": ("input",), "output_names": ("probabilities", "predicted_class")}


def _classifier(prefix: str, *, shared_zero: bool, reverse_initializers: bool) -> onnx.ModelProto:
    """x @ W + b -> softmax, argmax; the exporter-chosen parts (names, constant sharing and
    initializer order) vary with the arguments, the computation does not."""
    weights = numpy_helper.from_array(
        np.arange(8, dtype=np.float32).reshape(4, 2) / 10, f"{prefix}W"
    )
    bias = numpy_helper.from_array(np.zeros(2, dtype=np.float32), f"{prefix}b")
    zero = numpy_helper.from_array(np.zeros(2, dtype=np.float32), f"{prefix}z")
    inits = [weights, bias] + ([] if shared_zero else [zero])
    if reverse_initializers:
        inits = inits[::-1]
    second = f"{prefix}b" if shared_zero else f"{prefix}z"
    nodes = [
        helper.make_node(
            "MatMul", [f"{prefix}x", f"{prefix}W"], [f"{prefix}mm"], name=f"{prefix}n1"
        ),
        helper.make_node("Add", [f"{prefix}mm", f"{prefix}b"], [f"{prefix}l0"], name=f"{prefix}n2"),
        helper.make_node("Add", [f"{prefix}l0", second], [f"{prefix}l"], name=f"{prefix}n3"),
        helper.make_node("Softmax", [f"{prefix}l"], [f"{prefix}p"], axis=1, name=f"{prefix}n4"),
        helper.make_node(
            "ArgMax", [f"{prefix}l"], [f"{prefix}c"], axis=1, keepdims=0, name=f"{prefix}n5"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        f"{prefix}graph",
        [helper.make_tensor_value_info(f"{prefix}x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info(f"{prefix}p", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info(f"{prefix}c", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_exporter_naming_and_constant_sharing_do_not_change_the_bytes():
    a = canonicalize(_classifier("a_", shared_zero=True, reverse_initializers=False), **NAMES)
    b = canonicalize(
        _classifier("BiasAdd__49/", shared_zero=False, reverse_initializers=True), **NAMES
    )
    assert a.SerializeToString() == b.SerializeToString()
    assert [i.name for i in a.graph.input] == ["input"]


def test_signature_uses_kserve_datatypes_and_variable_batch():
    model = canonicalize(_classifier("x", shared_zero=True, reverse_initializers=False), **NAMES)
    assert signature_of(model) == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "predicted_class", "datatype": "INT64", "shape": [-1]},
        ],
    }


def test_compare_outputs_accepts_agreement_and_rejects_drift():
    model = canonicalize(_classifier("x", shared_zero=True, reverse_initializers=False), **NAMES)
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    logits = x @ (np.arange(8, dtype=np.float32).reshape(4, 2) / 10)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert (
        compare_outputs(model.SerializeToString(), x, expected, tolerance=1e-5).max_abs_diff < 1e-5
    )
    with pytest.raises(ExportError, match="differ from the framework's by"):
        compare_outputs(model.SerializeToString(), x, expected + 1e-3, tolerance=1e-4)


def test_wrong_number_of_outputs_is_an_export_error():
    model = _classifier("x", shared_zero=True, reverse_initializers=False)
    with pytest.raises(ExportError, match="expected 1 input"):
        canonicalize(model, input_names=("input",), output_names=("probabilities",))
