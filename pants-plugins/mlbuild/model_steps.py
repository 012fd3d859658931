"""Training, evaluation and export of an `ml_model` as one ordinary, cacheable Pants process.

The process's inputs are exactly the model's inputs: its transitive Python sources, its config
file, its dataset file, a PEX of its resolve's locked requirements (which pins the interpreter
through its constraints) and fixed arguments and environment. Pants caches it locally and in a
REAPI remote cache, so a model whose inputs are unchanged never retrains.

Train, evaluate and export run in one interpreter (the harness's `build` command): evaluate and
export read nothing but those same inputs and the checkpoint, so three processes had no finer
cache key than one, and each paid the framework's import, which costs more than a small model's
training. Their outputs stay apart (`train/`, `evaluate/`, `export/`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.pex_from_targets import RequirementsPexRequest
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
)
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import (
    Digest,
    DigestEntries,
    DigestSubset,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import (
    FallibleProcessResult,
    Process,
    ProcessResult,
    ProductDescription,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.source.source_root import SourceRoot, SourceRootRequest
from pants.util.logging import LogLevel

from mlbuild.dataset_on_demand import DatasetInput, DatasetInputRequest, ProcessWithDataset
from mlbuild.model_dependencies import ModelInputs, ModelInputsRequest
from mlbuild.target_types import (
    ModelConfigSourceField,
    ModelDatasetField,
    ModelEntryPointField,
    ModelFrameworkField,
    ModelResolveField,
    ModelResourcesField,
)

# Fixed environment for every step: part of the cache key, so it must not vary by machine.
_STEP_ENV = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

# Where the build process writes `train/`, `evaluate/` and `export/`.
BUILD_OUTPUT_DIR = "model"
STEPS = ("train", "evaluate", "export")

# The model's `resources` field, as the Train step sees it (models/common/resources.py checks the
# machine against it). Only the model's declaration enters the key, never the runner's class:
# every runner that can train the model computes the same key, so shards share the result.
RESOURCES_ENV = "ML_MODEL_RESOURCES"


def train_env(resources: tuple[tuple[str, int], ...]) -> dict[str, str]:
    """The Train step's environment. A model without `resources` keeps the fixed CPU environment
    (its key is unchanged, and a GPU runner trains it on CPU, bitwise as a CPU runner does); a
    model that declares a GPU sees the machine's GPUs, and its declaration is in its key."""
    if not resources:
        return _STEP_ENV
    env = {**_STEP_ENV, RESOURCES_ENV: json.dumps(dict(resources), sort_keys=True)}
    if dict(resources).get("gpu"):
        del env["CUDA_VISIBLE_DEVICES"]
    return env


@dataclass(frozen=True)
class ModelStepsRequest:
    address: Address
    framework: ModelFrameworkField
    entry_point: ModelEntryPointField
    config: ModelConfigSourceField
    dataset: ModelDatasetField
    resolve: ModelResolveField
    resources: ModelResourcesField


@dataclass(frozen=True)
class ModelRunner:
    """The model's training module as a runnable venv, plus every file its steps read.

    The venv holds only the resolve's requirements and has no entry point, so every model of a
    resolve shares one (built once, not once per model), run as `python -m <model module>`.
    """

    address: Address
    inputs: ModelInputs
    venv_pex: VenvPex
    module: str
    input_digest: Digest
    dataset: DatasetInput
    config_path: str
    source_roots: tuple[str, ...]
    lockfile_path: str
    lockfile_sha256: str
    interpreter_constraints: tuple[str, ...]
    resources: tuple[tuple[str, int], ...] = ()

    def build_argv(self) -> tuple[str, ...]:
        return (
            "-m",
            self.module,
            "build",
            "--config",
            self.config_path,
            "--dataset",
            self.inputs.dataset_path,
            "--out",
            BUILD_OUTPUT_DIR,
            "--dataset-sha256",
            self.inputs.dataset_sha256,
        )

    def build_process(self) -> VenvPexProcess:
        """Train, evaluate and export. Described as "Train <address>" at INFO, so that
        `Completed: Train <address>` shows (and lets tests count) each real training."""
        return VenvPexProcess(
            self.venv_pex,
            argv=self.build_argv(),
            input_digest=self.input_digest,
            extra_env={
                **train_env(self.resources),
                "PEX_EXTRA_SYS_PATH": ":".join(self.source_roots),
            },
            output_directories=(BUILD_OUTPUT_DIR,),
            description=f"Train {self.address}",
            level=LogLevel.INFO,
        )

    def module_process(
        self, module: str, argv: tuple[str, ...], input_digest: Digest, description: str
    ) -> VenvPexProcess:
        """Another module run in the model's venv and environment, e.g. its standard checks."""
        return VenvPexProcess(
            self.venv_pex,
            argv=("-m", module, *argv),
            input_digest=input_digest,
            extra_env={**_STEP_ENV, "PEX_EXTRA_SYS_PATH": ":".join(self.source_roots)},
            description=description,
            level=LogLevel.DEBUG,
        )

    def inputs_digest(self) -> str:
        """What the model is trained from (model.json's `inputs_digest`), and nothing about the
        machine: the build process's launcher scripts and interpreter paths are left out."""
        fingerprint = json.dumps(
            {
                "files": self.input_digest.fingerprint,
                "lockfile": [self.lockfile_path, self.lockfile_sha256],
                "interpreter_constraints": self.interpreter_constraints,
                "argv": self.build_argv(),
                "env": train_env(self.resources),
            },
            sort_keys=True,
        )
        return hashlib.sha256(fingerprint.encode()).hexdigest()


