"""`pants package` for `ml_model`: the gated, self-describing artifact directory in `dist/`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    MergeDigests,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from mlbuild.model_gate import check_thresholds
from mlbuild.model_report import ModelReport, ModelReportRequest, report_request
from mlbuild.model_steps import ModelStepOutputs, ModelStepsRequest
from mlbuild.target_types import (
    ModelConfigSourceField,
    ModelDatasetField,
    ModelEntryPointField,
    ModelFrameworkField,
    ModelResolveField,
    ModelResourcesField,
    ModelThresholdsField,
)

ARTIFACT_FORMAT_VERSION = 1


class CorruptStepOutput(Exception):
    """A step's cached output lacks a file it must have written."""


@dataclass(frozen=True)
class MlModelFieldSet(PackageFieldSet):
    required_fields = (ModelFrameworkField, ModelEntryPointField, ModelThresholdsField)

    framework: ModelFrameworkField
    entry_point: ModelEntryPointField
    config: ModelConfigSourceField
    dataset: ModelDatasetField
    thresholds: ModelThresholdsField
    resolve: ModelResolveField
    resources: ModelResourcesField

    @property
    def model_name(self) -> str:
        return self.address.target_name

    @property
    def artifact_dir(self) -> str:
        return f"models/{self.model_name}"

    def steps_request(self) -> ModelStepsRequest:
        return ModelStepsRequest(
            self.address,
            self.framework,
            self.entry_point,
            self.config,
            self.dataset,
            self.resolve,
            self.resources,
        )


def _read(contents: DigestContents, path: str) -> bytes:
    for entry in contents:
        if entry.path == path:
            return entry.content
    raise CorruptStepOutput(f"{path} is missing from the step's output")


@dataclass(frozen=True)
class ModelArtifact:
    """`models/<name>/model.onnx` and `model.json` of a model that passed its gate: what a
    serving image takes, ready before (and without) the review report."""

    digest: Digest
    report_request: ModelReportRequest
    summary: str  # the version and gated metrics, for the log


@rule(desc="Gate and describe an ml_model's artifact", level=LogLevel.DEBUG)
async def model_artifact(field_set: MlModelFieldSet) -> ModelArtifact:
    outputs = await Get(ModelStepOutputs, ModelStepsRequest, field_set.steps_request())
    training_contents, evaluate_contents, export_contents = await MultiGet(
        Get(DigestContents, Digest, step)
        for step in (outputs.train, outputs.evaluate, outputs.export)
    )
    training = json.loads(_read(training_contents, "train/training.json"))
    metrics = json.loads(_read(evaluate_contents, "evaluate/metrics.json"))
    export = json.loads(_read(export_contents, "export/export.json"))
    onnx_bytes = _read(export_contents, "export/model.onnx")

    thresholds = dict(field_set.thresholds.value)
    check_thresholds(field_set.address, metrics, thresholds)

    onnx_sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    description = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "name": field_set.model_name,
        "address": str(field_set.address),
        "framework": field_set.framework.value,
        "version": onnx_sha256,
        "artifact": {
            "file": "model.onnx",
            "format": "onnx",
            "opset": export["opset"],
            "sha256": onnx_sha256,
            "size": len(onnx_bytes),
        },
        "inputs_digest": outputs.inputs_digest,
        "dataset": {
            "address": str(outputs.dataset_address),
            "file": outputs.dataset_path,
            "sha256": outputs.dataset_sha256,
            **({"url": outputs.dataset_url} if outputs.dataset_url else {}),
        },
        "metrics": metrics,
        "thresholds": thresholds,
        "signature": export["signature"],
        "class_names": export["class_names"],
        "training": {
            "seconds": training["seconds"],
            "epochs": training["epochs"],
            "seed": training["seed"],
            "validation_fraction": training["validation_fraction"],
            "test_fraction": training["test_fraction"],
            "train_samples": training["train_samples"],
            "final": training["summary"]["final"],
        },
        "libraries": training["libraries"],
        "export": {
            "max_abs_diff": export["max_abs_diff"],
            "tolerance": export["tolerance"],
            "verified_samples": export["verified_samples"],
        },
    }
    artifact = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(f"{field_set.artifact_dir}/model.onnx", onnx_bytes),
                FileContent(
                    f"{field_set.artifact_dir}/model.json",
                    (json.dumps(description, indent=2, sort_keys=True) + "\n").encode(),
                ),
            ]
        ),
    )
    return ModelArtifact(
        artifact,
        report_request(field_set.address, description, training["summary"]["history"]),
        f"version {onnx_sha256[:12]}; " + ", ".join(f"{m} {metrics[m]:.4f}" for m in thresholds),
    )


@rule(desc="Package an ml_model", level=LogLevel.DEBUG)
async def package_ml_model(field_set: MlModelFieldSet) -> BuiltPackage:
    artifact = await Get(ModelArtifact, MlModelFieldSet, field_set)
    report = await Get(ModelReport, ModelReportRequest, artifact.report_request)
    report_digest = await Get(Digest, AddPrefix(report.digest, field_set.artifact_dir))
    digest = await Get(Digest, MergeDigests((artifact.digest, report_digest)))
    return BuiltPackage(
        digest,
        (
            BuiltPackageArtifact(
                field_set.artifact_dir,
                extra_log_lines=(artifact.summary,),
            ),
            BuiltPackageArtifact(f"{field_set.artifact_dir}/report.html"),
        ),
    )


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, MlModelFieldSet)]
