import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import matplotlib
from matplotlib import font_manager

from mlbuild import render_report

CLASSES = ["setosa", "versicolor", "virginica"]
FIGURES = {kind: f"fig_{kind}.png" for kind in ("loss", "metrics", "confusion", "per_class")}


def report_input() -> dict:
    per_class = {
        name: {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "support": 10}
        for name, p, r in zip(CLASSES, (1.0, 0.9, 0.8), (0.9, 0.8, 1.0))
    }
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "val_accuracy": 0.6 + 0.08 * e,
            "val_macro_precision": 0.6 + 0.07 * e,
            "val_macro_recall": 0.6 + 0.075 * e,
            "val_macro_f1": 0.6 + 0.072 * e,
        }
        for e in range(1, 5)
    ]
    return {
        "figures": FIGURES,
        "history": history,
        # What the figures show, as model_report.py passes it: nothing else of model.json.
        "model": {
            "name": "iris_mlp",
            "metrics": {
                "accuracy": 0.9,
                "macro_precision": 0.9,
                "macro_recall": 0.9,
                "macro_f1": 0.89,
                "per_class": per_class,
                "confusion_matrix": [[9, 1, 0], [0, 8, 2], [0, 0, 10]],
            },
            "thresholds": {"accuracy": 0.85, "macro_f1": 0.95},
            "class_names": CLASSES,
        },
    }


def render_in_a_new_interpreter(tmp_path: Path, name: str) -> dict[str, str]:
    """Each run in its own interpreter and font cache, as two cold builds would be."""
    source = tmp_path / "input.json"
    source.write_text(json.dumps(report_input()))
    out = tmp_path / name
    script = Path(render_report.__file__)
    subprocess.run([sys.executable, str(script), str(source), str(out)], check=True)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_two_renders_give_the_same_bytes(tmp_path):
    first = render_in_a_new_interpreter(tmp_path, "first")
    second = render_in_a_new_interpreter(tmp_path, "second")
    assert sorted(first) == sorted(FIGURES.values())
    assert first == second


def png_text_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind in (b"tEXt", b"iTXt", b"zTXt", b"tIME"):
            chunks.append(kind + b":" + data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    return chunks


def test_pngs_carry_no_software_or_time(tmp_path):
    render_report.render(report_input(), tmp_path)
    for figure in FIGURES.values():
        chunks = png_text_chunks((tmp_path / figure).read_bytes())
        assert not any(b"Software" in c or c.startswith(b"tIME") for c in chunks), chunks


def test_thresholds_are_drawn_on_the_gated_metrics_only():
    data = report_input()
    figure = render_report.metrics_figure(
        data["history"], data["model"]["metrics"], data["model"]["thresholds"]
    )
    panels = dict(zip(render_report.GATED_METRICS, figure.axes))
    for name, panel in panels.items():
        flat = [
            line.get_ydata()[0]
            for line in panel.get_lines()
            if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2
        ]
        expected = data["model"]["thresholds"].get(name)
        assert flat == ([expected] if expected is not None else []), (name, flat)
        labels = [line.get_label() for line in panel.get_lines()]
        assert "validation" in labels and "test" in labels


def test_only_matplotlibs_own_fonts_are_used():
    render_report.use_bundled_font()
    bundled = (Path(matplotlib.get_data_path()) / "fonts" / "ttf").resolve()
    found = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=False))
    assert found.resolve().parent == bundled
    fonts = font_manager.fontManager.ttflist
    assert fonts and all(Path(f.fname).resolve().parent == bundled for f in fonts)
