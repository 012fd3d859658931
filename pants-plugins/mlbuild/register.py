"""Our Pants plugin: ML datasets and models as Pants targets, and the rules that build them."""

from mlbuild import grpc_codegen, ruff_format
from mlbuild.grpc_codegen import GrpcPythonProtoTarget
from mlbuild.target_types import MlDatasetTarget, MlModelTarget


def target_types():
    return [MlDatasetTarget, MlModelTarget, GrpcPythonProtoTarget]


def rules():
    return [*ruff_format.rules(), *grpc_codegen.rules()]
