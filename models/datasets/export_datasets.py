"""Writes the datasets that scikit-learn ships (offline) as committed `.npz` files.

Run once by hand (`python models/datasets/export_datasets.py`); the files and their sha256s are
committed, so training never depends on which scikit-learn happens to be installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn import datasets


def _write(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)
    print(f"{path.name}: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")


def main() -> None:
    here = Path(__file__).parent
    digits = datasets.load_digits()
    _write(
        here / "digits.npz",
        features=digits.images.astype(np.uint8),  # 8x8 intensities 0..16
        labels=digits.target.astype(np.int64),
        class_names=np.array([str(c) for c in digits.target_names]),
        scale=np.array(16.0),
    )
    cancer = datasets.load_breast_cancer()
    _write(
        here / "breast_cancer.npz",
        features=cancer.data.astype(np.float64),
        labels=cancer.target.astype(np.int64),
        class_names=np.array([str(c) for c in cancer.target_names]),
        scale=np.array(1.0),
    )


if __name__ == "__main__":
    main()
