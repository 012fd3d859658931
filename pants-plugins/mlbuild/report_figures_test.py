import json
import xml.etree.ElementTree as ElementTree

import pytest
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mlbuild import model_report
from mlbuild.model_report import ModelReport, ModelReportRequest, report_request
from mlbuild.report_figures import (
    ReportFigureError,
    blue,
    confusion_figure,
    loss_figure,
    metrics_figure,
    nice_ticks,
    per_class_figure,
    report_figures,
)
from mlbuild.report_html import FIGURES

SVG = "{http://www.w3.org/2000/svg}"
CLASSES = ["setosa", "versicolor", "virginica"]
MATRIX = [[9, 1, 0], [0, 8, 2], [0, 0, 10]]


def history(epochs: int = 4) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.2 / e,
            **{f"val_{m}": 0.6 + 0.08 * e for m in ("accuracy", "macro_precision")},
            **{f"val_{m}": 0.6 + 0.07 * e for m in ("macro_recall", "macro_f1")},
        }
        for e in range(1, epochs + 1)
    ]


def model() -> dict:
    per_class = {
        name: {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "support": 10}
        for name, p, r in zip(CLASSES, (1.0, 0.9, 0.8), (0.9, 0.8, 1.0))
    }
    return {
        "name": "iris_mlp",
        "metrics": {
            **{"accuracy": 0.9, "macro_precision": 0.9, "macro_recall": 0.9, "macro_f1": 0.89},
            **{"per_class": per_class, "confusion_matrix": MATRIX},
        },
        "thresholds": {"accuracy": 0.85, "macro_f1": 0.95},
        "class_names": CLASSES,
    }


def parse(svg: str) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG}svg" and int(root.get("width")) > 0 and int(root.get("height")) > 0
    return root


def points(polyline: ElementTree.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]


def test_loss_curves_have_one_point_per_epoch_and_fall_as_the_loss_falls() -> None:
    root = parse(loss_figure("iris_mlp", history()))
    series = {s.get("data-label"): points(s) for s in root.iter(f"{SVG}polyline")}
    assert sorted(series) == ["training", "validation"]
    for curve in series.values():
        xs, ys = zip(*curve)
        assert len(curve) == 4 and list(xs) == sorted(xs)
        # SVG's y grows downwards: a falling loss is a rising y.
        assert list(ys) == sorted(ys)
    # Validation loss is above the training loss at every epoch here: smaller y.
    assert all(v[1] < t[1] for t, v in zip(series["training"], series["validation"]))


def test_a_curve_the_training_did_not_record_is_left_out() -> None:
    without_val = [{k: v for k, v in r.items() if k != "val_loss"} for r in history()]
    root = parse(loss_figure("iris_mlp", without_val))
    assert [s.get("data-label") for s in root.iter(f"{SVG}polyline")] == ["training"]


def test_the_threshold_is_drawn_only_on_gated_panels_and_every_test_value_is_marked() -> None:
    metrics, thresholds = model()["metrics"], model()["thresholds"]
    root = parse(metrics_figure("iris_mlp", history(), metrics, thresholds))
    titles = [t.text for t in root.iter(f"{SVG}text") if t.get("font-weight") == "bold"]
    assert titles == ["accuracy (gated)", "macro_precision", "macro_recall", "macro_f1 (gated)"]
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("stroke-dasharray") == "6 4"]
    assert len(dashed) == 2
    stars = [
        s.find(f"{SVG}title").text
        for s in root.iter(f"{SVG}polygon")
        if s.get("class") == "test-value"
    ]
    assert stars == ["test 0.9000", "test 0.9000", "test 0.9000", "test 0.8900"]


def test_a_threshold_above_the_test_value_is_drawn_above_its_star() -> None:
    metrics = model()["metrics"]
    root = parse(metrics_figure("iris_mlp", history(), metrics, {"accuracy": 0.95}))
    (threshold,) = (x for x in root.iter(f"{SVG}line") if x.get("stroke-dasharray") == "6 4")
    star = next(root.iter(f"{SVG}polygon"))
    star_top = min(float(p.split(",")[1]) for p in star.get("points").split())
    assert float(threshold.get("y1")) < star_top


