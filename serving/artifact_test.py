from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from serving.artifact import ArtifactError, load_artifact
from serving.fixtures import classifier_graph, write_artifact
from serving.server import main


@pytest.fixture
def artifact(tmp_path) -> Path:
    return write_artifact(tmp_path / "digits")


def edit_json(directory: Path, change) -> None:
    path = directory / "model.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_valid_artifact_loads(artifact):
    loaded = load_artifact(artifact)
    assert loaded.name == "fixture_digits"
    assert [s.name for s in loaded.outputs] == ["probabilities", "predicted_class"]
    assert loaded.inputs[0].shape == (-1, 1, 8, 8)
    assert len(loaded.class_names) == 10


def corrupt(directory: Path) -> None:
    path = directory / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(directory: Path) -> None:
    path = directory / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10])


def other_graph(directory: Path) -> None:
    """A valid graph with another input shape, recorded with its true digest: a signature mismatch."""
    blob = classifier_graph((-1, 64)).SerializeToString()
    (directory / "model.onnx").write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()

    def record(meta):
        meta["artifact"].update(sha256=digest, size=len(blob))
        meta["version"] = digest

    edit_json(directory, record)


@pytest.mark.parametrize(
    "damage, file, fragments",
    [
        (corrupt, "model.onnx", ["sha256 is", "corrupted"]),
        (truncate, "model.onnx", ["size is", "truncated"]),
        (other_graph, "model.onnx", ["input 'input' has shape [-1, 64]", "declares [-1, 1, 8, 8]"]),
        (lambda d: (d / "model.onnx").unlink(), "model.onnx", ["file not found"]),
        (lambda d: (d / "model.json").write_text("{not json"), "model.json", ["not valid JSON"]),
        (
            lambda d: edit_json(d, lambda m: m["signature"]["outputs"][0].update(name="probs")),
            "model.onnx",
            [
                "outputs are ['predicted_class', 'probabilities']",
                "declares ['predicted_class', 'probs']",
            ],
        ),
        (
            lambda d: edit_json(d, lambda m: m["signature"]["outputs"][1].update(datatype="INT32")),
            "model.onnx",
            ["'predicted_class' has datatype INT64 in the graph", "declares INT32"],
        ),
        (
            lambda d: edit_json(d, lambda m: m["signature"]["inputs"][0].update(datatype="FLOAT")),
            "model.json",
            ["datatype 'FLOAT' is not one of"],
        ),
        (
            lambda d: edit_json(d, lambda m: m.pop("signature")),
            "model.json",
            ["missing required field 'signature'"],
        ),
        (
            lambda d: edit_json(d, lambda m: m["artifact"].update(size="12")),
            "model.json",
            ["'artifact.size' has the wrong type"],
        ),
        (
            lambda d: edit_json(d, lambda m: m.update(version="0" * 64)),
            "model.json",
            ["differs from artifact.sha256"],
        ),
    ],
    ids=[
        "corrupted",
        "truncated",
        "graph-shape",
        "missing-onnx",
        "bad-json",
        "output-names",
        "output-datatype",
        "unknown-datatype",
        "no-signature",
        "size-type",
        "version",
    ],
)
def test_bad_artifacts_are_refused(artifact, damage, file, fragments):
    damage(artifact)
    with pytest.raises(ArtifactError) as e:
        load_artifact(artifact)
    assert e.value.path == artifact / file
    for fragment in fragments:
        assert fragment in e.value.problem


def test_server_refuses_to_start_with_a_bad_artifact(artifact, tmp_path, capsys):
    good = write_artifact(tmp_path / "good", "good")
    truncate(artifact)
    code = main(
        ["--model-dir", str(good), "--model-dir", str(artifact), "--insecure", "--port", "0"]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert f"{artifact / 'model.onnx'}: size is" in err


def test_server_refuses_duplicate_names_and_plaintext_without_flag(artifact, tmp_path, capsys):
    twin = write_artifact(tmp_path / "twin")
    assert main(["--model-dir", str(artifact), "--model-dir", str(twin), "--insecure"]) == 2
    assert "is also served from" in capsys.readouterr().err
    assert main(["--model-dir", str(artifact)]) == 2
    assert "--insecure" in capsys.readouterr().err
