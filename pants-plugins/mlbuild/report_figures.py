"""The review report's four figures as SVG, drawn by the `package` rule itself in the standard library.

Drawing them with matplotlib took a process of its own, ~3 CPU s per model (importing matplotlib
and its fonts, rasterizing four PNGs): as much as a small model's whole build. Text in SVG is
laid out by the reviewer's browser, so nothing here needs a font file, and the bytes depend on
the figures' data alone: every number is written with a fixed precision.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from mlbuild.target_types import GATED_METRICS

# matplotlib's default cycle, so the figures keep the colours reviewers already know.
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")
THRESHOLD_COLOUR = "#d62728"
GRID_COLOUR = "#e0e0e0"
# Sequential blues for the confusion matrix, from no samples to the largest cell.
BLUES = ((247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107))


class ReportFigureError(ValueError):
    """The data given to a figure cannot be drawn (no epochs, a matrix of the wrong shape)."""


def _num(value: float) -> str:
    """Coordinates with two decimals and no trailing zeros: the same data, the same bytes."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass
class Svg:
    width: int
    height: int
    parts: list[str] = field(default_factory=list)

    def line(self, x1, y1, x2, y2, colour="#000", width=1.0, dash: str | None = None) -> None:
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" '
            f'stroke="{colour}" stroke-width="{_num(width)}"{dashed}/>'
        )

    def polyline(self, points: list[tuple[float, float]], colour: str, label: str) -> None:
        coordinates = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
        self.parts.append(
            f'<polyline class="series" data-label="{html.escape(label)}" points="{coordinates}" '
            f'fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        for x, y in points:
            self.parts.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.2" fill="{colour}"/>')

    def rect(self, x, y, width, height, fill: str, css_class: str = "", title: str = "") -> None:
        attributes = f' class="{css_class}"' if css_class else ""
        tooltip = f"<title>{html.escape(title)}</title>" if title else ""
        self.parts.append(
            f'<rect{attributes} x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" '
            f'height="{_num(height)}" fill="{fill}">{tooltip}</rect>'
        )

    def star(
        self, x: float, y: float, radius: float, colour: str, title: str, css_class: str
    ) -> None:
        corners = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            angle = math.pi / 2 + k * math.pi / 5
            corners.append(f"{_num(x + r * math.cos(angle))},{_num(y - r * math.sin(angle))}")
        self.parts.append(
            f'<polygon class="{css_class}" points="{" ".join(corners)}" fill="{colour}">'
            f"<title>{html.escape(title)}</title></polygon>"
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        size: float = 11,
        anchor: str = "middle",
        colour: str = "#000",
        rotate: bool = False,
        bold: bool = False,
    ) -> None:
        turned = f' transform="rotate(-90 {_num(x)} {_num(y)})"' if rotate else ""
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(
            f'<text x="{_num(x)}" y="{_num(y)}" font-size="{_num(size)}" text-anchor="{anchor}" '
            f'fill="{colour}"{weight}{turned}>{html.escape(content)}</text>'
        )

    def render(self) -> str:
        return "\n".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                "font-family=\"'DejaVu Sans', Verdana, sans-serif\">",
                f'<rect width="{self.width}" height="{self.height}" fill="#fff"/>',
                *self.parts,
                "</svg>",
                "",
            ]
        )


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def tick_label(value: float, ticks: list[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, step):
        decimals += 1
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class Plot:
    """A rectangle of the figure with its data ranges: maps data to figure coordinates."""

    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value: float) -> float:
        low, high = self.x_range
        return self.left + (value - low) / (high - low) * self.width

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.top + self.height - (value - low) / (high - low) * self.height

    def axes(self, svg: Svg, title: str, x_label: str, y_label: str, x_ticks, y_ticks) -> None:
        for tick in y_ticks:
            y = self.y(tick)
            svg.line(self.left, y, self.left + self.width, y, GRID_COLOUR)
            svg.text(self.left - 5, y + 3.5, tick_label(tick, y_ticks), size=9, anchor="end")
        for tick in x_ticks:
            x = self.x(tick)
            svg.line(x, self.top + self.height, x, self.top + self.height + 4)
            svg.text(x, self.top + self.height + 15, tick_label(tick, x_ticks), size=9)
        svg.line(self.left, self.top + self.height, self.left + self.width, self.top + self.height)
        svg.line(self.left, self.top, self.left, self.top + self.height)
        svg.text(self.left + self.width / 2, self.top - 8, title, size=12, bold=True)
        if x_label:
            svg.text(self.left + self.width / 2, self.top + self.height + 30, x_label)
        if y_label:
            svg.text(self.left - 40, self.top + self.height / 2, y_label, rotate=True)

    def legend(self, svg: Svg, entries: list[tuple[str, str, str]], bottom: bool) -> None:
        """`entries`: (label, colour, "line" | "dash" | "star"), in the upper or lower right."""
        row, width = 15.0, 12 + 7 * max(len(label) for label, _, _ in entries) + 26
        x = self.left + self.width - width - 6
        y = self.top + (self.height - row * len(entries) - 8 if bottom else 6)
        svg.rect(x, y, width, row * len(entries) + 6, "#ffffffd9")
        for k, (label, colour, kind) in enumerate(entries):
            middle = y + 3 + row * k + row / 2
            if kind == "star":
                svg.star(x + 14, middle, 5, colour, label, "legend-mark")
            else:
                svg.line(
                    x + 5, middle, x + 23, middle, colour, 1.8, "5 3" if kind == "dash" else None
                )
            svg.text(x + 28, middle + 3.5, label, size=9, anchor="start")


