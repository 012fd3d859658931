"""Our Pants plugin: ML datasets and models as Pants targets, and the rules that build them."""

from mlbuild import ruff_format
from mlbuild.target_types import MlDatasetTarget, MlModelTarget


def target_types():
    return [MlDatasetTarget, MlModelTarget]


def rules():
    return [*ruff_format.rules()]
