from pathlib import Path

import numpy as np
import pytest

from models.common.datasets import (
    DatasetError,
    load_dataset,
    sha256_of,
    split_dataset,
    verify_sha256,
)

DIGITS = Path("models/datasets/digits.npz")
CANCER = Path("models/datasets/breast_cancer.npz")
DIGITS_SHA256 = "aa0266383e99f4be23c4d287fdf1932181874f48822e18c35fc52675ae0ac154"


def test_digits_loads_as_scaled_float32_images():
    ds = load_dataset(DIGITS, DIGITS_SHA256)
    assert len(ds) == 1797
    assert ds.feature_shape == (8, 8)
    assert ds.features.dtype == np.float32
    assert ds.features.min() == 0.0 and ds.features.max() == 1.0
    assert ds.num_classes == 10
    assert np.bincount(ds.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_breast_cancer_loads_as_tabular_features():
    ds = load_dataset(CANCER)
    assert ds.features.shape == (569, 30)
    assert ds.class_names == ("malignant", "benign")


def test_sha256_mismatch_names_both_digests(tmp_path):
    copy = tmp_path / "digits.npz"
    data = bytearray(DIGITS.read_bytes())
    data[100] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as e:
        verify_sha256(copy, DIGITS_SHA256)
    assert DIGITS_SHA256 in str(e.value)
    assert sha256_of(copy) in str(e.value)


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="not a valid dataset"):
        load_dataset(bad)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing.npz")


def test_split_is_deterministic_stratified_and_disjoint():
    ds = load_dataset(DIGITS)
    a = split_dataset(ds, seed=7)
    b = split_dataset(ds, seed=7)
    c = split_dataset(ds, seed=8)
    assert np.array_equal(a.test.features, b.test.features)
    assert np.array_equal(a.train.labels, b.train.labels)
    assert not np.array_equal(a.test.features, c.test.features)
    assert len(a.train) + len(a.validation) + len(a.test) == len(ds)
    # Every sample lands in exactly one part.
    rows = {row.tobytes() for part in (a.train, a.validation, a.test) for row in part.features}
    assert len(rows) == len({row.tobytes() for row in ds.features})
    # Stratified: each class's share of the test split is within one sample of 20 %.
    for label, count in enumerate(np.bincount(ds.labels)):
        assert abs(np.sum(a.test.labels == label) - 0.2 * count) <= 1


def test_split_rejects_fractions_that_leave_no_training_data():
    ds = load_dataset(CANCER)
    with pytest.raises(ValueError):
        split_dataset(ds, seed=0, validation_fraction=0.5, test_fraction=0.5)
