"""Renders a model's review report: `report.html` and its PNG figures, byte for byte reproducible.

Run by the `package` rule of `ml_model` (mlbuild/model_report.py) as a cached process, in a venv
holding matplotlib from the python-default lockfile:

    python render_report.py report_input.json OUT_DIR

`report_input.json` holds the artifact's description (model.json without the training time) and
the per-epoch history the training step recorded. Same input, same bytes: the Agg backend, the
DejaVu Sans font that ships inside matplotlib (never a system font), and no software name or date
in the PNG or HTML metadata.
"""

from __future__ import annotations

import html
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
FIGURES = {
    "loss": "report_loss.png",
    "metrics": "report_metrics.png",
    "confusion": "report_confusion_matrix.png",
    "per_class": "report_per_class.png",
}
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


def _row(*cells: object, header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def report_html(model: dict, history: list[dict]) -> str:
    metrics, thresholds = model["metrics"], model["thresholds"]
    gate_rows = [_row("metric", "test value", "threshold", "gate", header=True)]
    for name in GATED_METRICS:
        if name in thresholds:
            verdict = "pass" if metrics[name] >= thresholds[name] else "FAIL"
            gate_rows.append(_row(name, f"{metrics[name]:.4f}", f"{thresholds[name]:.4f}", verdict))
        else:
            gate_rows.append(_row(name, f"{metrics[name]:.4f}", "-", "not gated"))
    class_rows = [_row("class", "precision", "recall", "F1", "support", header=True)]
    for name in model["class_names"]:
        c = metrics["per_class"][name]
        class_rows.append(
            _row(
                name, f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"]
            )
        )
    training = model["training"]
    final = history[-1] if history else {}
    facts = [
        ("address", model["address"]),
        ("framework", model["framework"]),
        ("version (sha256 of model.onnx)", model["version"]),
        ("inputs digest", model["inputs_digest"]),
        ("dataset", f"{model['dataset']['address']} ({model['dataset']['sha256'][:12]})"),
        *([("dataset URL", model["dataset"]["url"])] if model["dataset"].get("url") else []),
        ("epochs, seed", f"{training['epochs']}, {training['seed']}"),
        ("training samples", training["train_samples"]),
        ("test samples", metrics["samples"]),
        ("final training loss", f"{final.get('train_loss', float('nan')):.4f}"),
        ("final validation loss", f"{final.get('val_loss', float('nan')):.4f}"),
        ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(model["libraries"].items()))),
    ]
    figures = [
        ("Loss", FIGURES["loss"]),
        ("Gated metrics per epoch, with the gate's thresholds", FIGURES["metrics"]),
        ("Confusion matrix", FIGURES["confusion"]),
        ("Per-class precision, recall and F1", FIGURES["per_class"]),
    ]
    title = html.escape(f"Model report: {model['name']}")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{title}</title>",
            "<style>",
            "body { font-family: 'DejaVu Sans', sans-serif; margin: 2em; max-width: 60em; }",
            "table { border-collapse: collapse; margin-bottom: 1.5em; }",
            "td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }",
            "img { max-width: 100%; display: block; margin-bottom: 1.5em; }",
            "</style>",
            "</head>",
            "<body>",
            f"<h1>{title}</h1>",
            "<table>",
            *(_row(k, v) for k, v in facts),
            "</table>",
            "<h2>Evaluation gate (test split)</h2>",
            '<table id="gate">',
            *gate_rows,
            "</table>",
            *(
                f'<h2>{html.escape(caption)}</h2>\n<img src="{src}" alt="{html.escape(caption)}">'
                for caption, src in figures
            ),
            "<h2>Per class (test split)</h2>",
            '<table id="per-class">',
            *class_rows,
            "</table>",
            "</body>",
            "</html>",
            "",
        ]
    )


def render(report_input: dict, out: Path) -> None:
    use_bundled_font()
    model, history = report_input["model"], report_input["history"]
    if not history:
        raise ValueError(f"model {model['name']}: the training step recorded no epochs")
    out.mkdir(parents=True, exist_ok=True)
    metrics, class_names = model["metrics"], model["class_names"]
    _save(loss_figure(history), out / FIGURES["loss"])
    _save(metrics_figure(history, metrics, model["thresholds"]), out / FIGURES["metrics"])
    _save(confusion_figure(metrics["confusion_matrix"], class_names), out / FIGURES["confusion"])
    _save(per_class_figure(metrics["per_class"], class_names), out / FIGURES["per_class"])
    (out / "report.html").write_text(report_html(model, history), encoding="utf-8")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: render_report.py REPORT_INPUT_JSON OUT_DIR")
    render(json.loads(Path(argv[0]).read_text()), Path(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
