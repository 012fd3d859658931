"""Plots infra/bench/shards.py's results: critical path against the number of build shards.

./pants run infra/bench/shards_plot.py -- <shards.json> <shards.png>   (absolute paths)
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(json_path: str, png_path: str) -> None:
    with open(json_path) as f:
        rows = json.load(f)["simulated"]
    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for scenario, label in (
            ("cold", "cold: every model trains"),
            ("shared", "shared module edited: half retrain"),
        ):
            points = sorted(
                (r["shards"], r["critical_path_s"])
                for r in rows
                if r["n"] == n and r["scenario"] == scenario
            )
            line = ax.plot(*zip(*points), marker="o", label=f"{label}: critical path")[0]
            single = [
                r["single_runner_s"] for r in rows if r["n"] == n and r["scenario"] == scenario
            ][0]
            ax.axhline(
                single,
                color=line.get_color(),
                linestyle=":",
                label=f"{label}: one runner, no fan-out",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["shards"] for r in rows if r["n"] == n and r["scenario"] == "cold"])
        ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
        ax.set_xlabel("build shards")
        ax.set_ylabel("seconds (modelled from measured costs)")
        ax.set_title(f"N = {n} models")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("Sharded CI: plan + slowest build shard + assemble (infra/bench/shards.py)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    plot(sys.argv[1], sys.argv[2])
