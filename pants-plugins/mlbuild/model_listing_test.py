import json
from pathlib import Path

from pants.engine.addresses import Address

from mlbuild.model_listing import model_listing
from mlbuild.package_model import MlModelFieldSet
from mlbuild.target_types import MlModelTarget

ADDRESS = Address("models/m", target_name="m")
IMAGE = Address("models/m", target_name="image")


def field_set(thresholds: dict) -> MlModelFieldSet:
    target = MlModelTarget(
        {
            "framework": "torch",
            "entry_point": "train.py",
            "config": "config.json",
            "dataset": "//data:digits",
            "thresholds": thresholds,
        },
        ADDRESS,
    )
    return MlModelFieldSet.create(target)


def write_artifact(dist: Path, *, inputs_digest: str, accuracy: float) -> None:
    (dist / "models/m").mkdir(parents=True)
    description = {
        "version": "v1",
        "inputs_digest": inputs_digest,
        "metrics": {"accuracy": accuracy},
    }
    (dist / "models/m/model.json").write_text(json.dumps(description))


def test_an_artifact_built_from_the_current_inputs_is_up_to_date(tmp_path):
    write_artifact(tmp_path, inputs_digest="d1", accuracy=0.97)
    listing = model_listing(field_set({"accuracy": 0.95}), "d1", tmp_path, None)
    assert listing.artifact == "up to date"
    assert listing.version == "v1"
    assert listing.metrics == {"accuracy": {"value": 0.97, "threshold": 0.95, "passes": True}}
    assert "accuracy         0.9700 >= 0.95: ok" in listing.to_text()
    assert "no model_image target" in listing.to_text()


def test_changed_inputs_make_it_stale_and_a_raised_threshold_shows_below_the_gate(tmp_path):
    write_artifact(tmp_path, inputs_digest="d1", accuracy=0.97)
    listing = model_listing(field_set({"accuracy": 0.99}), "d2", tmp_path, None)
    assert listing.artifact.startswith("stale")
    assert listing.metrics["accuracy"]["passes"] is False
    assert "BELOW THE GATE" in listing.to_text()


def test_no_artifact_is_not_built_and_the_image_is_read_from_its_summary(tmp_path):
    (tmp_path / "models.m").mkdir()
    (tmp_path / "models.m/image.json").write_text(
        json.dumps({"digest": "sha256:abc", "model_version": "v0"})
    )
    listing = model_listing(
        field_set({"accuracy": 0.9}), "d1", tmp_path, (IMAGE, "models.m/image.tar")
    )
    assert listing.artifact == "not built"
    assert listing.metrics["accuracy"] == {"value": None, "threshold": 0.9, "passes": False}
    # The image was built from a version dist/ no longer holds.
    assert listing.image == {
        "address": "models/m:image",
        "digest": "sha256:abc",
        "matches_artifact": False,
    }
    assert "image     sha256:abc (holds another version than dist/models)" in listing.to_text()
    assert json.loads(json.dumps(listing.to_json()))["artifact"] == "not built"