def _file_sha256(entries: DigestEntries) -> str | None:
    """A file's sha256 from Pants's store (a file's digest is the sha256 of its content)."""
    files = [entry for entry in entries if isinstance(entry, FileEntry)]
    return files[0].file_digest.fingerprint if files else None


@rule(desc="Set up an ml_model's training environment", level=LogLevel.DEBUG)
async def setup_model_runner(request: ModelStepsRequest, python_setup: PythonSetup) -> ModelRunner:
    inputs = await Get(
        ModelInputs,
        ModelInputsRequest(
            request.address,
            request.framework,
            request.entry_point,
            request.dataset,
            request.resolve,
        ),
    )
    # The dataset first: a committed file is checked against its sha256 before it is hydrated as
    # a source below; a file in the store is referenced by digest, fetched only if a step runs.
    dataset = await Get(DatasetInput, DatasetInputRequest(inputs.dataset_address))
    transitive, config_files, entry_root = await MultiGet(
        Get(
            TransitiveTargets,
            TransitiveTargetsRequest([inputs.entry_point_address, inputs.dataset_address]),
        ),
        Get(SourceFiles, SourceFilesRequest([request.config])),
        Get(SourceRoot, SourceRootRequest, SourceRootRequest.for_file(inputs.entry_point_path)),
    )
    # The dataset's own file comes from `dataset` (by digest): hydrating the target as a source
    # would download it (as an `http_source`, without credentials) even on a cache hit.
    sources_closure = [t for t in transitive.closure if t.address != inputs.dataset_address]
    sources, requirements_pex = await MultiGet(
        Get(PythonSourceFiles, PythonSourceFilesRequest(sources_closure, include_files=True)),
        Get(Pex, RequirementsPexRequest(Addresses([inputs.entry_point_address]))),
    )
    relative = inputs.entry_point_path
    if entry_root.path not in ("", "."):
        relative = relative[len(entry_root.path) + 1 :]
    module = relative[: -len(".py")].replace("/", ".")
    interpreter_constraints = InterpreterConstraints.create_from_targets(
        transitive.closure, python_setup
    ) or InterpreterConstraints(python_setup.interpreter_constraints)
    lockfile_path = python_setup.resolves[inputs.resolve]
    venv_pex, lockfile_entries = await MultiGet(
        Get(
            VenvPex,
            PexRequest(
                output_filename="model_runner.pex",
                internal_only=True,
                interpreter_constraints=interpreter_constraints,
                pex_path=[requirements_pex],
            ),
        ),
        Get(DigestEntries, PathGlobs([lockfile_path])),
    )
    input_digest = await Get(
        Digest,
        MergeDigests(
            (sources.source_files.snapshot.digest, config_files.snapshot.digest, dataset.digest)
        ),
    )
    return ModelRunner(
        address=request.address,
        inputs=inputs,
        venv_pex=venv_pex,
        module=module,
        input_digest=input_digest,
        dataset=dataset,
        config_path=config_files.files[0],
        source_roots=sources.source_roots,
        lockfile_path=lockfile_path,
        lockfile_sha256=_file_sha256(lockfile_entries) or "",
        interpreter_constraints=tuple(str(c) for c in interpreter_constraints),
        resources=tuple((request.resources.value or {}).items()),
    )


@dataclass(frozen=True)
class ModelStepOutputs:
    """The outputs of train, evaluate and export, and a fingerprint of all training inputs."""

    train: Digest
    evaluate: Digest
    export: Digest
    inputs_digest: str
    dataset_address: Address
    dataset_path: str
    dataset_sha256: str
    dataset_url: str | None


@dataclass(frozen=True)
class ModelInputsDigest:
    """`inputs_digest` of a model's current inputs, computed without running any step."""

    value: str


@rule(desc="Fingerprint an ml_model's training inputs", level=LogLevel.DEBUG)
async def model_inputs_digest(request: ModelStepsRequest) -> ModelInputsDigest:
    runner = await Get(ModelRunner, ModelStepsRequest, request)
    return ModelInputsDigest(runner.inputs_digest())


@rule(desc="Train, evaluate and export an ml_model", level=LogLevel.DEBUG)
async def run_model_steps(request: ModelStepsRequest) -> ModelStepOutputs:
    runner = await Get(ModelRunner, ModelStepsRequest, request)
    process = await Get(Process, VenvPexProcess, runner.build_process())
    fallible = await Get(FallibleProcessResult, ProcessWithDataset(process, runner.dataset))
    built = await Get(
        ProcessResult,
        {
            fallible: FallibleProcessResult,
            ProductDescription(process.description): ProductDescription,
        },
    )
    steps = await Get(Digest, RemovePrefix(built.output_digest, BUILD_OUTPUT_DIR))
    train, evaluate, export = await MultiGet(
        Get(Digest, DigestSubset(steps, PathGlobs([f"{step}/**"]))) for step in STEPS
    )
    return ModelStepOutputs(
        train=train,
        evaluate=evaluate,
        export=export,
        inputs_digest=runner.inputs_digest(),
        dataset_address=runner.inputs.dataset_address,
        dataset_path=runner.inputs.dataset_path,
        dataset_sha256=runner.inputs.dataset_sha256,
        dataset_url=runner.inputs.dataset_url,
    )


def rules():
    return collect_rules()
