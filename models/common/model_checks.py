"""The standard checks of every model, whatever its framework: no test file is copied per model.

`pants test` runs them for each `ml_model` target (pants-plugins/mlbuild/model_tests.py), as

    python -m models.common.model_checks --framework torch --model-module models.<name>.train \
        --config C --dataset D --artifact dist-layout/models/<name> --name <name>

in the model's own resolve, after `package` built the artifact (so a model below its gate fails
its tests too). Each check prints PASS or FAIL with the reason; any failure exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from models.common.config import ConfigError, load_config
from models.common.datasets import Split
from models.common.harness import Framework, load_inputs


def check_output_shape(framework: Framework, config_path: Path, dataset_path: Path) -> None:
    """A batch of test examples gives one probability row per example, each summing to 1."""
    inputs = load_inputs(framework, config_path, dataset_path)
    model = framework.build_model(inputs.config, inputs.spec)
    batch = framework.prepare(inputs.split.test.features[:7])
    probabilities = framework.predict_proba(model, batch)
    assert probabilities.shape == (7, inputs.spec.num_classes)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def check_loss_decreases_on_one_batch(
    framework: Framework, config_path: Path, dataset_path: Path
) -> None:
    """A few optimiser steps on a single batch lower that batch's training loss."""
    inputs = load_inputs(framework, config_path, dataset_path)
    config = dataclasses.replace(inputs.config, epochs=5)
    one = dataclasses.replace(
        inputs.split.train,
        features=inputs.split.train.features[: config.batch_size],
        labels=inputs.split.train.labels[: config.batch_size],
    )
    spec = dataclasses.replace(inputs.spec, train_features=framework.prepare(one.features))
    _, summary = framework.train(config, spec, Split(train=one, validation=one, test=one))
    losses = [epoch["train_loss"] for epoch in summary["history"]]
    assert losses[-1] < losses[0], f"loss did not decrease: {losses}"


def check_config_validation(
    framework: Framework, config_path: Path, dataset_path: Path, tmp_path: Path
) -> None:
    """The model's config is valid, and a bad value or an unknown architecture key is rejected."""
    inputs = load_inputs(framework, config_path, dataset_path)
    framework.build_model(inputs.config, inputs.spec)
    data = json.loads(Path(config_path).read_text())
    for change, message in (
        ({"epochs": 0}, "'epochs'"),
        ({"model": {"no_such_key": 1}}, "no_such_key"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**data, **change}))
        try:
            # General keys are checked on load, architecture keys by the model's build_model.
            framework.build_model(load_config(bad), inputs.spec)
        except ConfigError as e:
            assert message in str(e)
            continue
        raise AssertionError(f"{change} was accepted")


FRAMEWORKS = {
    "torch": ("models.common.torch_framework", "TorchFramework"),
    "tensorflow": ("models.common.keras_framework", "KerasFramework"),
}


def framework_of(name: str, model_module: str) -> Framework:
    """The framework harness wrapping the model module's `build_model`."""
    module, cls = FRAMEWORKS[name]
    build_model = importlib.import_module(model_module).build_model
    return getattr(importlib.import_module(module), cls)(build_model)


def main(argv: list[str] | None = None) -> int:
    from models.common.artifact_checks import check_artifact

    parser = argparse.ArgumentParser(description="Run a model's standard checks.")
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), required=True)
    parser.add_argument("--model-module", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--artifact", type=Path, required=True)
    args = parser.parse_args(argv)
    framework = framework_of(args.framework, args.model_module)
    tmp = Path(tempfile.mkdtemp(prefix="model-checks-"))
    checks = {
        "output_shape": lambda: check_output_shape(framework, args.config, args.dataset),
        "loss_decreases_on_one_batch": lambda: check_loss_decreases_on_one_batch(
            framework, args.config, args.dataset
        ),
        "config_validation": lambda: check_config_validation(
            framework, args.config, args.dataset, tmp
        ),
        "packaged_artifact_matches_its_description": lambda: check_artifact(
            args.artifact, expected_name=args.name, expected_framework=args.framework
        ),
    }
    failed = []
    for name, check in checks.items():
        try:
            check()
        except Exception:  # noqa: BLE001 - every failure is reported, then the run fails
            failed.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}")
        else:
            print(f"PASS {name}")
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
