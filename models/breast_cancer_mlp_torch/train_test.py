from pathlib import Path

from models.breast_cancer_mlp_torch.train import build_model
from models.common import model_checks
from models.common.torch_framework import TorchFramework

CONFIG = Path("models/breast_cancer_mlp_torch/config.json")
DATASET = Path("models/datasets/breast_cancer.npz")


def test_output_shape():
    model_checks.check_output_shape(TorchFramework(build_model), CONFIG, DATASET)


def test_loss_decreases_on_one_batch():
    model_checks.check_loss_decreases_on_one_batch(TorchFramework(build_model), CONFIG, DATASET)


def test_config_validation(tmp_path):
    model_checks.check_config_validation(TorchFramework(build_model), CONFIG, DATASET, tmp_path)
