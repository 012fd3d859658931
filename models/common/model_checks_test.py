"""The checks runner every ml_model's `pants test` uses: each check reported, any failure fails."""

import json

import numpy as np
from torch import nn

from models.common.model_checks import main


def build_model(config, spec):
    params = config.architecture({"hidden": 8})
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(spec.input_shape)), params["hidden"]),
        nn.ReLU(),
        nn.Linear(params["hidden"], spec.num_classes),
    )


def test_sound_model_checks_pass_and_a_wrong_artifact_fails_the_run(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "epochs": 1, "batch_size": 32, "learning_rate": 0.01}))
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.json").write_text(json.dumps({"name": "another", "artifact": {"file": "x"}}))
    (artifact / "x").write_bytes(b"")
    argv = ["--framework", "torch", "--model-module", __name__, "--name", "m"]
    argv += ["--config", str(config), "--dataset", "models/datasets/digits.npz"]
    code = main([*argv, "--artifact", str(artifact)])
    out = capsys.readouterr().out
    assert code == 1
    for check in ("output_shape", "loss_decreases_on_one_batch", "config_validation"):
        assert f"PASS {check}\n" in out
    assert "FAIL packaged_artifact_matches_its_description" in out
    assert out.rstrip().endswith("3 passed, 1 failed")
