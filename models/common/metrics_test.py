import numpy as np
import pytest
from sklearn import metrics as skm

from models.common.metrics import (
    GATED_METRICS,
    classification_metrics,
    confusion_matrix,
    epoch_metrics,
)


def test_confusion_matrix_rows_are_true_classes():
    m = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_metrics_agree_with_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 500)
    predictions = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 5, 500))
    names = [f"c{i}" for i in range(5)]
    m = classification_metrics(labels, predictions, names)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    p, r, f, s = skm.precision_recall_fscore_support(labels, predictions, zero_division=0)
    assert [m["per_class"][n]["precision"] for n in names] == pytest.approx(p)
    assert [m["per_class"][n]["recall"] for n in names] == pytest.approx(r)
    assert [m["per_class"][n]["f1"] for n in names] == pytest.approx(f)
    assert [m["per_class"][n]["support"] for n in names] == s.tolist()
    assert m["macro_f1"] == pytest.approx(skm.f1_score(labels, predictions, average="macro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, predictions).tolist()
    assert set(GATED_METRICS) <= set(m)


def test_class_never_predicted_has_zero_precision_not_nan():
    m = classification_metrics(np.array([0, 1, 1]), np.array([1, 1, 1]), ["a", "b"])
    assert m["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_out_of_range_predictions_are_rejected():
    with pytest.raises(ValueError, match="predictions outside"):
        confusion_matrix(np.array([0]), np.array([3]), 2)


def test_epoch_metrics_agree_with_scikit_learn_log_loss_and_f1():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 2 * np.eye(4)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    record = epoch_metrics(labels, probabilities, ["a", "b", "c", "d"])
    assert set(record) == {"val_loss", *(f"val_{name}" for name in GATED_METRICS)}
    assert record["val_loss"] == pytest.approx(skm.log_loss(labels, probabilities))
    predictions = probabilities.argmax(axis=1)
    assert record["val_accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    assert record["val_macro_f1"] == pytest.approx(
        skm.f1_score(labels, predictions, average="macro", zero_division=0)
    )
