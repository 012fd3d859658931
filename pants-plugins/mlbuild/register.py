"""Our Pants plugin: ML datasets, models, gRPC stubs, serving images and npm packages as Pants
targets."""

from mlbuild import (
    dataset_fetch,
    dataset_on_demand,
    execution_log,
    grpc_codegen,
    model_dependencies,
    model_listing,
    model_report,
    model_steps,
    model_tailor,
    model_tests,
    package_model,
    ruff_format,
)
from mlbuild.grpc_codegen import GrpcPythonProtoTarget
from mlbuild.npm import rules as npm_rules
from mlbuild.npm.target_types import NpmPackagesTarget
from mlbuild.oci import publish as oci_publish
from mlbuild.oci import rules as oci_rules
from mlbuild.oci.target_types import DebianPackagesTarget, ModelImageTarget
from mlbuild.target_types import MlDatasetTarget, MlModelTarget


def target_types():
    return [
        MlDatasetTarget,
        MlModelTarget,
        GrpcPythonProtoTarget,
        ModelImageTarget,
        DebianPackagesTarget,
        NpmPackagesTarget,
    ]


def rules():
    return [
        *model_dependencies.rules(),
        *model_steps.rules(),
        *dataset_fetch.rules(),
        *dataset_on_demand.rules(),
        *package_model.rules(),
        *model_report.rules(),
        *model_listing.rules(),
        *model_tests.rules(),
        *model_tailor.rules(),
        *grpc_codegen.rules(),
        *ruff_format.rules(),
        *oci_rules.rules(),
        *oci_publish.rules(),
        *npm_rules.rules(),
        *execution_log.rules(),
    ]
