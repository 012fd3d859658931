import pytest

from infra.bench.shards import critical_path, fit, format_table, simulate

# Real-run shapes with known parameters: c = 5 s/model cold, F = 40 s cold runner, F_warm = 10 s,
# assemble 12 s + 0.5 s/model, plan 15 s; N_real = 8 on 2 shards.
MEASURED = {
    "n_real": 8,
    "shards_real": 2,
    "runs": {
        "single": {"seconds": 40 + 8 * 5, "models": 8},
        "plan": {"seconds": 14, "models": 8},
        "plan_shared": {"seconds": 16, "models": 4},
        "shard_0": {"seconds": 40 + 4 * 5, "models": 4},
        "shard_1": {"seconds": 40 + 4 * 5, "models": 4},
        "assemble": {"seconds": 12 + 8 * 0.5, "models": 8},
        "assemble_half": {"seconds": 12 + 4 * 0.5, "models": 4},
        "shared_shard": {"seconds": 10 + 2 * 5, "models": 2},
    },
    "training_seconds": [1.0, 1.0, 3.0, 3.0],
}


def test_the_fit_recovers_the_parameters_the_runs_were_made_of() -> None:
    assert fit(MEASURED) == {
        "per_model_cold_s": 5,
        "runner_fixed_cold_s": 40,
        "runner_fixed_warm_s": 10,
        "assemble_fixed_s": 12,
        "assemble_per_model_s": 0.5,
        "plan_s": 15,
    }


def test_critical_path_is_plan_plus_slowest_shard_plus_assemble() -> None:
    model = fit(MEASURED)
    trainings = MEASURED["training_seconds"]
    one = critical_path(100, 1, "cold", model, trainings)
    # Costs 4 or 6 s (5 +- 1, half each): 500 s of models on one runner.
    assert one["slowest_shard_s"] == pytest.approx(40 + 500)
    assert one["critical_path_s"] == pytest.approx(15 + 540 + 12 + 50)
    assert one["single_runner_s"] == pytest.approx(540)
    four = critical_path(100, 4, "cold", model, trainings)
    # 500 s over 4 shards: LPT ends within one model's cost (<= 6 s) above the ideal 125 s.
    assert 40 + 125 <= four["slowest_shard_s"] <= 40 + 125 + 6
    shared = critical_path(100, 4, "shared", model, trainings)
    assert shared["trained"] == 50
    assert shared["slowest_shard_s"] < four["slowest_shard_s"]


def test_more_shards_never_lengthen_the_build_stage() -> None:
    rows = simulate(fit(MEASURED), MEASURED["training_seconds"])
    for n in (100, 1000):
        for scenario in ("cold", "shared"):
            slowest = [
                r["slowest_shard_s"] for r in rows if (r["n"], r["scenario"]) == (n, scenario)
            ]
            assert slowest == sorted(slowest, reverse=True) and len(slowest) == 4
    assert format_table(rows).count("\n") == len(rows) + 1
