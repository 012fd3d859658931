"""The evaluation gate: a model whose test metrics fall below its thresholds fails the build.

The gate is rule code, not a process: it is never cached, so changing a threshold re-checks the
(cached) metrics at once and an old failure can never be reported as a success.
"""

from __future__ import annotations

from collections.abc import Mapping

from pants.engine.addresses import Address


class EvaluationGateFailure(Exception):
    """A model's metrics on the held-out test split are below a declared threshold."""


def check_thresholds(
    address: Address, metrics: Mapping[str, object], thresholds: Mapping[str, float]
) -> None:
    failures = []
    for metric, threshold in sorted(thresholds.items()):
        value = metrics.get(metric)
        if not isinstance(value, (int, float)):
            failures.append(f"{metric}: not reported by the evaluation (threshold {threshold:g})")
        elif value < threshold:
            failures.append(f"{metric} = {value:.4f} is below the threshold {threshold:g}")
    if failures:
        lines = "\n".join(f"  - {failure}" for failure in failures)
        raise EvaluationGateFailure(
            f"Model {address} failed its evaluation gate on the test split:\n{lines}\n"
            "Nothing was packaged. Improve the model, or lower `thresholds` in its BUILD file "
            "if the new value is intended."
        )
