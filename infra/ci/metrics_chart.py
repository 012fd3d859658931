"""The PNG chart of `infra/ci/metrics-diff`: each changed model's gated metrics, before and after.

    metrics_chart.py metrics-diff.json metrics-diff.png

Agg, matplotlib's own DejaVu font (never a system font) and no software name or date in the PNG,
so the same diff gives the same bytes. A PNG, unlike the report's SVGs, because a PR comment
shows it inline.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

# matplotlib writes a font cache under MPLCONFIGDIR; a private one keeps a sandbox self-contained.
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mplconfig-"))
os.environ["SOURCE_DATE_EPOCH"] = "0"

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from infra.ci.metrics_diff import GATED_METRICS  # noqa: E402

PNG_METADATA = {"Software": None}


def use_bundled_font() -> None:
    """Only the fonts inside matplotlib's own data directory: a system font never sneaks in."""
    bundled = (Path(matplotlib.get_data_path()) / "fonts" / "ttf").resolve()
    font_manager.fontManager.ttflist = [
        font
        for font in font_manager.fontManager.ttflist
        if Path(font.fname).resolve().parent == bundled
    ]
    if not font_manager.fontManager.ttflist:
        raise RuntimeError(f"no fonts found in matplotlib's own {bundled}")
    matplotlib.rcParams.update(
        {"font.family": "DejaVu Sans", "path.simplify": False, "figure.dpi": 100}
    )


def chart(diff: dict):
    use_bundled_font()
    changed = diff["changed"]
    figure, grid = plt.subplots(len(changed), 1, figsize=(7.0, 2.6 * len(changed)), squeeze=False)
    width = 0.38
    for axes, model in zip(grid[:, 0], changed):
        metrics = model["metrics"]
        positions = range(len(GATED_METRICS))
        base = [metrics[m]["base"] for m in GATED_METRICS]
        head = [metrics[m]["head"] for m in GATED_METRICS]
        axes.bar([p - width / 2 for p in positions], base, width, label="base")
        bars = axes.bar([p + width / 2 for p in positions], head, width, label="head")
        for bar, name in zip(bars, GATED_METRICS):
            if metrics[name]["regression"]:
                bar.set_hatch("//")
                bar.set_edgecolor("tab:red")
        for p, name in zip(positions, GATED_METRICS):
            threshold = metrics[name]["threshold"]
            if threshold is not None:
                axes.hlines(threshold, p - width, p + width, colors="tab:red", linestyles="--")
        low = min(base + head + [m["threshold"] or 1.0 for m in metrics.values()])
        axes.set_ylim(max(0.0, low - 0.05), 1.0)
        axes.set_xticks(list(positions), list(GATED_METRICS))
        title = model["address"] + ("  (regressed)" if model["regressed"] else "")
        axes.set_title(title, fontsize="medium")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: metrics_chart.py METRICS_DIFF_JSON OUT_PNG")
    diff = json.loads(Path(argv[0]).read_text())
    if not diff["changed"]:
        sys.exit("metrics_chart: no changed model to draw")
    figure = chart(diff)
    figure.savefig(argv[1], format="png", metadata=PNG_METADATA)


if __name__ == "__main__":
    main(sys.argv[1:])
