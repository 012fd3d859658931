from pathlib import Path

from models.common.artifact_checks import check_artifact


def test_packaged_artifact_matches_its_description():
    check_artifact(
        Path("models/breast_cancer_mlp_torch"),
        expected_name="breast_cancer_mlp_torch",
        expected_framework="torch",
    )
