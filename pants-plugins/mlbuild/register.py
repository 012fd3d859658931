"""Our Pants plugin: ML datasets and models as Pants targets, and the rules that build them."""

from mlbuild import model_dependencies, model_steps, package_model, ruff_format
from mlbuild.target_types import MlDatasetTarget, MlModelTarget


def target_types():
    return [MlDatasetTarget, MlModelTarget]


def rules():
    return [
        *model_dependencies.rules(),
        *model_steps.rules(),
        *package_model.rules(),
        *ruff_format.rules(),
    ]
