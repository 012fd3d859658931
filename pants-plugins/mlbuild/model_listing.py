"""`pants models ::`: every model's version, metrics against its gate, image, and freshness.

Nothing is trained: the listing reads the artifacts already in `dist/` and compares each one's
`inputs_digest` with the digest of the model's current inputs, which Pants computes from the
training process's description without running it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pants.base.build_root import BuildRoot
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.console import Console
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import Get, MultiGet, collect_rules, goal_rule
from pants.engine.target import AllTargets, Targets
from pants.option.option_types import BoolOption

from mlbuild.model_steps import ModelInputsDigest, ModelStepsRequest
from mlbuild.oci.rules import ModelImageFieldSet
from mlbuild.oci.target_types import ModelImageModelField
from mlbuild.package_model import MlModelFieldSet


class ModelsSubsystem(GoalSubsystem):
    name = "models"
    help = (
        "List the models: version digest, test metrics against the gate, serving image digest, "
        "and whether the artifact in dist/ is up to date with the working tree. Trains nothing."
    )

    as_json = BoolOption(default=False, help="Print one JSON object per model instead of text.")


class ModelsGoal(Goal):
    subsystem_cls = ModelsSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@dataclass(frozen=True)
class ModelListing:
    address: str
    framework: str
    artifact: str  # "up to date", "stale" or "not built"
    version: str | None
    metrics: dict  # metric -> {"value", "threshold", "passes"}
    image: dict | None  # {"address", "digest", "matches_artifact"}

    def to_json(self) -> dict:
        return {
            "address": self.address,
            "framework": self.framework,
            "artifact": self.artifact,
            "version": self.version,
            "metrics": self.metrics,
            "image": self.image,
        }

    def to_text(self) -> str:
        lines = [f"{self.address} ({self.framework})"]
        lines.append(f"  artifact  {self.artifact}")
        if self.version:
            lines.append(f"  version   {self.version}")
        for name, m in self.metrics.items():
            if m["value"] is None:
                lines.append(f"  {name:<16} not measured, threshold {m['threshold']}")
            else:
                verdict = "ok" if m["passes"] else "BELOW THE GATE"
                lines.append(f"  {name:<16} {m['value']:.4f} >= {m['threshold']}: {verdict}")
        if self.image is None:
            lines.append("  image     no model_image target")
        else:
            if self.image["digest"] is None:
                state = "not built"
            elif self.image["matches_artifact"]:
                state = self.image["digest"]
            else:
                state = f"{self.image['digest']} (holds another version than dist/models)"
            lines.append(f"  image     {state} ({self.image['address']})")
        return "\n".join(lines)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_listing(
    field_set: MlModelFieldSet,
    current_inputs_digest: str,
    dist: Path,
    image: tuple[Address, str] | None,
) -> ModelListing:
    """What `dist/` holds for one model, judged against its BUILD file and current inputs."""
    description = _read_json(dist / field_set.artifact_dir / "model.json")
    if description is None:
        artifact, version, recorded = "not built", None, {}
    else:
        fresh = description.get("inputs_digest") == current_inputs_digest
        artifact = "up to date" if fresh else "stale: its inputs changed since it was built"
        version, recorded = description.get("version"), description.get("metrics", {})
    metrics = {}
    for name, threshold in field_set.thresholds.value.items():
        value = recorded.get(name)
        passes = value is not None and value >= threshold
        metrics[name] = {"value": value, "threshold": threshold, "passes": passes}
    image_info = None
    if image is not None:
        address, output = image
        summary = _read_json(dist / (output[: -len(".tar")] + ".json"))
        image_info = {
            "address": str(address),
            "digest": summary.get("digest") if summary else None,
            "matches_artifact": bool(summary) and summary.get("model_version") == version,
        }
    return ModelListing(
        str(field_set.address), field_set.framework.value, artifact, version, metrics, image_info
    )


@goal_rule
async def list_models(
    console: Console,
    subsystem: ModelsSubsystem,
    targets: Targets,
    all_targets: AllTargets,
    dist_dir: DistDir,
    build_root: BuildRoot,
) -> ModelsGoal:
    field_sets = [MlModelFieldSet.create(t) for t in targets if MlModelFieldSet.is_applicable(t)]
    image_targets = [t for t in all_targets if t.has_field(ModelImageModelField)]
    image_models = await MultiGet(
        Get(Addresses, UnparsedAddressInputs, t[ModelImageModelField].to_unparsed_address_inputs())
        for t in image_targets
    )
    images = {
        models[0]: (
            t.address,
            ModelImageFieldSet.create(t).output_path.value_or_default(file_ending="tar"),
        )
        for t, models in zip(image_targets, image_models)
        if models
    }
    digests = await MultiGet(
        Get(ModelInputsDigest, ModelStepsRequest, fs.steps_request()) for fs in field_sets
    )
    dist = Path(build_root.path) / dist_dir.relpath
    listings = [
        model_listing(fs, digest.value, dist, images.get(fs.address))
        for fs, digest in zip(field_sets, digests)
    ]
    if subsystem.as_json:
        for listing in listings:
            console.print_stdout(json.dumps(listing.to_json(), sort_keys=True))
    else:
        console.print_stdout("\n\n".join(listing.to_text() for listing in listings))
    return ModelsGoal(exit_code=0)


def rules():
    return collect_rules()
