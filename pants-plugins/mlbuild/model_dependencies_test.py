import pytest
from pants.backend.python import target_types_rules
from pants.backend.python.target_types import PythonSourcesGeneratorTarget, PythonSourceTarget
from pants.core.target_types import FileTarget
from pants.engine.addresses import Address
from pants.engine.internals.parametrize import Parametrize
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.engine.target import InferredDependencies
from pants.testutil.rule_runner import RuleRunner

from mlbuild import model_dependencies
from mlbuild.model_dependencies import InferModelDependencies, ModelDependencyInferenceFieldSet
from mlbuild.target_types import MlDatasetTarget, MlModelTarget

SHA = "0" * 64


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        objects={"parametrize": Parametrize},
        rules=[
            *model_dependencies.rules(),
            *target_types_rules.rules(),
            QueryRule(InferredDependencies, [InferModelDependencies]),
        ],
        target_types=[
            MlModelTarget,
            MlDatasetTarget,
            PythonSourcesGeneratorTarget,
            PythonSourceTarget,
            FileTarget,
        ],
    )
    runner.set_options(
        [
            "--python-enable-resolves",
            "--python-resolves={'python-default': '', 'torch': '', 'tensorflow': ''}",
        ]
    )
    return runner


def _infer(rule_runner: RuleRunner, build: str) -> set[Address]:
    rule_runner.write_files(
        {
            "data/BUILD": f'ml_dataset(name="digits", source="d.npz", sha256="{SHA}")\nfile(name="plain", source="d.npz")',
            "data/d.npz": "",
            "m/BUILD": build,
            "m/train.py": "",
            "m/config.json": "{}",
        }
    )
    tgt = rule_runner.get_target(Address("m", target_name="m"))
    result = rule_runner.request(
        InferredDependencies,
        [InferModelDependencies(ModelDependencyInferenceFieldSet.create(tgt))],
    )
    return set(result.include)


MODEL = 'ml_model(name="m", framework="torch", entry_point="train.py", config="config.json", dataset="{dataset}", thresholds={{"accuracy": 0.9}})'


def test_infers_entry_point_source_in_the_framework_resolve_and_the_dataset(rule_runner) -> None:
    build = (
        'python_sources(name="lib", resolve=parametrize("torch", "tensorflow"))\n'
        + MODEL.format(dataset="//data:digits")
    )
    assert _infer(rule_runner, build) == {
        Address(
            "m", target_name="lib", relative_file_path="train.py", parameters={"resolve": "torch"}
        ),
        Address("data", target_name="digits"),
    }


def test_entry_point_without_a_python_source_in_the_resolve_is_named(rule_runner) -> None:
    build = 'python_sources(name="lib", resolve="tensorflow")\n' + MODEL.format(
        dataset="//data:digits"
    )
    with pytest.raises(ExecutionError) as e:
        _infer(rule_runner, build)
    assert "'entry_point' field in target m:m is 'train.py'" in str(e.value)
    assert "resolve 'torch'" in str(e.value)


def test_dataset_must_be_an_ml_dataset(rule_runner) -> None:
    build = 'python_sources(name="lib", resolve="torch")\n' + MODEL.format(dataset="//data:plain")
    with pytest.raises(ExecutionError) as e:
        _infer(rule_runner, build)
    assert "points at data:plain, a `file` target; it must be an `ml_dataset` target" in str(
        e.value
    )


def test_unknown_resolve_is_named_with_the_allowed_ones(rule_runner) -> None:
    build = 'python_sources(name="lib", resolve="torch")\n' + MODEL.format(
        dataset="//data:digits"
    ).replace("thresholds=", 'resolve="jax", thresholds=')
    with pytest.raises(ExecutionError) as e:
        _infer(rule_runner, build)
    assert "'resolve' field in target m:m is 'jax'" in str(e.value)
    assert "allowed: python-default, tensorflow, torch" in str(e.value)
