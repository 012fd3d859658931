"""Decoding Open Inference Protocol requests into numpy arrays, checked against a model's signature,
and encoding outputs as raw little-endian bytes.

Every rejected request raises `RequestError` with a gRPC status code and a message that says what
was expected and what was received.
"""

from __future__ import annotations

import math

import grpc
import numpy as np

from serving.artifact import Artifact, TensorSpec
from serving.proto import open_inference_grpc_pb2 as pb

# The `InferTensorContents` field holding each datatype's typed values.
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _check_shape(spec: TensorSpec, shape: list[int], max_batch_size: int) -> None:
    expected = list(spec.shape)
    if len(shape) != len(expected) or any(
        want != -1 and got != want for want, got in zip(expected, shape)
    ):
        raise _invalid(f"input {spec.name!r}: expected shape {expected}, received {shape}")
    if any(d < 0 for d in shape):
        raise _invalid(f"input {spec.name!r}: shape {shape} has a negative dimension")
    if expected[0] == -1 and not 1 <= shape[0] <= max_batch_size:
        raise _invalid(
            f"input {spec.name!r}: expected a batch size of 1 to {max_batch_size}, "
            f"received {shape[0]} (shape {shape})"
        )


def _decode_typed(spec: TensorSpec, tensor: pb.ModelInferRequest.InferInputTensor, count: int):
    field = CONTENTS_FIELDS.get(spec.datatype)
    if field is None:
        raise _invalid(
            f"input {spec.name!r}: datatype {spec.datatype} must be sent in raw_input_contents"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise _invalid(
            f"input {spec.name!r}: expected {count} elements in contents.{field} for shape "
            f"{list(tensor.shape)}, received {len(values)}"
        )
    try:
        return np.array(values, dtype=spec.dtype)
    except OverflowError as e:
        raise _invalid(f"input {spec.name!r}: a value does not fit {spec.datatype}: {e}") from None


def _decode_raw(spec: TensorSpec, raw: bytes, count: int, shape: list[int]) -> np.ndarray:
    expected = count * spec.dtype.itemsize
    if len(raw) != expected:
        raise _invalid(
            f"input {spec.name!r}: expected {expected} bytes of raw_input_contents "
            f"({count} x {spec.datatype}, shape {shape}), received {len(raw)}"
        )
    return np.frombuffer(raw, dtype=spec.dtype)


class ModelCodec:
    """One model's request decoding and response encoding, with the signature's lookups built
    once (they used to be rebuilt on every request)."""

    def __init__(self, artifact: Artifact, max_batch_size: int) -> None:
        self.artifact = artifact
        self.max_batch_size = max_batch_size
        self._inputs = {spec.name: spec for spec in artifact.inputs}
        self._input_names = sorted(self._inputs)
        self._outputs = {spec.name: spec for spec in artifact.outputs}
        self._all_outputs = list(artifact.outputs)
        # Native-endian dtypes: `astype` to them is free on little-endian hosts.
        self._native = {spec.name: spec.dtype.newbyteorder("=") for spec in artifact.inputs}

    def decode_inputs(self, request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
        """The request's inputs as native-endian arrays in the signature's shapes."""
        declared = self._inputs
        raw = request.raw_input_contents
        tensors = request.inputs
        if raw and len(raw) != len(tensors):
            raise _invalid(
                f"expected one raw_input_contents entry per input ({len(tensors)}), "
                f"received {len(raw)}"
            )
        arrays: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(tensors):
            name = tensor.name
            spec = declared.get(name)
            if spec is None:
                raise _invalid(f"unknown input {name!r}: expected inputs {self._input_names}")
            if name in arrays:
                raise _invalid(f"input {name!r} is given twice")
            if tensor.datatype != spec.datatype:
                raise _invalid(
                    f"input {name!r}: expected datatype {spec.datatype}, "
                    f"received {tensor.datatype!r}"
                )
            shape = list(tensor.shape)
            _check_shape(spec, shape, self.max_batch_size)
            count = math.prod(shape)
            if raw:
                if tensor.HasField("contents"):
                    raise _invalid(
                        f"input {name!r} has typed contents, but the request also has "
                        "raw_input_contents; use one or the other"
                    )
                flat = _decode_raw(spec, raw[i], count, shape)
            else:
                flat = _decode_typed(spec, tensor, count)
            arrays[name] = flat.reshape(shape).astype(self._native[name], copy=False)
        if len(arrays) != len(declared):
            missing = [name for name in declared if name not in arrays]
            raise _invalid(f"missing input(s) {missing}: expected inputs {self._input_names}")
        if len(arrays) > 1:
            batches = {a.shape[0] for a in arrays.values()}
            if len(batches) > 1:
                raise _invalid(f"inputs disagree on the batch size: {sorted(batches)}")
        return arrays

    def requested_outputs(self, request: pb.ModelInferRequest) -> list[TensorSpec]:
        if not request.outputs:
            return self._all_outputs
        specs = []
        for out in request.outputs:
            spec = self._outputs.get(out.name)
            if spec is None:
                raise _invalid(
                    f"unknown output {out.name!r}: expected outputs {sorted(self._outputs)}"
                )
            specs.append(spec)
        return specs

    def encode_response(
        self, request_id: str, specs: list[TensorSpec], outputs: dict[str, np.ndarray]
    ) -> pb.ModelInferResponse:
        artifact = self.artifact
        tensors = []
        contents = []
        for spec in specs:
            array = outputs[spec.name]
            tensors.append(
                pb.ModelInferResponse.InferOutputTensor(
                    name=spec.name, datatype=spec.datatype, shape=array.shape
                )
            )
            contents.append(array.astype(spec.dtype, copy=False).tobytes())
        return pb.ModelInferResponse(
            model_name=artifact.name,
            model_version=artifact.version,
            id=request_id,
            outputs=tensors,
            raw_output_contents=contents,
        )
