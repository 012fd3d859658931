from pathlib import Path

from models.common.artifact_checks import check_artifact


def test_packaged_artifact_matches_its_description():
    check_artifact(
        Path("models/digits_cnn_keras"),
        expected_name="digits_cnn_keras",
        expected_framework="tensorflow",
    )
