from pathlib import Path

from models.common import model_checks
from models.common.keras_framework import KerasFramework
from models.digits_cnn_keras.train import build_model

CONFIG = Path("models/digits_cnn_keras/config.json")
DATASET = Path("models/datasets/digits.npz")


def test_output_shape():
    model_checks.check_output_shape(KerasFramework(build_model), CONFIG, DATASET)


def test_loss_decreases_on_one_batch():
    model_checks.check_loss_decreases_on_one_batch(KerasFramework(build_model), CONFIG, DATASET)


def test_config_validation(tmp_path):
    model_checks.check_config_validation(KerasFramework(build_model), CONFIG, DATASET, tmp_path)
