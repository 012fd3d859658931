import pytest
from pants.engine.addresses import Address

from mlbuild.model_gate import EvaluationGateFailure, check_thresholds

ADDRESS = Address("models/m", target_name="m")


def test_metrics_at_or_above_thresholds_pass() -> None:
    check_thresholds(ADDRESS, {"accuracy": 0.95, "macro_f1": 0.99}, {"accuracy": 0.95})


def test_failure_names_model_metric_value_and_threshold() -> None:
    with pytest.raises(EvaluationGateFailure) as e:
        check_thresholds(
            ADDRESS, {"accuracy": 0.9123, "macro_f1": 0.99}, {"accuracy": 0.95, "macro_f1": 0.9}
        )
    message = str(e.value)
    assert "Model models/m:m failed its evaluation gate" in message
    assert "accuracy = 0.9123 is below the threshold 0.95" in message
    assert "macro_f1" not in message


def test_a_metric_the_evaluation_did_not_report_fails() -> None:
    with pytest.raises(EvaluationGateFailure, match="macro_recall: not reported"):
        check_thresholds(ADDRESS, {"accuracy": 1.0}, {"macro_recall": 0.5})
