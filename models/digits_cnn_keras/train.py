"""A Keras CNN on the 8x8 digits: (Conv2D -> MaxPooling2D) x2, Flatten, Dense, softmax."""

import keras

from models.common.config import TrainingConfig
from models.common.harness import ModelSpec, run
from models.common.keras_framework import KerasFramework


def build_model(config: TrainingConfig, spec: ModelSpec) -> keras.Model:
    params = config.architecture({"conv1_filters": 16, "conv2_filters": 32, "hidden_units": 64})
    return keras.Sequential(
        [
            keras.Input(spec.input_shape),
            keras.layers.Conv2D(params["conv1_filters"], 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(params["conv2_filters"], 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(params["hidden_units"], activation="relu"),
            keras.layers.Dense(spec.num_classes, activation="softmax"),
        ]
    )


if __name__ == "__main__":
    run(KerasFramework(build_model))
