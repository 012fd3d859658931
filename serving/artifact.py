"""Loading a model artifact directory (`model.onnx` + `model.json`) and checking it before serving.

A model is served only when its file matches the digest and size recorded in `model.json` and the
ONNX graph's inputs and outputs match the declared signature. Any problem raises `ArtifactError`
naming the file and what is wrong, so the server refuses to start instead of serving a bad model.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# KServe v2 datatype name -> numpy dtype (little-endian, the protocol's raw byte order).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

# onnxruntime's type strings for the same datatypes.
ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}

SUPPORTED_FORMAT_VERSION = 1


class ArtifactError(Exception):
    """An artifact that must not be served; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPES[self.datatype]


@dataclass(frozen=True)
class Artifact:
    """A verified artifact: its metadata and an onnxruntime session over its graph."""

    directory: Path
    name: str
    version: str
    framework: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    class_names: tuple[str, ...]
    session: ort.InferenceSession


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ArtifactError(path, f"missing required field '{where}{key}'")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArtifactError(path, f"field '{where}{key}' has the wrong type: {value!r}")
    return value


def _tensor_specs(signature: dict, key: str, path: Path) -> tuple[TensorSpec, ...]:
    entries = _require(signature, key, list, "signature.", path)
    if not entries:
        raise ArtifactError(path, f"signature.{key} is empty")
    specs = []
    for i, entry in enumerate(entries):
        where = f"signature.{key}[{i}]."
        name = _require(entry, "name", str, where, path)
        datatype = _require(entry, "datatype", str, where, path)
        shape = _require(entry, "shape", list, where, path)
        if datatype not in DATATYPES:
            raise ArtifactError(
                path, f"{where}datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
            )
        if not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0) for d in shape
        ):
            raise ArtifactError(
                path, f"{where}shape {shape!r} must be a list of -1 or positive ints"
            )
        specs.append(TensorSpec(name, datatype, tuple(shape)))
    if len({s.name for s in specs}) != len(specs):
        raise ArtifactError(path, f"signature.{key} names a tensor twice")
    return tuple(specs)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_graph(
    declared: tuple[TensorSpec, ...], actual: list[ort.NodeArg], kind: str, path: Path
) -> None:
    graph = {arg.name: arg for arg in actual}
    names = [spec.name for spec in declared]
    if sorted(names) != sorted(graph):
        raise ArtifactError(
            path,
            f"the graph's {kind} are {sorted(graph)}, but model.json declares {sorted(names)}",
        )
    for spec in declared:
        arg = graph[spec.name]
        datatype = ORT_TYPES.get(arg.type, arg.type)
        if datatype != spec.datatype:
            raise ArtifactError(
                path,
                f"{kind[:-1]} {spec.name!r} has datatype {datatype} in the graph, "
                f"but model.json declares {spec.datatype}",
            )
        graph_shape = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
        if graph_shape != list(spec.shape):
            raise ArtifactError(
                path,
                f"{kind[:-1]} {spec.name!r} has shape {graph_shape} in the graph, "
                f"but model.json declares {list(spec.shape)}",
            )


def load_artifact(directory: str | Path, *, intra_op_threads: int = 1) -> Artifact:
    """Read, verify and open an artifact directory, or raise `ArtifactError`."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not directory.is_dir():
        raise ArtifactError(directory, "not a directory")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(meta_path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(meta_path, f"not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(meta_path, "must hold a JSON object")

    format_version = _require(meta, "format_version", int, "", meta_path)
    if format_version != SUPPORTED_FORMAT_VERSION:
        raise ArtifactError(
            meta_path,
            f"format_version {format_version} is not supported (expected {SUPPORTED_FORMAT_VERSION})",
        )
    name = _require(meta, "name", str, "", meta_path)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ArtifactError(meta_path, f"name {name!r} must match [A-Za-z0-9_.-]+")
    version = _require(meta, "version", str, "", meta_path)
    artifact = _require(meta, "artifact", dict, "", meta_path)
    file_name = _require(artifact, "file", str, "artifact.", meta_path)
    sha256 = _require(artifact, "sha256", str, "artifact.", meta_path)
    size = _require(artifact, "size", int, "artifact.", meta_path)
    if _require(artifact, "format", str, "artifact.", meta_path) != "onnx":
        raise ArtifactError(meta_path, f"artifact.format {artifact['format']!r} is not 'onnx'")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ArtifactError(meta_path, f"artifact.sha256 {sha256!r} is not 64 lowercase hex digits")
    if version != sha256:
        raise ArtifactError(
            meta_path, f"version {version!r} differs from artifact.sha256 {sha256!r}"
        )
    if "/" in file_name or file_name in ("", ".", ".."):
        raise ArtifactError(meta_path, f"artifact.file {file_name!r} must be a plain file name")
    signature = _require(meta, "signature", dict, "", meta_path)
    inputs = _tensor_specs(signature, "inputs", meta_path)
    outputs = _tensor_specs(signature, "outputs", meta_path)
    class_names = meta.get("class_names", [])
    framework = meta.get("framework", "")

    model_path = directory / file_name
    if not model_path.is_file():
        raise ArtifactError(model_path, "file not found (named by model.json artifact.file)")
    actual_size = model_path.stat().st_size
    if actual_size != size:
        raise ArtifactError(
            model_path,
            f"size is {actual_size} bytes, but model.json records {size} (truncated or replaced?)",
        )
    actual_sha = _sha256(model_path)
    if actual_sha != sha256:
        raise ArtifactError(
            model_path, f"sha256 is {actual_sha}, but model.json records {sha256} (corrupted?)"
        )

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises several exception types for bad graphs.
        raise ArtifactError(model_path, f"onnxruntime cannot load the graph: {e}") from None
    _check_graph(inputs, session.get_inputs(), "inputs", model_path)
    _check_graph(outputs, session.get_outputs(), "outputs", model_path)
    return Artifact(
        directory=directory,
        name=name,
        version=version,
        framework=str(framework),
        inputs=inputs,
        outputs=outputs,
        class_names=tuple(str(c) for c in class_names),
        session=session,
    )
