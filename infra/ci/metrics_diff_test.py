"""metrics-diff's comparison and Markdown, on synthetic model.json files (the end-to-end test
with real Pants and git is tests/e2e/metrics_diff_test.py)."""

from __future__ import annotations

import pytest

from infra.ci.metrics_diff import Build, diff_builds, main, to_json, to_markdown


def description(version: str, accuracy: float, f1_of_b: float = 0.9) -> dict:
    return {
        "version": version,
        "thresholds": {"accuracy": 0.8},
        "metrics": {
            "accuracy": accuracy,
            "macro_precision": 0.9,
            "macro_recall": 0.9,
            "macro_f1": 0.9,
            "per_class": {"a": {"f1": 0.9}, "b": {"f1": f1_of_b}},
        },
    }


def builds(head_models: dict, *, trained: list[str] = ()) -> tuple[Build, Build]:
    base = Build(
        "base (abc)",
        "abc",
        models={
            "m/one:one": description("v1", 0.95),
            "m/two:two": description("v2", 0.90),
            "m/gone:gone": description("v3", 0.90),
        },
    )
    head = Build("head", "def", models=head_models, trained=list(trained))
    return base, head


def test_only_changed_models_are_compared_with_their_numbers_and_threshold():
    base, head = builds(
        {
            "m/one:one": description("v1", 0.95),
            "m/two:two": description("v2b", 0.93),
            "m/new:new": description("v4", 0.99),
        },
        trained=["m/two:two"],
    )
    diff = diff_builds(base, head, 0.005)
    assert [c.address for c in diff.changed] == ["m/two:two"]
    accuracy = diff.changed[0].metrics[0]
    assert (accuracy.metric, accuracy.base, accuracy.head) == ("accuracy", 0.90, 0.93)
    assert accuracy.delta == pytest.approx(0.03) and accuracy.threshold == 0.8
    assert not accuracy.regression and diff.regressions == ()
    assert diff.unchanged == ("m/one:one",)
    assert diff.added == ("m/new:new",) and diff.removed == ("m/gone:gone",)
    markdown = to_markdown(diff)
    assert "| `m/two:two` | accuracy | 0.9000 | 0.9300 | +0.0300 | 0.8000 |  |" in markdown
    assert "m/one:one`" not in markdown.split("Unchanged")[0]
    assert "Added: `m/new:new`" in markdown and "Removed: `m/gone:gone`" in markdown
    assert "Computed at head because the cache lacked it: trained `m/two:two`." in markdown
    assert "base (abc): every artifact came from the cache (nothing trained)." in markdown


def test_a_drop_beyond_the_tolerance_and_a_worse_class_are_flagged():
    base, head = builds(
        {
            "m/one:one": description("v1b", 0.94, f1_of_b=0.7),
            "m/two:two": description("v2c", 0.898),
        }
    )
    diff = diff_builds(base, head, 0.005)
    # one: accuracy -0.01 and class b's F1 -0.2; two: -0.002 is within the tolerance
    assert diff.regressions == ("m/one:one",)
    markdown = to_markdown(diff)
    assert "**1 model(s) regressed**" in markdown
    assert (
        "| `m/one:one` | accuracy | 0.9500 | 0.9400 | -0.0100 | 0.8000 | **regression** |"
        in markdown
    )
    assert "class `b`: F1 0.9000 → 0.7000 (**worse**)" in markdown
    assert to_json(diff)["changed"][0]["worse_classes"] == [
        {"class": "b", "base_f1": 0.9, "head_f1": 0.7}
    ]


def test_a_bad_tolerance_is_refused(capsys):
    assert main(["HEAD", "--tolerance", "2"]) == 2
    assert "--tolerance must be in [0, 1)" in capsys.readouterr().err
