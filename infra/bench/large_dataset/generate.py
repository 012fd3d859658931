"""Writes the large-data benchmark's dataset: about 1 GB of 32x32 digit images, the same bytes
on every run.

Each image is one of the committed 8x8 digits (`models/datasets/digits.npz`), scaled up 4x,
shifted by up to 4 pixels each way, dimmed by a random factor and overlaid with noise. Images are
made in chunks, each from its own seeded generator stream, and written straight into an
uncompressed `.npz` (the layout `np.savez` writes, with fixed timestamps), so memory stays at one
chunk and `models/common/datasets.py` can memory-map the features where they lie in the file.

    python infra/bench/large_dataset/generate.py OUT.npz [--samples N] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from models.common.datasets import sha256_of

SIDE = 32  # image side in pixels: 1 KiB per image
SHIFT = 4  # largest shift in pixels, each way
CHUNK = 20_000  # images per generator stream
DEFAULT_SAMPLES = 1_000_000  # 1.02 GB of features
# Fixed member timestamps: the same inputs give the same file, byte for byte.
EPOCH = (1980, 1, 1, 0, 0, 0)


def _digits(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The committed digits, scaled up to 32x32 uint8 images (0..16 becomes 0..240)."""
    with np.load(path, allow_pickle=False) as npz:
        digits = npz["features"].astype(np.uint16) * 15
        labels, class_names = npz["labels"].astype(np.int64), npz["class_names"]
    large = np.kron(digits, np.ones((SIDE // 8, SIDE // 8), dtype=np.uint16)).astype(np.uint8)
    return large, labels, class_names


def make_chunk(
    digits: np.ndarray, digit_labels: np.ndarray, seed: int, index: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` images and their labels from the generator stream (seed, index)."""
    rng = np.random.default_rng([seed, index])
    chosen = rng.integers(0, len(digits), size=count)
    canvas = np.zeros((count, SIDE + 2 * SHIFT, SIDE + 2 * SHIFT), dtype=np.uint8)
    canvas[:, SHIFT : SHIFT + SIDE, SHIFT : SHIFT + SIDE] = digits[chosen]
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (SIDE, SIDE), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * SHIFT + 1, size=(2, count))
    images = windows[np.arange(count), dy, dx].astype(np.float32)
    brightness = rng.uniform(0.6, 1.0, size=(count, 1, 1)).astype(np.float32)
    noise = rng.integers(0, 48, size=images.shape, dtype=np.uint8)
    images = np.clip(images * brightness + noise, 0, 255).astype(np.uint8)
    return images, digit_labels[chosen]


def _member(archive: zipfile.ZipFile, name: str):
    info = zipfile.ZipInfo(name, date_time=EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return archive.open(info, "w", force_zip64=True)


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    with _member(archive, f"{name}.npy") as member:
        member.write(buffer.getvalue())


def generate(out: Path, digits_path: Path, samples: int, seed: int) -> None:
    """Writes the dataset to `out` (via a temporary file: a failed run leaves nothing)."""
    if samples <= 0:
        raise ValueError(f"--samples must be positive, got {samples}")
    digits, digit_labels, class_names = _digits(digits_path)
    labels = np.empty(samples, dtype=np.int64)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with _member(archive, "features.npy") as member:
                header = {"descr": "|u1", "fortran_order": False, "shape": (samples, SIDE, SIDE)}
                np.lib.format.write_array_header_1_0(member, header)
                for index, start in enumerate(range(0, samples, CHUNK)):
                    count = min(CHUNK, samples - start)
                    images, chunk_labels = make_chunk(digits, digit_labels, seed, index, count)
                    member.write(images.tobytes())
                    labels[start : start + count] = chunk_labels
            _write_array(archive, "labels", labels)
            _write_array(archive, "class_names", class_names)
            _write_array(archive, "scale", np.float64(255))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digits", type=Path, default=Path("models/datasets/digits.npz"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        generate(args.out, args.digits, args.samples, args.seed)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    seconds = time.perf_counter() - started
    size = args.out.stat().st_size
    print(
        f"wrote {args.out}: {args.samples} images, {size} bytes, "
        f"sha256 {sha256_of(args.out)}, in {seconds:.1f}s"
    )


if __name__ == "__main__":
    main()
