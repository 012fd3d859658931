"""The review report's page, `report.html`: tables of the model's facts, gate and per-class metrics,
around the figures of mlbuild/report_figures.py. Standard library only: the `package` rule writes
it itself (see model_report.py).
"""

from __future__ import annotations

import html

from mlbuild.target_types import GATED_METRICS

# The figures' file names, by kind.
FIGURES = {
    "loss": "report_loss.svg",
    "metrics": "report_metrics.svg",
    "confusion": "report_confusion_matrix.svg",
    "per_class": "report_per_class.svg",
}


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