def _epochs(history: list[dict], name: str) -> list[float]:
    if not history:
        raise ReportFigureError(f"model {name}: the training step recorded no epochs")
    return [float(record["epoch"]) for record in history]


def _epoch_ticks(epochs: list[float]) -> list[float]:
    ticks = [t for t in nice_ticks(min(epochs), max(epochs)) if t == int(t)]
    return ticks or [epochs[0]]


def loss_figure(name: str, history: list[dict]) -> str:
    epochs = _epochs(history, name)
    series = [
        (label, key, colour)
        for (label, key), colour in zip(
            (("training", "train_loss"), ("validation", "val_loss")), SERIES_COLOURS
        )
        if all(key in record for record in history)
    ]
    values = [record[key] for _, key, _ in series for record in history] or [0.0, 1.0]
    y_ticks = nice_ticks(min(0.0, min(values)), max(values) * 1.05)
    span = (epochs[0] - 0.5, epochs[-1] + 0.5) if len(epochs) == 1 else (epochs[0], epochs[-1])
    plot = Plot(60, 30, 560, 270, span, (y_ticks[0], y_ticks[-1]))
    svg = Svg(640, 360)
    plot.axes(svg, "Loss per epoch", "epoch", "cross-entropy loss", _epoch_ticks(epochs), y_ticks)
    for label, key, colour in series:
        points = [(plot.x(e), plot.y(r[key])) for e, r in zip(epochs, history)]
        svg.polyline(points, colour, label)
    if series:
        plot.legend(svg, [(label, colour, "line") for label, _, colour in series], bottom=False)
    return svg.render()


