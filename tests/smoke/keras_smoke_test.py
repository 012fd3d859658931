"""The tensorflow resolve really is a working CPU TensorFlow + Keras: a tiny model fits an epoch."""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.common.datasets import load_dataset, split_dataset


def test_tensorflow_sees_no_gpu_and_uses_keras_3():
    assert tf.config.list_physical_devices("GPU") == []
    assert keras.__version__.startswith("3.")


def test_tiny_keras_model_fits_one_epoch_on_digits():
    keras.utils.set_random_seed(0)
    split = split_dataset(load_dataset(Path("models/datasets/digits.npz")), seed=0)
    x = split.train.features[..., np.newaxis]  # N, 8, 8, 1
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    before = model.evaluate(x, split.train.labels, verbose=0)
    history = model.fit(x, split.train.labels, epochs=1, batch_size=64, verbose=0)
    assert len(history.history["loss"]) == 1
    assert model.evaluate(x, split.train.labels, verbose=0) < before
    assert model.predict(x[:5], verbose=0).shape == (5, 10)
