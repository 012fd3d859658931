"""The memory the dataset loader itself takes for one training epoch over a streamed dataset.

Loads the file as the harness does (`load_dataset`, `split_dataset` with the benchmark model's
fractions), reads every training batch in a shuffled order, as the torch harness does, and prints
the process's peak resident memory (VmHWM) and its resident memory now, split into its own
(RssAnon) and mapped files (RssFile), after each phase, as JSON. No framework is imported, so
what it prints is the loader's share of a build process's memory.

    ./pants run infra/bench/large_dataset/loader_memory.py -- DATASET.npz --batch-size 256 \
        --validation-fraction 0.01 --test-fraction 0.02
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.common.datasets import StreamedFeatures, load_dataset, split_dataset

FIELDS = ("VmHWM", "RssAnon", "RssFile")


def memory() -> dict[str, int]:
    """This process's memory figures in bytes, from /proc/self/status."""
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            figures[name] = int(value.split()[0]) * 1024
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--validation-fraction", type=float, required=True)
    parser.add_argument("--test-fraction", type=float, required=True)
    args = parser.parse_args(argv)
    phases = {"start": memory()}
    dataset = load_dataset(args.dataset)
    phases["loaded"] = memory()
    split = split_dataset(
        dataset,
        seed=0,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    phases["split"] = memory()
    features = split.train.features
    order = np.random.default_rng(0).permutation(len(features))
    started = time.perf_counter()
    for start in range(0, len(order), args.batch_size):
        features[order[start : start + args.batch_size]]
    seconds = time.perf_counter() - started
    phases["epoch"] = memory()
    print(
        json.dumps(
            {
                "streamed": isinstance(features, StreamedFeatures),
                "train_samples": len(features),
                "epoch_read_seconds": round(seconds, 2),
                "memory": phases,
            }
        )
    )


if __name__ == "__main__":
    main()
