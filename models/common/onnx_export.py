"""Making exported ONNX models byte-reproducible and checking them against the framework.

Exporters name generated nodes with process-wide counters (tf2onnx: `BiasAdd__6` in one process,
`BiasAdd__49` in the next), so the same weights give different bytes. `canonicalize` renames every
node and tensor by its position in the graph, which the exporters emit in a deterministic order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

# ONNX tensor element types as KServe v2 datatype names.
_KSERVE_DATATYPES = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
}


class ExportError(Exception):
    """The exported model is malformed or disagrees with the framework's own outputs."""


def canonicalize(
    model: onnx.ModelProto, *, input_names: tuple[str, ...], output_names: tuple[str, ...]
) -> onnx.ModelProto:
    """Renames graph inputs/outputs to the given names and everything else by position."""
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializer_names]
    if len(real_inputs) != len(input_names) or len(graph.output) != len(output_names):
        raise ExportError(
            f"exported graph has inputs {[i.name for i in real_inputs]} and outputs "
            f"{[o.name for o in graph.output]}; expected {len(input_names)} input(s) and "
            f"{len(output_names)} output(s)"
        )
    _merge_identical_initializers(graph)
    renames: dict[str, str] = {}
    for value, name in zip(real_inputs, input_names):
        renames[value.name] = name
    for value, name in zip(graph.output, output_names):
        renames[value.name] = name
    # Initializers are named, and ordered, by their first use in the (topologically ordered) nodes.
    first_use = {}
    for node in graph.node:
        for name in node.input:
            first_use.setdefault(name, len(first_use))
    ordered = sorted(graph.initializer, key=lambda i: first_use.get(i.name, len(first_use)))
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    for index, init in enumerate(graph.initializer):
        renames.setdefault(init.name, f"w{index}")
    counter = 0
    for node in graph.node:
        for name in node.output:
            if name and name not in renames:
                renames[name] = f"t{counter}"
                counter += 1

    def rename(name: str) -> str:
        return renames.get(name, name)

    for index, node in enumerate(graph.node):
        node.name = f"n{index}_{node.op_type}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        if any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            raise ExportError(
                f"node {node.name} has a subgraph; canonical naming does not support it"
            )
    for collection in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in collection:
            item.name = rename(item.name)
    # value_info holds intermediate shape annotations: sorted so their order is canonical too.
    infos = sorted(graph.value_info, key=lambda v: v.name)
    del graph.value_info[:]
    graph.value_info.extend(infos)
    graph.name = "model"
    graph.doc_string = ""
    model.doc_string = ""
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    return model


def _merge_identical_initializers(graph: onnx.GraphProto) -> None:
    """Exporters may or may not share one constant between two uses; always share it."""
    keep: dict[bytes, str] = {}
    alias: dict[str, str] = {}
    unique = []
    for init in graph.initializer:
        content = onnx.TensorProto()
        content.CopyFrom(init)
        content.name = ""
        key = content.SerializeToString(deterministic=True)
        if key in keep:
            alias[init.name] = keep[key]
        else:
            keep[key] = init.name
            unique.append(init)
    if not alias:
        return
    del graph.initializer[:]
    graph.initializer.extend(unique)
    for node in graph.node:
        node.input[:] = [alias.get(n, n) for n in node.input]
    kept_inputs = [i for i in graph.input if i.name not in alias]
    del graph.input[:]
    graph.input.extend(kept_inputs)


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
    ]


def signature_of(model: onnx.ModelProto) -> dict:
    """The model's inputs and outputs as KServe v2 names, datatypes and shapes (-1 = variable)."""
    initializer_names = {init.name for init in model.graph.initializer}

    def describe(value: onnx.ValueInfoProto) -> dict:
        elem_type = value.type.tensor_type.elem_type
        if elem_type not in _KSERVE_DATATYPES:
            raise ExportError(f"tensor {value.name} has unsupported element type {elem_type}")
        return {"name": value.name, "datatype": _KSERVE_DATATYPES[elem_type], "shape": _dims(value)}

    return {
        "inputs": [describe(v) for v in model.graph.input if v.name not in initializer_names],
        "outputs": [describe(v) for v in model.graph.output],
    }


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float


def compare_outputs(
    onnx_bytes: bytes, features: np.ndarray, expected_probabilities: np.ndarray, *, tolerance: float
) -> Comparison:
    """Runs the ONNX model with ONNX Runtime and checks it against the framework's probabilities."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    probabilities, predicted = session.run(None, {input_name: features.astype(np.float32)})
    if probabilities.shape != expected_probabilities.shape:
        raise ExportError(
            f"ONNX probabilities have shape {probabilities.shape}, the framework's "
            f"{expected_probabilities.shape}"
        )
    max_abs_diff = float(np.max(np.abs(probabilities - expected_probabilities)))
    if not max_abs_diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime's outputs differ from the framework's by {max_abs_diff:.3g} "
            f"(tolerance {tolerance:g}) on the test split"
        )
    if not np.array_equal(predicted, probabilities.argmax(axis=1)):
        raise ExportError(
            "the exported predicted_class output disagrees with argmax(probabilities)"
        )
    return Comparison(max_abs_diff)
