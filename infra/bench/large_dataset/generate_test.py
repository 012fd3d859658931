"""The large dataset's generator: the same bytes on every run, a file the streamed loader reads."""

from pathlib import Path

import numpy as np
import pytest

from infra.bench.large_dataset import generate as generate_module
from infra.bench.large_dataset.generate import CHUNK, SIDE, generate
from models.common.datasets import StreamedFeatures, load_dataset, sha256_of

DIGITS = Path("models/datasets/digits.npz")


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    samples = CHUNK + 123  # more than one chunk, the last one partial
    paths = [tmp_path / f"{name}.npz" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (0, 0, 1)):
        generate(path, DIGITS, samples, seed)
    assert sha256_of(paths[0]) == sha256_of(paths[1])
    assert sha256_of(paths[0]) != sha256_of(paths[2])


def test_the_file_streams_as_labelled_digit_images(tmp_path):
    path = tmp_path / "large.npz"
    generate(path, DIGITS, 2_000, seed=0)
    streamed = load_dataset(path, stream=True)
    in_memory = load_dataset(path, stream=False)
    assert isinstance(streamed.features, StreamedFeatures)
    assert streamed.features.shape == (2_000, SIDE, SIDE)
    assert np.array_equal(np.asarray(streamed.features), in_memory.features)
    assert streamed.class_names == tuple(str(d) for d in range(10))
    assert set(np.unique(streamed.labels)) == set(range(10))
    assert 0.0 <= in_memory.features.min() and in_memory.features.max() <= 1.0


def test_a_run_that_fails_midway_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "large.npz"
    make_chunk = generate_module.make_chunk

    def fail_after_the_first_chunk(digits, labels, seed, index, count):
        if index > 0:
            raise OSError("disk full")
        return make_chunk(digits, labels, seed, index, count)

    monkeypatch.setattr(generate_module, "make_chunk", fail_after_the_first_chunk)
    with pytest.raises(OSError, match="disk full"):
        generate(path, DIGITS, CHUNK + 1, seed=0)
    assert list(tmp_path.iterdir()) == []