def test_confusion_matrix_cells_show_counts_and_darker_blue_for_more() -> None:
    root = parse(confusion_figure("iris_mlp", MATRIX, CLASSES))
    cells = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]
    assert len(cells) == 9
    assert [c.find(f"{SVG}title").text for c in cells[:2]] == [
        "true setosa, predicted setosa: 9",
        "true setosa, predicted versicolor: 1",
    ]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for row in MATRIX:
        for count in row:
            assert str(count) in texts
    fills = {c.find(f"{SVG}title").text.rsplit(": ", 1)[1]: c.get("fill") for c in cells}
    assert fills["0"] == blue(0.0) == "#f7fbff" and fills["10"] == blue(1.0) == "#08306b"
    assert sum(int(fills["8"][k : k + 2], 16) for k in (1, 3, 5)) < sum(
        int(fills["1"][k : k + 2], 16) for k in (1, 3, 5)
    )


def test_per_class_bars_are_as_tall_as_their_values() -> None:
    root = parse(per_class_figure("iris_mlp", model()["metrics"]["per_class"], CLASSES))
    bars = {
        b.find(f"{SVG}title").text: float(b.get("height"))
        for b in root.iter(f"{SVG}rect")
        if b.get("class") == "bar"
    }
    assert len(bars) == 9
    # Heights are proportional to value - the axis's lower end: equal steps, equal differences.
    assert bars["setosa precision: 1.0000"] > bars["versicolor precision: 0.9000"]
    assert bars["versicolor precision: 0.9000"] > bars["virginica precision: 0.8000"]
    step_a = bars["setosa precision: 1.0000"] - bars["versicolor precision: 0.9000"]
    step_b = bars["versicolor precision: 0.9000"] - bars["virginica precision: 0.8000"]
    assert step_a == pytest.approx(step_b, abs=0.02)


def test_same_data_same_bytes_and_other_data_other_bytes() -> None:
    first = report_figures(model(), history(), FIGURES)
    assert sorted(first) == sorted(FIGURES.values())
    assert first == report_figures(json.loads(json.dumps(model())), history(), FIGURES)
    changed = model()
    changed["metrics"]["confusion_matrix"] = [[10, 0, 0], [0, 8, 2], [0, 0, 10]]
    second = report_figures(changed, history(), FIGURES)
    assert second[FIGURES["confusion"]] != first[FIGURES["confusion"]]
    assert second[FIGURES["loss"]] == first[FIGURES["loss"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, h: h.clear(), "model iris_mlp: the training step recorded no epochs"),
        (
            lambda m, h: m["metrics"].update(confusion_matrix=[[1, 2], [3, 4]]),
            "model iris_mlp: the confusion matrix is not 3 x 3",
        ),
        (
            lambda m, h: m["metrics"]["per_class"].pop("virginica"),
            "model iris_mlp: no per-class metrics for virginica",
        ),
        (
            lambda m, h: m["metrics"].pop("macro_recall"),
            "model iris_mlp: the test metrics lack 'macro_recall'",
        ),
    ],
)
def test_data_that_cannot_be_drawn_is_refused_by_name(change, message) -> None:
    broken_model, broken_history = model(), history()
    change(broken_model, broken_history)
    with pytest.raises(ReportFigureError, match=message):
        report_figures(broken_model, broken_history, FIGURES)


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0.0, 1.0, most=5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1, 15) == [2.5, 5.0, 7.5, 10.0, 12.5, 15.0]
    assert nice_ticks(0.85, 1.0, most=4) == [0.85, 0.9, 0.95, 1.0]


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[*model_report.rules(), QueryRule(ModelReport, [ModelReportRequest])],
    )


def test_the_rule_writes_the_page_and_every_figure_it_links(rule_runner: RuleRunner) -> None:
    description = {
        **model(),
        "address": "models/iris_mlp:iris_mlp",
        "framework": "torch",
        "version": "ab" * 32,
        "inputs_digest": "cd" * 32,
        "dataset": {"address": "models/datasets:iris", "sha256": "ef" * 32},
        "training": {"epochs": 4, "seed": 0, "train_samples": 100, "seconds": 1.5},
        "libraries": {"torch": "2.13.0"},
    }
    description["metrics"]["samples"] = 30
    request = report_request(Address("models/iris_mlp"), description, history())
    report = rule_runner.request(ModelReport, [request])
    contents = {c.path: c.content for c in rule_runner.request(DigestContents, [report.digest])}
    assert sorted(contents) == sorted(["report.html", *FIGURES.values()])
    page = contents["report.html"].decode()
    for name in FIGURES.values():
        assert f'<img src="{name}"' in page
        parse(contents[name].decode())
    # The training's wall-clock time is not shown: another duration, the same bytes.
    description["training"]["seconds"] = 99.0
    again = rule_runner.request(
        ModelReport, [report_request(Address("models/iris_mlp"), description, history())]
    )
    assert again.digest == report.digest
    assert isinstance(report.digest, Digest)
