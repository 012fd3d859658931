"""Resolving an `ml_model`'s entry point and dataset to targets, and inferring them as dependencies.

Because the entry point's `python_source` is a dependency of the model, everything it imports is
too: `--changed-dependents=transitive` and the training cache key both follow the import graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonResolveField, PythonSourceField
from pants.engine.addresses import Address, Addresses, AddressInput
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    InferDependenciesRequest,
    InferredDependencies,
    InvalidFieldException,
    Targets,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule

from mlbuild.dataset_fetch import dataset_file_path
from mlbuild.target_types import (
    DatasetSha256Field,
    DatasetSourceField,
    DatasetUrlField,
    ModelDatasetField,
    ModelDependenciesField,
    ModelEntryPointField,
    ModelFrameworkField,
    ModelResolveField,
)


@dataclass(frozen=True)
class ModelInputsRequest:
    address: Address
    framework: ModelFrameworkField
    entry_point: ModelEntryPointField
    dataset: ModelDatasetField
    resolve: ModelResolveField


@dataclass(frozen=True)
class ModelInputs:
    """The targets behind a model's `entry_point` and `dataset` fields, validated."""

    resolve: str
    entry_point_address: Address
    entry_point_path: str
    dataset_address: Address
    dataset_path: str
    dataset_sha256: str
    dataset_url: str | None  # None: committed to the repository


@rule(desc="Resolve an ml_model's entry point and dataset")
async def resolve_model_inputs(
    request: ModelInputsRequest, python_setup: PythonSetup
) -> ModelInputs:
    address = request.address
    resolve = request.resolve.resolve_name(request.framework.value)
    if resolve not in python_setup.resolves:
        raise InvalidFieldException(
            f"The {ModelResolveField.alias!r} field in target {address} is {resolve!r}, which is "
            f"not a resolve in [python].resolves; allowed: {', '.join(sorted(python_setup.resolves))}."
        )

    entry_point_path = (
        f"{address.spec_path}/{request.entry_point.value}"
        if address.spec_path
        else request.entry_point.value
    )
    dataset_input = AddressInput.parse(
        request.dataset.value,
        relative_to=address.spec_path,
        description_of_origin=f"the {ModelDatasetField.alias!r} field of {address}",
    )
    owners, dataset_target = await MultiGet(
        Get(Owners, OwnersRequest((entry_point_path,))),
        Get(
            WrappedTarget,
            WrappedTargetRequest(
                await Get(Address, AddressInput, dataset_input),
                description_of_origin=f"the {ModelDatasetField.alias!r} field of {address}",
            ),
        ),
    )
    candidates = await Get(Targets, Addresses(owners))
    sources = [
        t
        for t in candidates
        if t.has_field(PythonSourceField)
        and t[PythonResolveField].normalized_value(python_setup) == resolve
    ]
    if len(sources) != 1:
        found = ", ".join(str(t.address) for t in candidates) or "none"
        raise InvalidFieldException(
            f"The {ModelEntryPointField.alias!r} field in target {address} is "
            f"{request.entry_point.value!r}: expected exactly one `python_source` in resolve "
            f"{resolve!r} owning {entry_point_path}, found: {found}."
        )

    dataset = dataset_target.target
    if not dataset.has_fields((DatasetSourceField, DatasetSha256Field)):
        raise InvalidFieldException(
            f"The {ModelDatasetField.alias!r} field in target {address} points at "
            f"{dataset.address}, a `{dataset.alias}` target; it must be an `ml_dataset` target."
        )
    return ModelInputs(
        resolve=resolve,
        entry_point_address=sources[0].address,
        entry_point_path=entry_point_path,
        dataset_address=dataset.address,
        dataset_path=dataset_file_path(dataset),
        dataset_sha256=dataset[DatasetSha256Field].value,
        dataset_url=dataset[DatasetUrlField].value,
    )


@dataclass(frozen=True)
class ModelDependencyInferenceFieldSet(FieldSet):
    required_fields = (
        ModelDependenciesField,
        ModelFrameworkField,
        ModelEntryPointField,
        ModelDatasetField,
    )

    dependencies: ModelDependenciesField
    framework: ModelFrameworkField
    entry_point: ModelEntryPointField
    dataset: ModelDatasetField
    resolve: ModelResolveField


class InferModelDependencies(InferDependenciesRequest):
    infer_from = ModelDependencyInferenceFieldSet


@rule(desc="Inferring dependencies of ml_model targets")
async def infer_model_dependencies(request: InferModelDependencies) -> InferredDependencies:
    fs = request.field_set
    inputs = await Get(
        ModelInputs,
        ModelInputsRequest(fs.address, fs.framework, fs.entry_point, fs.dataset, fs.resolve),
    )
    return InferredDependencies([inputs.entry_point_address, inputs.dataset_address])


def rules():
    return [*collect_rules(), UnionRule(InferDependenciesRequest, InferModelDependencies)]
