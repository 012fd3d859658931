"""Classification metrics computed with numpy only, so they are identical in every resolve."""

from __future__ import annotations

import numpy as np

# The metrics a model's `thresholds` may name; each is a fraction in [0, 1].
GATED_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} differ in shape"
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0 (as scikit-learn's zero_division=0)."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...] | list[str]
) -> dict:
    """Accuracy, per-class precision/recall/F1 and their macro averages, and the confusion matrix."""
    num_classes = len(class_names)
    matrix = confusion_matrix(labels, predictions, num_classes)
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, actual)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = matrix.sum()
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "samples": int(total),
    }


def epoch_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...] | list[str]
) -> dict:
    """One epoch's record on the validation split: its cross-entropy loss and the gated metrics.

    Both frameworks record these the same way, so every model's report draws the same curves.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    picked = probabilities[np.arange(len(labels)), labels]
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), class_names)
    return {
        "val_loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        **{f"val_{name}": metrics[name] for name in GATED_METRICS},
    }
