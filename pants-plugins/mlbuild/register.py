"""Our Pants plugin: ML datasets and models as Pants targets, and the rules that build them."""

from mlbuild import ruff_format
from mlbuild.oci import rules as oci_rules
from mlbuild.oci.target_types import DebianPackagesTarget, ModelImageTarget
from mlbuild.target_types import MlDatasetTarget, MlModelTarget


def target_types():
    return [MlDatasetTarget, MlModelTarget, DebianPackagesTarget, ModelImageTarget]


def rules():
    return [*ruff_format.rules(), *oci_rules.rules()]
