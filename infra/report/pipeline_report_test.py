import json
from pathlib import Path

import pytest

from infra.report.pipeline_report import main, report

FIXTURES = Path(__file__).parent / "fixtures"


def test_recorded_history_rates_probability_and_costliest_stage(capsys) -> None:
    assert main([str(FIXTURES / "history.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == 200
    assert [(s["name"], s["ran"], s["passed"]) for s in out["stages"]] == [
        ("build", 200, 180),
        ("test", 180, 171),
        ("package", 150, 147),
        ("deploy", 100, 99),
    ]
    assert [s["rate"] for s in out["stages"]] == pytest.approx([0.90, 0.95, 0.98, 0.99])
    # 0.90 * 0.95 * 0.98 * 0.99
    assert out["probability"] == pytest.approx(0.829521)
    assert out["costliest"] == "build"


def test_text_report_shows_the_product_and_the_gain_from_fixing_the_costliest(capsys) -> None:
    assert main([str(FIXTURES / "history.json")]) == 0
    text = capsys.readouterr().out
    assert "P(pipeline succeeds) = 0.9000 x 0.9500 x 0.9800 x 0.9900 = 0.8295" in text
    assert "Costs most: build (success rate 0.9000); if it always passed, P would be 0.9217" in text


def test_junit_runs_count_failures_errors_and_skips(capsys) -> None:
    files = sorted(str(p) for p in (FIXTURES / "junit").glob("*.xml"))
    assert len(files) == 5
    assert main(["--junit", "--json", *files]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["name"]: (s["ran"], s["passed"]) for s in out["stages"]} == {
        "build": (5, 4),
        "test": (4, 2),  # one <failure>, one <error>
        "package": (2, 2),
        "deploy": (1, 1),
    }
    assert out["probability"] == pytest.approx(0.4)
    assert out["costliest"] == "test"


def test_a_stage_that_never_ran_does_not_lower_p() -> None:
    result = report([{"build": "success", "deploy": "skipped"}, {"build": "failed"}])
    assert [(s.name, s.ran, s.rate) for s in result.stages] == [
        ("build", 2, 0.5),
        ("deploy", 0, 1.0),
    ]
    assert result.probability == 0.5


def test_bad_input_is_reported(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "h.json"
    bad.write_text('{"runs": [{"stages": {"build": "green"}}]}')
    assert main([str(bad)]) == 2
    assert "unknown outcome 'green'" in capsys.readouterr().err
    bad.write_text('{"runs": []}')
    assert main([str(bad)]) == 2
