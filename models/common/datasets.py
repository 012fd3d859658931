"""Loading the committed datasets and splitting them the same way for every model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetError(Exception):
    """A dataset file is missing, corrupt, or not the one a model declared."""


@dataclass(frozen=True)
class Dataset:
    name: str
    features: np.ndarray  # float32, shape (n, *feature_shape)
    labels: np.ndarray  # int64, shape (n,)
    class_names: tuple[str, ...]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Split:
    train: Dataset
    validation: Dataset
    test: Dataset


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DatasetError(
            f"dataset {path} does not match its declared sha256: declared {expected.lower()}, "
            f"actual {actual}"
        )


def load_dataset(path: Path, expected_sha256: str | None = None) -> Dataset:
    """Reads a dataset written by `models/datasets/export_datasets.py`.

    Features are scaled by the file's `scale` (digits: intensities 0..16 become 0..1) and cast to
    float32, the dtype every model and the server use.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        with np.load(path, allow_pickle=False) as npz:
            features = npz["features"].astype(np.float64) / float(npz["scale"])
            labels = npz["labels"].astype(np.int64)
            class_names = tuple(str(c) for c in npz["class_names"])
    except (KeyError, ValueError, OSError) as e:
        raise DatasetError(f"dataset file {path} is not a valid dataset: {e}") from e
    if len(features) != len(labels):
        raise DatasetError(f"dataset file {path}: {len(features)} samples but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatasetError(f"dataset file {path}: labels outside 0..{len(class_names) - 1}")
    return Dataset(path.stem, features.astype(np.float32), labels, class_names)


def _subset(dataset: Dataset, indices: np.ndarray) -> Dataset:
    return Dataset(
        dataset.name, dataset.features[indices], dataset.labels[indices], dataset.class_names
    )


def split_dataset(
    dataset: Dataset, *, seed: int, validation_fraction: float = 0.15, test_fraction: float = 0.2
) -> Split:
    """A stratified split that depends only on the data and the seed (never on global RNG state).

    Each class is shuffled with its own generator stream and cut by rounding, so every class is
    represented in every part in proportion.
    """
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError("validation_fraction and test_fraction must each be in (0, 1)")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation_fraction + test_fraction must be below 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in range(dataset.num_classes):
        members = np.flatnonzero(dataset.labels == label)
        members = members[rng.permutation(len(members))]
        n_test = int(round(len(members) * test_fraction))
        n_val = int(round(len(members) * validation_fraction))
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    # Sort so that the order within a part is the dataset's order, not the class order.
    chosen = {name: np.sort(np.concatenate(idx)) for name, idx in parts.items()}
    return Split(
        train=_subset(dataset, chosen["train"]),
        validation=_subset(dataset, chosen["validation"]),
        test=_subset(dataset, chosen["test"]),
    )
