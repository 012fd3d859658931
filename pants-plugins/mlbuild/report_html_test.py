from mlbuild.report_html import FIGURES, report_html

CLASSES = ["setosa", "versicolor", "virginica"]


def model() -> dict:
    per_class = {
        name: {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10} for name in CLASSES
    }
    return {
        "name": "iris_mlp",
        "address": "models/iris_mlp:iris_mlp",
        "framework": "torch",
        "version": "ab" * 32,
        "inputs_digest": "cd" * 32,
        "dataset": {"address": "models/datasets:iris", "sha256": "ef" * 32},
        "metrics": {
            **dict.fromkeys(("accuracy", "macro_precision", "macro_recall"), 0.9),
            **{"macro_f1": 0.89, "per_class": per_class, "samples": 30},
        },
        **{"thresholds": {"accuracy": 0.85, "macro_f1": 0.95}, "class_names": CLASSES},
        "training": {"epochs": 4, "seed": 0, "train_samples": 100},
        "libraries": {"torch": "2.13.0"},
    }


def test_report_links_every_figure_and_shows_the_gate() -> None:
    page = report_html(model(), [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.625}])
    for figure in FIGURES.values():
        assert f'src="{figure}"' in page
    # the gate table: accuracy passes, macro_f1 (0.89 < 0.95) fails, the others are not gated
    assert "<td>accuracy</td><td>0.9000</td><td>0.8500</td><td>pass</td>" in page
    assert "<td>macro_f1</td><td>0.8900</td><td>0.9500</td><td>FAIL</td>" in page
    assert "<td>macro_recall</td><td>0.9000</td><td>-</td><td>not gated</td>" in page
    assert "<td>inputs digest</td><td>" + "cd" * 32 + "</td>" in page
    assert "<td>final validation loss</td><td>0.6250</td>" in page


def test_a_stored_dataset_shows_its_url() -> None:
    described = model()
    described["dataset"] = {**described["dataset"], "url": "https://store.example/iris.npz"}
    page = report_html(described, [{"epoch": 1}])
    assert "<td>dataset URL</td><td>https://store.example/iris.npz</td>" in page
    assert "dataset URL" not in report_html(model(), [{"epoch": 1}])


def test_names_are_escaped() -> None:
    described = {**model(), "name": "<b>m</b>"}
    page = report_html(described, [{"epoch": 1}])
    assert "<b>m</b>" not in page and "&lt;b&gt;m&lt;/b&gt;" in page
