"""Plots infra/bench/scale.py's CSV: wall time against the number of models, one line per case.

./pants run infra/bench/plot.py -- <scale.csv> <scale.png>   (absolute paths)
"""

from __future__ import annotations

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "cold": "cold: all trained",
    "noop_warm": "no-op, pantsd warm",
    "noop_cold": "no-op, new session (--no-pantsd)",
    "config": "one model's config edited",
    "shared": "one shared module edited (half retrain)",
    "naive": "naive CI: every model retrained",
    "baseline": "Pants start-up + target graph (list ::)",
}


def plot(csv_path: str, png_path: str) -> None:
    with open(csv_path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["n"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for case, label in LABELS.items():
        points = [(int(r["n"]), float(r[f"{case}_s"])) for r in rows if r.get(f"{case}_s")]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel("models in the repo (N)")
    ax.set_ylabel("wall time of the ./pants call (s)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Cost of a change against the number of models (2-core machine)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


if __name__ == "__main__":
    plot(sys.argv[1], sys.argv[2])
