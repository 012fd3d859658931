"""`pants tailor` for models: a directory `models/<name>/` holding `train.py` and `config.json` gets
its BUILD file (the model's sources in its framework's resolve, the `ml_model`, its image).

The framework comes from the harness `train.py` imports; the dataset from the one `ml_dataset`
whose name `train.py` mentions (or the only one there is); the gate starts at accuracy >= 0.9,
a value to review. Python's own tailoring would put the sources in the default resolve, so it is
off for source targets (pants.toml `[python].tailor_source_targets`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from pants.core.goals.tailor import PutativeTarget, PutativeTargets, PutativeTargetsRequest
from pants.engine.fs import DigestContents, PathGlobs, Paths
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from mlbuild.target_types import DatasetSourceField, MlModelTarget, ModelEntryPointField

logger = logging.getLogger(__name__)

ENTRY_POINT = "train.py"
CONFIG = "config.json"


@dataclass(frozen=True)
class BuildLiteral:
    """A value tailor writes into the BUILD file as this Python source (it writes `repr` of
    anything but strings and tuples; a dict would not be hashable)."""

    source: str

    def __repr__(self) -> str:
        return self.source


STARTING_THRESHOLDS = BuildLiteral('{"accuracy": 0.9}')
# The harness module a model's train.py imports -> its framework (= its resolve's name).
FRAMEWORK_IMPORTS = {
    "models.common.torch_framework": "torch",
    "models.common.keras_framework": "tensorflow",
}


@dataclass(frozen=True)
class PutativeModelTargetsRequest(PutativeTargetsRequest):
    pass


def framework_of(train_py: str) -> str | None:
    found = {
        fw for module, fw in FRAMEWORK_IMPORTS.items() if re.search(rf"\b{module}\b", train_py)
    }
    return found.pop() if len(found) == 1 else None


def dataset_of(train_py: str, datasets: dict[str, str]) -> str | None:
    """The dataset address: the one whose name train.py mentions, else the only one."""
    named = [a for name, a in datasets.items() if re.search(rf"\b{re.escape(name)}\b", train_py)]
    if len(named) == 1:
        return named[0]
    return next(iter(datasets.values())) if len(datasets) == 1 and not named else None


def model_targets(directory: str, framework: str, dataset: str) -> list[PutativeTarget]:
    name = os.path.basename(directory)
    return [
        PutativeTarget(
            path=directory,
            name="lib",
            type_alias="python_sources",
            triggering_sources=[ENTRY_POINT],
            owned_sources=["*.py"],
            kwargs={"resolve": framework},
        ),
        PutativeTarget(
            path=directory,
            name=name,
            type_alias=MlModelTarget.alias,
            triggering_sources=[ENTRY_POINT, CONFIG],
            owned_sources=[CONFIG],
            kwargs={
                "framework": framework,
                "entry_point": ENTRY_POINT,
                "config": CONFIG,
                "dataset": dataset,
                "thresholds": STARTING_THRESHOLDS,  # type: ignore[dict-item]
            },
            comments=["# A starting gate: review `thresholds` before merging."],
        ),
        PutativeTarget(
            path=directory,
            name="image",
            type_alias="model_image",
            triggering_sources=[],
            owned_sources=[],
            kwargs={"model": f":{name}"},
        ),
    ]


@rule(level=LogLevel.DEBUG, desc="Determine candidate ml_model targets to create")
async def find_putative_model_targets(
    request: PutativeModelTargetsRequest, all_targets: AllTargets
) -> PutativeTargets:
    entry_points, configs = await MultiGet(
        Get(DigestContents, PathGlobs, request.path_globs(ENTRY_POINT)),
        Get(Paths, PathGlobs, request.path_globs(CONFIG)),
    )
    modelled = {t.address.spec_path for t in all_targets if t.has_field(ModelEntryPointField)}
    datasets = {
        t.address.target_name: f"//{t.address.spec}"
        for t in all_targets
        if t.has_field(DatasetSourceField)
    }
    config_dirs = {os.path.dirname(path) for path in configs.files}
    putative = []
    for entry_point in entry_points:
        directory = os.path.dirname(entry_point.path)
        if directory in modelled or directory not in config_dirs:
            continue
        source = entry_point.content.decode()
        framework = framework_of(source)
        if framework is None:
            continue  # not a model written for our harness
        dataset = dataset_of(source, datasets)
        if dataset is None:
            logger.warning(
                f"{directory}: cannot tell which dataset the model trains on (train.py names "
                f"none or several of: {', '.join(sorted(datasets))}); mention one in train.py "
                "(e.g. in its docstring) and run tailor again, or write the BUILD file by hand."
            )
            continue
        putative.extend(model_targets(directory, framework, dataset))
    return PutativeTargets(putative)


def rules():
    return [*collect_rules(), UnionRule(PutativeTargetsRequest, PutativeModelTargetsRequest)]
