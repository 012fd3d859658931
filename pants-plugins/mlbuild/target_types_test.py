import ast
from pathlib import Path

import pytest
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import RuleRunner

from mlbuild.target_types import (
    GATED_METRICS,
    MlDatasetTarget,
    MlModelTarget,
    ModelResourcesField,
    ModelThresholdsField,
)

SHA = "a" * 64


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(target_types=[MlModelTarget, MlDatasetTarget])


def _model_build(**overrides: str) -> str:
    fields = {
        "framework": '"torch"',
        "entry_point": '"train.py"',
        "config": '"config.json"',
        "dataset": '"//data:digits"',
        "thresholds": '{"accuracy": 0.9}',
        **overrides,
    }
    args = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f'ml_model(name="m", {args})'


def _error(rule_runner: RuleRunner, build: str) -> str:
    rule_runner.write_files({"m/BUILD": build, "m/config.json": "{}", "m/train.py": ""})
    with pytest.raises(ExecutionError) as e:
        rule_runner.get_target(Address("m", target_name="m"))
    return str(e.value)


def test_valid_model_fields(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"m/BUILD": _model_build(), "m/config.json": "{}"})
    tgt = rule_runner.get_target(Address("m", target_name="m"))
    assert dict(tgt[ModelThresholdsField].value) == {"accuracy": 0.9}


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            {"framework": '"jax"'},
            "'framework' field in target m:m must be one of ['tensorflow', 'torch']",
        ),
        (
            {"thresholds": '{"auc": 0.9}'},
            "unknown metric 'auc'; allowed metrics: accuracy, macro_precision",
        ),
        (
            {"thresholds": '{"accuracy": 1.5}'},
            "sets 'accuracy' to 1.5; a threshold must be a number in [0, 1]",
        ),
        ({"thresholds": '{"accuracy": "high"}'}, "a threshold must be a number in [0, 1]"),
        ({"thresholds": "{}"}, "'thresholds' field in target m:m must be a non-empty dict"),
        ({"entry_point": '"../x.py"'}, "'entry_point' field in target m:m must name a `.py` file"),
    ],
)
def test_bad_fields_name_target_field_and_allowed_values(rule_runner, override, expected) -> None:
    assert expected in _error(rule_runner, _model_build(**override))


def test_resources_are_optional_and_zero_asks_for_nothing(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"m/BUILD": _model_build(), "m/config.json": "{}"})
    assert rule_runner.get_target(Address("m", target_name="m"))[ModelResourcesField].value is None
    build = _model_build(resources='{"memory_gb": 16, "gpu": 0}')
    rule_runner.write_files({"m/BUILD": build})
    value = rule_runner.get_target(Address("m", target_name="m"))[ModelResourcesField].value
    assert dict(value) == {"memory_gb": 16}


@pytest.mark.parametrize(
    "resources, expected",
    [
        ('{"tpu": 1}', "'resources' field in target m:m names the unknown resource 'tpu'; known"),
        ('{"gpu": -1}', "'resources' field in target m:m sets 'gpu' to -1; it must be a whole"),
        ('{"gpu": True}', "sets 'gpu' to True; it must be a whole number >= 0"),
        ('{"memory_gb": 1.5}', "sets 'memory_gb' to 1.5; it must be a whole number >= 0"),
        ('["gpu"]', "'resources' field in target m:m must be a dict such as"),
    ],
)
def test_bad_resources_name_target_and_field(rule_runner, resources, expected) -> None:
    assert expected in _error(rule_runner, _model_build(resources=resources))


def test_missing_required_field_is_named(rule_runner: RuleRunner) -> None:
    build = 'ml_model(name="m", framework="torch", entry_point="train.py", config="config.json", dataset=":d")'
    assert "The 'thresholds' field in target m:m must be defined" in _error(rule_runner, build)


def test_dataset_sha256_must_be_hex(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {"d/BUILD": 'ml_dataset(name="d", source="d.npz", sha256="abc")', "d/d.npz": ""}
    )
    with pytest.raises(ExecutionError, match="must be 64 lowercase hex digits"):
        rule_runner.get_target(Address("d", target_name="d"))
    rule_runner.write_files({"d/BUILD": f'ml_dataset(name="d", source="d.npz", sha256="{SHA}")'})
    assert rule_runner.get_target(Address("d", target_name="d")) is not None


URL = "https://store.example/datasets/big.npz"


@pytest.mark.parametrize(
    "fields, expected",
    [
        ("", "must set exactly one of `source`"),
        (f'source="d.npz", url="{URL}", size=3', "must set exactly one of `source`"),
        (f'url="{URL}"', "sets `url`, so it must set `size` too"),
        ('source="d.npz", size=3', "`size` only goes with `url`"),
        ('url="ftp://store.example/big.npz", size=3', "must be an https://, http:// or file: URL"),
        ('url="https://ci:secret@store.example/big.npz", size=3', "contains credentials"),
        ('url="https://store.example/big.tar", size=3', "must end in the dataset's `.npz`"),
        (f'url="{URL}", size=0', "must be a positive number of bytes"),
    ],
)
def test_a_dataset_is_either_committed_or_in_the_store(rule_runner, fields, expected) -> None:
    rule_runner.write_files(
        {"d/BUILD": f'ml_dataset(name="d", sha256="{SHA}", {fields})', "d/d.npz": ""}
    )
    with pytest.raises(ExecutionError) as caught:
        rule_runner.get_target(Address("d", target_name="d"))
    assert expected in str(caught.value)
    assert "d:d" in str(caught.value)


def test_a_dataset_in_the_store(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {"d/BUILD": f'ml_dataset(name="d", sha256="{SHA}", url="{URL}", size=3)'}
    )
    assert rule_runner.get_target(Address("d", target_name="d")) is not None


def test_gated_metrics_match_the_training_harness() -> None:
    tree = ast.parse(Path("models/common/metrics.py").read_text())
    assigned = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "GATED_METRICS"
    )
    assert tuple(ast.literal_eval(assigned)) == GATED_METRICS
