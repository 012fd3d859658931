import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.common import datasets
from models.common.datasets import (
    DatasetError,
    StreamedFeatures,
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


# Streamed datasets (read from the file a batch at a time): the same numbers as an in-memory load, batch by batch.


def _write_images(path: Path, n: int = 300, *, compressed: bool = False) -> None:
    rng = np.random.default_rng(0)
    save = np.savez_compressed if compressed else np.savez
    save(
        path,
        features=rng.integers(0, 256, size=(n, 6, 5), dtype=np.uint8),
        labels=rng.integers(0, 3, size=n),
        class_names=np.array(["a", "b", "c"]),
        scale=np.float64(255),
    )


def test_streamed_features_give_the_same_batches_as_an_in_memory_load(tmp_path):
    path = tmp_path / "images.npz"
    _write_images(path)
    in_memory = load_dataset(path, stream=False)
    streamed = load_dataset(path, stream=True)
    assert isinstance(streamed.features, StreamedFeatures)
    assert streamed.features.shape == in_memory.features.shape == (300, 6, 5)
    order = np.random.default_rng(1).permutation(300)
    for start in range(0, 300, 64):
        batch = order[start : start + 64]
        got = streamed.features[batch]
        assert got.dtype == np.float32
        assert np.array_equal(got, in_memory.features[batch])
    assert np.array_equal(streamed.features[10:20], in_memory.features[10:20])
    assert np.array_equal(np.asarray(streamed.features), in_memory.features)
    assert np.array_equal(streamed.labels, in_memory.labels)


def test_a_streamed_split_keeps_train_streamed_and_equals_the_in_memory_split(tmp_path):
    path = tmp_path / "images.npz"
    _write_images(path)
    a = split_dataset(load_dataset(path, stream=False), seed=3)
    b = split_dataset(load_dataset(path, stream=True), seed=3)
    assert isinstance(b.train.features, StreamedFeatures)
    assert isinstance(b.test.features, np.ndarray)
    assert np.array_equal(a.test.features, b.test.features)
    assert np.array_equal(a.validation.features, b.validation.features)
    rows = np.array([len(a.train) - 1, 0, 7])
    assert np.array_equal(b.train.features[rows], a.train.features[rows])
    with_channel = b.train.features.transformed(lambda x: x[:, np.newaxis])
    assert with_channel.shape == (len(a.train), 1, 6, 5)
    assert np.array_equal(with_channel[rows], a.train.features[rows][:, np.newaxis])


def test_only_large_datasets_are_streamed_by_default(tmp_path, monkeypatch):
    path = tmp_path / "images.npz"
    _write_images(path)
    assert isinstance(load_dataset(path).features, np.ndarray)  # 36 kB as float32
    monkeypatch.setattr(datasets, "STREAM_ABOVE_BYTES", 300 * 6 * 5 * 4 - 1)
    assert isinstance(load_dataset(path).features, StreamedFeatures)


def test_reads_in_many_chunks_give_the_same_features(tmp_path, monkeypatch):
    path = tmp_path / "images.npz"
    _write_images(path)
    monkeypatch.setattr(datasets, "ROWS_PER_READ", 7)
    in_memory, streamed = load_dataset(path, stream=False), load_dataset(path, stream=True)
    assert np.array_equal(np.asarray(streamed.features), in_memory.features)
    assert np.array_equal(streamed.features[np.array([-1, 0])], in_memory.features[[-1, 0]])
    with pytest.raises(IndexError):
        streamed.features[np.array([300])]


def test_a_file_cut_short_while_streaming_names_the_file(tmp_path):
    path = tmp_path / "images.npz"
    _write_images(path)
    streamed = load_dataset(path, stream=True)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DatasetError, match=f"dataset file {path} ends inside row"):
        np.asarray(streamed.features)


def test_a_truncated_streamed_file_names_the_file(tmp_path):
    path = tmp_path / "images.npz"
    _write_images(path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match=f"dataset file {truncated} is not a valid dataset"):
        load_dataset(truncated, stream=True)


def test_features_shorter_than_their_header_says_are_refused(tmp_path):
    # A well-formed archive whose features member claims 300 rows but holds 10.
    path = tmp_path / "short.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (300, 6, 5)}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("features.npy", header.getvalue() + bytes(300))
        for name, array in {
            "labels": np.zeros(300, dtype=np.int64),
            "class_names": np.array(["a"]),
            "scale": np.float64(1),
        }.items():
            member = io.BytesIO()
            np.save(member, array)
            archive.writestr(f"{name}.npy", member.getvalue())
    with pytest.raises(DatasetError, match=rf"dataset file {path} .*truncated"):
        load_dataset(path, stream=True)


def test_compressed_features_cannot_be_streamed(tmp_path):
    path = tmp_path / "compressed.npz"
    _write_images(path, compressed=True)
    with pytest.raises(DatasetError, match=f"dataset file {path} .*compressed"):
        load_dataset(path, stream=True)
