import pytest
from pants.core.goals.tailor import PutativeTarget, PutativeTargets
from pants.engine.rules import QueryRule
from pants.testutil.rule_runner import RuleRunner

from mlbuild import model_tailor
from mlbuild.model_tailor import PutativeModelTargetsRequest, dataset_of, framework_of
from mlbuild.target_types import MlDatasetTarget, MlModelTarget

TORCH_TRAIN = '''"""An MLP on the breast_cancer dataset."""
from models.common.harness import run
from models.common.torch_framework import TorchFramework
'''
KERAS_TRAIN = "from models.common.keras_framework import KerasFramework\n"
SHA = "a" * 64


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            *model_tailor.rules(),
            QueryRule(PutativeTargets, [PutativeModelTargetsRequest]),
        ],
        target_types=[MlModelTarget, MlDatasetTarget],
    )


def test_framework_from_the_harness_import():
    assert framework_of(TORCH_TRAIN) == "torch"
    assert framework_of(KERAS_TRAIN) == "tensorflow"
    assert framework_of("import numpy\n") is None
    assert framework_of(TORCH_TRAIN + KERAS_TRAIN) is None


def test_dataset_named_in_train_py_or_the_only_one():
    datasets = {"digits": "//d:digits", "breast_cancer": "//d:breast_cancer"}
    assert dataset_of(TORCH_TRAIN, datasets) == "//d:breast_cancer"
    assert dataset_of(KERAS_TRAIN, datasets) is None
    assert dataset_of(KERAS_TRAIN, {"digits": "//d:digits"}) == "//d:digits"


def test_a_new_model_directory_gets_its_targets_and_a_modelled_one_does_not(rule_runner):
    rule_runner.write_files(
        {
            "d/BUILD": (
                f'ml_dataset(name="digits", source="digits.npz", sha256="{SHA}")\n'
                f'ml_dataset(name="breast_cancer", source="bc.npz", sha256="{SHA}")\n'
            ),
            "models/new_mlp/train.py": TORCH_TRAIN,
            "models/new_mlp/config.json": "{}",
            "models/old/train.py": KERAS_TRAIN + "# digits\n",
            "models/old/config.json": "{}",
            "models/old/BUILD": (
                'ml_model(name="old", framework="tensorflow", entry_point="train.py", '
                'config="config.json", dataset="//d:digits", thresholds={"accuracy": 0.9})\n'
            ),
            # a train.py without a config.json is no model directory
            "scripts/train.py": TORCH_TRAIN,
        }
    )
    found = rule_runner.request(
        PutativeTargets,
        [PutativeModelTargetsRequest(("d", "models/new_mlp", "models/old", "scripts"))],
    )
    by_alias = {t.type_alias: t for t in found}
    assert sorted(by_alias) == ["ml_model", "model_image", "python_sources"]
    assert all(t.path == "models/new_mlp" for t in found)
    assert dict(by_alias["python_sources"].kwargs) == {"resolve": "torch"}
    model: PutativeTarget = by_alias["ml_model"]
    assert model.name == "new_mlp"
    assert {k: v for k, v in model.kwargs.items() if k != "thresholds"} == {
        "framework": "torch",
        "entry_point": "train.py",
        "config": "config.json",
        "dataset": "//d:breast_cancer",
    }
    assert dict(by_alias["model_image"].kwargs) == {"model": ":new_mlp"}
    # What tailor writes into the BUILD file is valid BUILD syntax.
    stanza = model.generate_build_file_stanza("    ")
    assert '    thresholds={"accuracy": 0.9},\n' in stanza
    assert stanza.startswith("# A starting gate: review `thresholds` before merging.\nml_model(\n")
    assert "name=" not in stanza  # the directory's name
