"""Loading datasets and splitting them the same way for every model.

A small dataset is read into memory as float32. A large one (features above
`STREAM_ABOVE_BYTES` once float32, stored uncompressed, as `np.savez` and
`infra/bench/large_dataset/generate.py` write them) stays in its file: its features are read
where they lie in the `.npz`, only the rows asked for, and converted to float32 one batch at a
time (`StreamedFeatures`), so training on a 1 GB uint8 set never holds a 4 GB float32 (or 8 GB
float64) copy of it, nor the file itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Features larger than this in float32 are streamed from the file instead of read whole.
STREAM_ABOVE_BYTES = 256 << 20
# Rows read and converted at a time (bounds the float64 intermediate of a large read).
ROWS_PER_READ = 1024


class DatasetError(Exception):
    """A dataset file is missing, corrupt, or not the one a model declared."""


class _RowFile:
    """The rows of an array stored uncompressed in a file, read by position (`preadv`).

    Not memory-mapped: a mapping read at scattered rows kept far more of the file resident in the
    process than it read, even when released after every read (the kernel maps more than the
    page touched around each fault; measured in infra/bench/large_dataset/README.md).
    Positioned reads keep only the rows asked for.
    """

    def __init__(self, path: Path, offset: int, row_shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.offset, self.row_shape, self.dtype = path, offset, row_shape, dtype
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def read(self, rows: np.ndarray) -> np.ndarray:
        buffer = np.empty((len(rows), self.row_bytes), dtype=np.uint8)
        for i, row in enumerate(rows.tolist()):
            got = os.preadv(self.fd, [buffer[i]], self.offset + row * self.row_bytes)
            if got != self.row_bytes:
                raise DatasetError(f"dataset file {self.path} ends inside row {row} (truncated?)")
        return buffer.view(self.dtype).reshape(len(rows), *self.row_shape)


class StreamedFeatures:
    """Features kept in the dataset file, read as float32 (then `transform`ed) a batch at a time.

    Indexing with a slice or an array of row numbers returns an ndarray of those rows only;
    `subset` and `transformed` return new views without reading anything.
    """

    dtype = np.dtype(np.float32)

    def __init__(
        self,
        file: _RowFile,
        length: int,
        scale: float,
        rows: np.ndarray | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._file, self._length, self._scale = file, length, scale
        self._rows, self._transform = rows, transform
        n = length if rows is None else len(rows)
        self.shape = (n, *self._convert(np.zeros((1, *file.row_shape), file.dtype)).shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        # Exactly the in-memory loader's arithmetic, so both give bit-identical features.
        features = (raw.astype(np.float64) / self._scale).astype(np.float32)
        return features if self._transform is None else self._transform(features)

    def _positions(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(len(self))[key]
        positions = np.asarray(key)
        if (
            positions.dtype == bool
            or positions.ndim != 1
            or not np.issubdtype(positions.dtype, np.integer)
        ):
            raise TypeError("StreamedFeatures takes a slice or a 1-d array of row numbers")
        return positions

    def __getitem__(self, key) -> np.ndarray:
        rows = self._positions(key)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row numbers outside 0..{len(self) - 1}")
        rows = rows % len(self) if len(rows) else rows
        if self._rows is not None:
            rows = self._rows[rows]
        features = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for start in range(0, len(rows), ROWS_PER_READ):
            chunk = self._file.read(rows[start : start + ROWS_PER_READ])
            features[start : start + len(chunk)] = self._convert(chunk)
        return features

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        features = self[:]
        return features if dtype is None else features.astype(dtype)

    def subset(self, positions: np.ndarray) -> StreamedFeatures:
        rows = positions if self._rows is None else self._rows[positions]
        return StreamedFeatures(self._file, self._length, self._scale, rows, self._transform)

    def transformed(self, transform: Callable[[np.ndarray], np.ndarray]) -> StreamedFeatures:
        """This view with `transform` applied to every batch read (e.g. a framework's layout)."""
        return StreamedFeatures(self._file, self._length, self._scale, self._rows, transform)


Features = np.ndarray | StreamedFeatures


@dataclass(frozen=True)
class Dataset:
    name: str
    features: Features  # float32, shape (n, *feature_shape); streamed for a large dataset
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


def load_dataset(
    path: Path, expected_sha256: str | None = None, *, stream: bool | None = None
) -> Dataset:
    """Reads a dataset written by `models/datasets/export_datasets.py` (or any `.npz` with its
    `features`, `labels`, `class_names` and `scale` arrays).

    Features are scaled by the file's `scale` (digits: intensities 0..16 become 0..1) and cast to
    float32, the dtype every model and the server use. `stream` (default: only when the float32
    features would exceed `STREAM_ABOVE_BYTES`) memory-maps them instead; that needs them stored
    uncompressed.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        with np.load(path, allow_pickle=False) as npz:
            labels = npz["labels"].astype(np.int64)
            class_names = tuple(str(c) for c in npz["class_names"])
            scale = float(npz["scale"])
            if stream is None:
                stream = _float32_bytes(npz.zip) > STREAM_ABOVE_BYTES
            if stream:
                features: Features = _streamed_features(path, scale)
            else:
                features = (npz["features"].astype(np.float64) / scale).astype(np.float32)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"dataset file {path} is not a valid dataset: {e}") from e
    if len(features) != len(labels):
        raise DatasetError(f"dataset file {path}: {len(features)} samples but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatasetError(f"dataset file {path}: labels outside 0..{len(class_names) - 1}")
    return Dataset(path.stem, features, labels, class_names)


def _float32_bytes(archive: zipfile.ZipFile) -> int:
    """The size of the features as float32, from the member's header (nothing else read)."""
    with archive.open("features.npy") as member:
        shape, _, _ = _npy_header(member)
    return int(np.prod(shape, dtype=np.int64)) * 4


def _npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a `.npy` header, leaving `member` at the data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


def _streamed_features(path: Path, scale: float) -> StreamedFeatures:
    """The `features.npy` member of the archive, read where it lies in the file."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo("features.npy")
        except KeyError:
            raise KeyError("no features array") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(
            "its features are compressed, so they cannot be streamed; write it with np.savez "
            "(not savez_compressed)"
        )
    size = path.stat().st_size
    with path.open("rb") as f:
        # The member's data follows its local header: 30 bytes, then its name and extra field.
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        start = info.header_offset + 30 + name_length + extra_length
        f.seek(start)
        shape, fortran_order, dtype = _npy_header(f)
        offset = f.tell()
    if fortran_order or dtype.hasobject or not shape:
        raise ValueError("its features are not a C-ordered array of numbers")
    end = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if end > start + info.file_size or end > size:
        raise ValueError(f"its features need {end} bytes but the file has {size} (truncated?)")
    return StreamedFeatures(_RowFile(path, offset, tuple(shape[1:]), dtype), shape[0], scale)


def _subset(dataset: Dataset, indices: np.ndarray, *, streamed: bool = False) -> Dataset:
    """The samples at `indices`; of streamed features a view (`streamed`) or an in-memory copy."""
    features = dataset.features
    if isinstance(features, StreamedFeatures):
        features = features.subset(indices) if streamed else features[indices]
    else:
        features = features[indices]
    return Dataset(dataset.name, features, dataset.labels[indices], dataset.class_names)


def split_dataset(
    dataset: Dataset, *, seed: int, validation_fraction: float = 0.15, test_fraction: float = 0.2
) -> Split:
    """A stratified split that depends only on the data and the seed (never on global RNG state).

    Each class is shuffled with its own generator stream and cut by rounding, so every class is
    represented in every part in proportion. Of a streamed dataset only the training part stays
    streamed; validation and test are read into memory (keep their fractions small).
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
        train=_subset(dataset, chosen["train"], streamed=True),
        validation=_subset(dataset, chosen["validation"]),
        test=_subset(dataset, chosen["test"]),
    )
