"""TensorFlow/Keras side of the training harness: deterministic CPU training and ONNX export."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

# One thread and quiet logs; both must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# oneDNN picks kernels by CPU features; off, results do not depend on the machine's CPU.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.common.config import TrainingConfig  # noqa: E402
from models.common.datasets import Split  # noqa: E402
from models.common.harness import (  # noqa: E402
    INPUT_NAME,
    OUTPUT_NAMES,
    Framework,
    ModelSpec,
    StepError,
)
from models.common.metrics import epoch_metrics  # noqa: E402

BuildModel = Callable[[TrainingConfig, ModelSpec], keras.Model]


class KerasFramework(Framework):
    """Models end in a softmax layer, so their outputs are already class probabilities."""

    name = "tensorflow"

    def __init__(self, build_model: BuildModel) -> None:
        self.build_model = build_model

    def prepare(self, features: np.ndarray) -> np.ndarray:
        # Images (n, h, w) get a channel axis last, as Keras's Conv2D wants (n, h, w, c).
        return features[..., np.newaxis] if features.ndim == 3 else features

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    def train(self, config: TrainingConfig, spec: ModelSpec, split: Split):
        if not isinstance(spec.train_features, np.ndarray):
            raise StepError(
                "this dataset is too large to read into memory and is streamed from its file; "
                "streamed training is implemented for torch models only"
            )
        model = self.build_model(config, spec)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        x_val, y_val = self.prepare(split.validation.features), split.validation.labels
        validation = []  # one record per epoch; inference only, so training is unchanged
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: validation.append(
                epoch_metrics(
                    y_val, np.asarray(model(x_val, training=False)), split.validation.class_names
                )
            )
        )
        fit = model.fit(
            spec.train_features,
            split.train.labels,
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=[record],
        )
        history = [
            {"epoch": i + 1, "train_loss": float(loss), **on_validation}
            for i, (loss, on_validation) in enumerate(zip(fit.history["loss"], validation))
        ]
        if not np.isfinite(history[-1]["train_loss"]):
            raise StepError(f"training diverged: final loss {history[-1]['train_loss']}")
        return model, {"history": history, "final": history[-1]}

    def save(self, model: keras.Model, directory: Path) -> None:
        model.save_weights(directory / "checkpoint.weights.h5")

    def load(self, config: TrainingConfig, spec: ModelSpec, directory: Path) -> keras.Model:
        model = self.build_model(config, spec)
        model.load_weights(directory / "checkpoint.weights.h5")
        return model

    def predict_proba(self, model: keras.Model, features: np.ndarray) -> np.ndarray:
        return np.asarray(model(features, training=False))

    def to_onnx(self, model: keras.Model, spec: ModelSpec, directory: Path) -> onnx.ModelProto:
        import tf2onnx

        signature = [tf.TensorSpec((None, *spec.input_shape), tf.float32, name=INPUT_NAME)]

        @tf.function(input_signature=signature)
        def serve(x):
            probabilities = model(x, training=False)
            return probabilities, tf.argmax(probabilities, axis=1, output_type=tf.int64)

        proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=17)
        if len(proto.graph.output) != len(OUTPUT_NAMES):
            raise StepError(f"tf2onnx produced {len(proto.graph.output)} outputs, expected 2")
        return proto

    def library_versions(self) -> dict[str, str]:
        return {
            p: version(p)
            for p in ("tensorflow-cpu", "keras", "tf2onnx", "numpy", "onnx", "onnxruntime")
        }
