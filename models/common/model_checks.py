"""Checks every model's unit tests make, whatever its framework, so no test is copied per model."""

from __future__ import annotations

import dataclasses
import json
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