def metrics_figure(name: str, history: list[dict], metrics: dict, thresholds: dict) -> str:
    """One panel per gated metric: the validation curve, the gate's threshold, the test value."""
    epochs = _epochs(history, name)
    span = (epochs[0] - 0.5, epochs[-1] + 0.5) if len(epochs) == 1 else (epochs[0], epochs[-1])
    svg = Svg(800, 560)
    for k, metric in enumerate(GATED_METRICS):
        if metric not in metrics:
            raise ReportFigureError(f"model {name}: the test metrics lack {metric!r}")
        curve = [record.get(f"val_{metric}") for record in history]
        shown = [v for v in curve if v is not None] + [metrics[metric]]
        if metric in thresholds:
            shown.append(thresholds[metric])
        low = max(0.0, min(shown) - 0.05)
        y_ticks = [t for t in nice_ticks(low, 1.0, most=4) if t >= low - 1e-9]
        plot = Plot(
            70 + 400 * (k % 2), 35 + 270 * (k // 2), 310, 195, span, (min(low, y_ticks[0]), 1.005)
        )
        gated = metric in thresholds
        plot.axes(
            svg, metric + (" (gated)" if gated else ""), "epoch" if k >= 2 else "", "",
            _epoch_ticks(epochs), y_ticks,
        )  # fmt: skip
        entries = []
        if all(v is not None for v in curve):
            svg.polyline(
                [(plot.x(e), plot.y(v)) for e, v in zip(epochs, curve)],
                SERIES_COLOURS[0],
                "validation",
            )
            entries.append(("validation", SERIES_COLOURS[0], "line"))
        if gated:
            y = plot.y(thresholds[metric])
            svg.line(plot.left, y, plot.left + plot.width, y, THRESHOLD_COLOUR, 1.5, "6 4")
            entries.append((f"gate threshold {thresholds[metric]:.4f}", THRESHOLD_COLOUR, "dash"))
        test = f"test {metrics[metric]:.4f}"
        svg.star(
            plot.x(epochs[-1]), plot.y(metrics[metric]), 7, SERIES_COLOURS[1], test, "test-value"
        )
        entries.append((test, SERIES_COLOURS[1], "star"))
        plot.legend(svg, entries, bottom=True)
    return svg.render()


def blue(fraction: float) -> str:
    """The colour of a cell holding `fraction` of the largest cell's count."""
    position = min(max(fraction, 0.0), 1.0) * (len(BLUES) - 1)
    k = min(int(position), len(BLUES) - 2)
    t = position - k
    rgb = (round(a + (b - a) * t) for a, b in zip(BLUES[k], BLUES[k + 1]))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def confusion_figure(name: str, matrix: list[list[int]], class_names: list[str]) -> str:
    n = len(class_names)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ReportFigureError(
            f"model {name}: the confusion matrix is not {n} x {n} (one row and column per class)"
        )
    cell = max(28.0, min(60.0, 420.0 / max(n, 1)))
    label_room = 12 + 7 * max(len(c) for c in class_names)
    left, top = 50 + label_room, 40
    svg = Svg(int(left + cell * n + 110), int(top + cell * n + label_room + 45))
    peak = max(max(row) for row in matrix) or 1
    svg.text(left + cell * n / 2, 22, "Confusion matrix (test split)", size=12, bold=True)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            x, y = left + j * cell, top + i * cell
            svg.rect(
                x, y, cell, cell, blue(count / peak), "cell",
                f"true {class_names[i]}, predicted {class_names[j]}: {count}",
            )  # fmt: skip
            ink = "#fff" if count > peak / 2 else "#000"
            svg.text(x + cell / 2, y + cell / 2 + 4, str(count), size=10, colour=ink)
    for k, class_name in enumerate(class_names):
        middle = left + k * cell + cell / 2
        svg.text(left - 6, top + k * cell + cell / 2 + 4, class_name, size=10, anchor="end")
        svg.text(middle + 4, top + cell * n + 12, class_name, size=10, anchor="end", rotate=True)
    svg.text(left + cell * n / 2, top + cell * n + label_room + 30, "predicted class")
    svg.text(left - label_room - 22, top + cell * n / 2, "true class", rotate=True)
    # The colour bar: the scale from 0 to the largest count.
    bar_left, steps = left + cell * n + 25, 32
    for k in range(steps):
        fraction = 1 - (k + 0.5) / steps
        svg.rect(bar_left, top + k * cell * n / steps, 16, cell * n / steps + 0.5, blue(fraction))
    for tick in nice_ticks(0, peak, most=5):
        if tick <= peak:
            y = top + cell * n * (1 - tick / peak)
            svg.line(bar_left + 16, y, bar_left + 20, y)
            svg.text(bar_left + 23, y + 3.5, f"{tick:g}", size=9, anchor="start")
    return svg.render()


def per_class_figure(name: str, per_class: dict, class_names: list[str]) -> str:
    kinds = ("precision", "recall", "f1")
    missing = [c for c in class_names if c not in per_class]
    if missing:
        raise ReportFigureError(f"model {name}: no per-class metrics for {', '.join(missing)}")
    group = max(42.0, min(90.0, 560.0 / max(len(class_names), 1)))
    plot_width = group * len(class_names)
    lowest = min(per_class[c][key] for c in class_names for key in ("precision", "recall"))
    low = max(0.0, lowest - 0.1)
    y_ticks = [t for t in nice_ticks(low, 1.0, most=5) if t >= low - 1e-9]
    plot = Plot(
        60, 30, plot_width, 260, (0.0, float(len(class_names))), (min(low, y_ticks[0]), 1.0)
    )
    svg = Svg(int(60 + plot_width + 125), 360)
    plot.axes(svg, "Per-class precision, recall and F1 (test split)", "class", "", [], y_ticks)
    bar = group * 0.8 / len(kinds)
    for i, class_name in enumerate(class_names):
        for k, (key, colour) in enumerate(zip(kinds, SERIES_COLOURS)):
            value = per_class[class_name][key]
            top = plot.y(max(value, plot.y_range[0]))
            x = plot.x(i) + group * 0.1 + k * bar
            svg.rect(
                x,
                top,
                bar,
                plot.top + plot.height - top,
                colour,
                "bar",
                f"{class_name} {key}: {value:.4f}",
            )
        svg.text(plot.x(i + 0.5), plot.top + plot.height + 15, class_name, size=9)
    legend = Plot(plot.left + plot.width + 110, plot.top, 0, 0, (0, 1), (0, 1))
    legend.legend(svg, [(key, colour, "line") for key, colour in zip(kinds, SERIES_COLOURS)], False)
    return svg.render()


def report_figures(model: dict, history: list[dict], names: dict[str, str]) -> dict[str, str]:
    """The figures' SVG text by file name. `model`: name, metrics, thresholds, class_names."""
    name, metrics, class_names = model["name"], model["metrics"], model["class_names"]
    return {
        names["loss"]: loss_figure(name, history),
        names["metrics"]: metrics_figure(name, history, metrics, model["thresholds"]),
        names["confusion"]: confusion_figure(name, metrics["confusion_matrix"], class_names),
        names["per_class"]: per_class_figure(name, metrics["per_class"], class_names),
    }
