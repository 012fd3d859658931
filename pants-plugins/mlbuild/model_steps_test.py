import ast
from pathlib import Path

from mlbuild.model_steps import _STEP_ENV, RESOURCES_ENV, train_env


def test_a_model_without_resources_keeps_the_fixed_cpu_environment() -> None:
    assert train_env(()) == _STEP_ENV
    assert train_env(())["CUDA_VISIBLE_DEVICES"] == ""


def test_declared_resources_enter_the_training_key_and_a_gpu_model_sees_gpus() -> None:
    memory_only = train_env((("memory_gb", 16),))
    assert memory_only[RESOURCES_ENV] == '{"memory_gb": 16}'
    assert memory_only["CUDA_VISIBLE_DEVICES"] == ""  # still trained on CPU, as everywhere
    gpu = train_env((("gpu", 1), ("memory_gb", 16)))
    assert gpu[RESOURCES_ENV] == '{"gpu": 1, "memory_gb": 16}'
    assert "CUDA_VISIBLE_DEVICES" not in gpu
    assert {k: v for k, v in gpu.items() if k != RESOURCES_ENV} == {
        k: v for k, v in _STEP_ENV.items() if k != "CUDA_VISIBLE_DEVICES"
    }


def test_the_variable_is_the_one_the_training_harness_reads() -> None:
    tree = ast.parse(Path("models/common/resources.py").read_text())
    [value] = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RESOURCES_ENV"
    ]
    assert ast.literal_eval(value) == RESOURCES_ENV
