"""Draws the figures of a model's review report as PNGs, byte for byte reproducible.

Run by the `package` rule of `ml_model` (mlbuild/model_report.py) as a cached process, in a venv
holding matplotlib from the python-default lockfile:

    python render_report.py report_input.json OUT_DIR

`report_input.json` holds what the figures show and nothing else (the per-epoch history the
training step recorded; the model's name, test metrics, thresholds and class names) and the
figures' file names; `report.html` around them is written by mlbuild/report_html.py. Same input,
same bytes: the Agg backend, the DejaVu Sans font that ships inside matplotlib (never a system
font), and no software name or date in the PNG metadata.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

# matplotlib writes a font cache under MPLCONFIGDIR; a private one keeps the sandbox self-contained.
os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="mplconfig-")
os.environ["SOURCE_DATE_EPOCH"] = "0"

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

GATED_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
PNG_METADATA = {"Software": None}
DPI = 100


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
        {
            "font.family": "DejaVu Sans",
            "svg.hashsalt": "ml-model-report",
            "svg.fonttype": "none",
            "path.simplify": False,
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
        }
    )


def _save(figure, path: Path) -> None:
    figure.savefig(path, format="png", metadata=PNG_METADATA)
    plt.close(figure)


def loss_figure(history: list[dict]):
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    epochs = [record["epoch"] for record in history]
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        if all(key in record for record in history):
            axes.plot(epochs, [record[key] for record in history], marker=".", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title("Loss per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def metrics_figure(history: list[dict], metrics: dict, thresholds: dict):
    """One panel per gated metric: the validation curve, the gate's threshold, the test value."""
    figure, grid = plt.subplots(2, 2, figsize=(8.0, 5.6), sharex=True)
    epochs = [record["epoch"] for record in history]
    for axes, name in zip(grid.flat, GATED_METRICS):
        values = [record.get(f"val_{name}") for record in history]
        low = [v for v in values if v is not None]
        if len(low) == len(values):
            axes.plot(epochs, values, marker=".", label="validation")
        axes.plot(
            [epochs[-1]], [metrics[name]], marker="*", markersize=12, linestyle="", label="test"
        )
        low.append(metrics[name])
        if name in thresholds:
            axes.axhline(thresholds[name], color="tab:red", linestyle="--", label="gate threshold")
            low.append(thresholds[name])
        axes.set_ylim(max(0.0, min(low) - 0.05), 1.005)
        axes.set_title(name + (" (gated)" if name in thresholds else ""))
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
    for axes in grid[1]:
        axes.set_xlabel("epoch")
    figure.tight_layout()
    return figure


def confusion_figure(matrix: list[list[int]], class_names: list[str]):
    size = max(3.6, 0.5 * len(class_names) + 1.6)
    figure, axes = plt.subplots(figsize=(size + 0.8, size))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 4 else 0)
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix (test split)")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    return figure


def per_class_figure(per_class: dict, class_names: list[str]):
    figure, axes = plt.subplots(figsize=(max(6.4, 0.6 * len(class_names) + 2.0), 3.6))
    width = 0.27
    for k, key in enumerate(("precision", "recall", "f1")):
        axes.bar(
            [i + (k - 1) * width for i in range(len(class_names))],
            [per_class[name][key] for name in class_names],
            width,
            label=key,
        )
    axes.set_xticks(range(len(class_names)), class_names)
    lowest = min(per_class[name][key] for name in class_names for key in ("precision", "recall"))
    axes.set_ylim(max(0.0, lowest - 0.1), 1.0)
    axes.set_xlabel("class")
    axes.set_title("Per-class precision, recall and F1 (test split)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    figure.tight_layout()
    return figure


def render(report_input: dict, out: Path) -> None:
    """Writes the figures named in `report_input["figures"]` (by kind) into `out`."""
    use_bundled_font()
    model, history, names = report_input["model"], report_input["history"], report_input["figures"]
    if not history:
        raise ValueError(f"model {model['name']}: the training step recorded no epochs")
    out.mkdir(parents=True, exist_ok=True)
    metrics, class_names = model["metrics"], model["class_names"]
    _save(loss_figure(history), out / names["loss"])
    _save(metrics_figure(history, metrics, model["thresholds"]), out / names["metrics"])
    _save(confusion_figure(metrics["confusion_matrix"], class_names), out / names["confusion"])
    _save(per_class_figure(metrics["per_class"], class_names), out / names["per_class"])


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: render_report.py REPORT_INPUT_JSON OUT_DIR")
    render(json.loads(Path(argv[0]).read_text()), Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
