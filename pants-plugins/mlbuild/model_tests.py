"""`pants test` on an `ml_model`: the standard checks every model gets, with no test file of its own.

The checks (models/common/model_checks.py by default) run in the model's own venv against its
packaged artifact: the model builds, gives one probability row per example, its loss decreases
on one batch, its config is validated, and the artifact in `dist/` is what its model.json says
(digest, signature, metrics re-measured with ONNX Runtime, the gate). A new model's directory
therefore holds only its `train.py`, `config.json` and BUILD file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pants.backend.python.dependency_inference.module_mapper import (
    PythonModuleOwners,
    PythonModuleOwnersRequest,
)
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
)
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.core.goals.test import TestFieldSet, TestRequest, TestResult, TestSubsystem
from pants.engine.fs import Digest, MergeDigests
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.option.option_types import SkipOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.strutil import help_text

from mlbuild.dataset_on_demand import ProcessWithDataset
from mlbuild.model_steps import ModelRunner, ModelStepsRequest
from mlbuild.package_model import MlModelFieldSet


class ModelChecksSubsystem(Subsystem):
    options_scope = "model-checks"
    name = "model checks"
    help = "The standard checks `pants test` runs for every `ml_model` target."

    skip = SkipOption("test")
    module = StrOption(
        default="models.common.model_checks",
        help=help_text(
            """
            The module that runs the checks, as `python -m <module> --framework F --model-module M
            --name N --config C --dataset D --artifact DIR`; it must exist in every model resolve.
            """
        ),
    )


class ModelChecksModuleMissing(Exception):
    """The checks module is not owned by exactly one target of the model's resolve."""


@dataclass(frozen=True)
class MlModelTestFieldSet(MlModelFieldSet, TestFieldSet):
    """The package's fields: the checks run against the package."""

    def package_field_set(self) -> MlModelFieldSet:
        return MlModelFieldSet(
            *(getattr(self, field.name) for field in dataclasses.fields(MlModelFieldSet))
        )


class MlModelTestRequest(TestRequest):
    tool_subsystem = ModelChecksSubsystem
    field_set_type = MlModelTestFieldSet


@rule(desc="Run an ml_model's standard checks", level=LogLevel.DEBUG)
async def run_model_checks(
    batch: MlModelTestRequest.Batch[MlModelTestFieldSet, Any],
    test_subsystem: TestSubsystem,
    checks: ModelChecksSubsystem,
) -> TestResult:
    field_set = batch.single_element
    package_field_set = field_set.package_field_set()
    resolve = field_set.resolve.resolve_name(field_set.framework.value)
    runner, package, owners = await MultiGet(
        Get(ModelRunner, ModelStepsRequest, package_field_set.steps_request()),
        Get(BuiltPackage, PackageFieldSet, package_field_set),
        Get(PythonModuleOwners, PythonModuleOwnersRequest(checks.module, resolve=resolve)),
    )
    if len(owners.unambiguous) != 1:
        raise ModelChecksModuleMissing(
            f"{field_set.address}: `[model-checks].module` {checks.module!r} must be owned by "
            f"exactly one target of the resolve {resolve!r}; found "
            f"{sorted(str(a) for a in (*owners.unambiguous, *owners.ambiguous)) or 'none'}."
        )
    transitive = await Get(TransitiveTargets, TransitiveTargetsRequest(owners.unambiguous))
    check_sources = await Get(PythonSourceFiles, PythonSourceFilesRequest(transitive.closure))
    input_digest = await Get(
        Digest,
        MergeDigests(
            (runner.input_digest, check_sources.source_files.snapshot.digest, package.digest)
        ),
    )
    process = await Get(
        Process,
        VenvPexProcess,
        runner.module_process(
            checks.module,
            (
                "--framework",
                field_set.framework.value,
                "--model-module",
                runner.module,
                "--name",
                package_field_set.model_name,
                "--config",
                runner.config_path,
                "--dataset",
                runner.inputs.dataset_path,
                "--artifact",
                package_field_set.artifact_dir,
            ),
            input_digest,
            f"Run the standard checks of {field_set.address}",
        ),
    )
    result = await Get(FallibleProcessResult, ProcessWithDataset(process, runner.dataset))
    return TestResult.from_fallible_process_result(
        result, address=field_set.address, output_setting=test_subsystem.output
    )


def rules():
    return [*collect_rules(), *MlModelTestRequest.rules()]
