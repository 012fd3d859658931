from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from infra.ci.shard_plan import (
    RUNNER_CLASSES,
    PlanError,
    RunnerClass,
    main,
    plan_shards,
    read_runner_classes,
    recorded_costs,
    shard_of,
    trainings_that_ran,
)

CPU = RunnerClass("cpu", {"gpu": 0, "memory_gb": 16}, 3)
GPU = RunnerClass("gpu", {"gpu": 1, "memory_gb": 64}, 1)


def model(name: str, resources: dict | None = None) -> dict:
    target = {"address": f"models/{name}:{name}", "target_type": "ml_model", "dependencies": []}
    if resources is not None:
        target["resources"] = resources
    return target


def image(name: str, *models: str) -> dict:
    deps = [f"models/{m}:{m}" for m in models] + ["serving:server"]
    return {"address": f"models/{name}:image", "target_type": "model_image", "dependencies": deps}


def costs(**seconds: float) -> dict[str, tuple[float, str]]:
    return {f"models/{n}:{n}": (s, f"dist/models/{n}/model.json") for n, s in seconds.items()}


def test_every_model_in_exactly_one_shard_balanced_by_cost() -> None:
    peeked = [model(n) for n in "abcdefg"]
    plan = plan_shards(peeked, [CPU], costs(a=70, b=60, c=50, d=40, e=30, f=20, g=10))
    placed = [m for s in plan["shards"] for m in s["models"]]
    assert sorted(placed) == sorted(t["address"] for t in peeked)
    # LPT: 70+20+10 | 60+30 | 50+40 -> loads 100, 90, 90 (optimal: sums of tens, total 280).
    assert [s["cost_seconds"] for s in plan["shards"]] == [100, 90, 90]
    assert plan["shards"][0]["models"] == ["models/a:a", "models/f:f", "models/g:g"]
    assert plan["models"]["models/a:a"]["shard"] == "cpu/0/3"
    assert plan["models"]["models/a:a"]["cost_source"] == "dist/models/a/model.json"


def test_the_plan_does_not_depend_on_the_order_pants_lists_targets() -> None:
    peeked = [model(f"m{i:02d}") for i in range(20)] + [
        image(f"m{i:02d}", f"m{i:02d}") for i in range(20)
    ]
    recorded = costs(**{f"m{i:02d}": float(i % 4) for i in range(20)})  # many equal costs: ties
    first = plan_shards(peeked, [CPU], recorded)
    shuffled = list(peeked)
    random.Random(7).shuffle(shuffled)
    assert plan_shards(shuffled, [CPU], recorded) == first


def test_unknown_costs_take_the_default_plus_the_overhead() -> None:
    plan = plan_shards(
        [model("a"), model("b")], [CPU], costs(a=5), default_cost=60, model_overhead=2
    )
    assert plan["models"]["models/a:a"]["cost_seconds"] == 7
    assert plan["models"]["models/b:b"] == {
        "cost_seconds": 62,
        "cost_source": "default",
        "resources": {},
        "shard": "cpu/0/3",
    }


def test_a_gpu_model_goes_only_to_a_gpu_shard_and_cpu_models_stay_off_it() -> None:
    peeked = [model("big", {"gpu": 1, "memory_gb": 32}), *(model(n) for n in "abcd")]
    plan = plan_shards(peeked, [GPU, CPU], costs(big=1, a=100, b=100, c=100, d=100))
    [gpu_shard] = [s for s in plan["shards"] if s["runner_class"] == "gpu"]
    assert gpu_shard["models"] == ["models/big:big"]
    assert plan["models"]["models/big:big"]["shard"] == "gpu/0/1"
    assert [s["runner_class"] for s in plan["shards"]] == ["cpu"] * 3 + [
        "gpu"
    ]  # least capable first


def test_a_model_no_runner_class_can_train_is_refused_by_name() -> None:
    with pytest.raises(PlanError) as e:
        plan_shards([model("huge", {"gpu": 2})], [CPU, GPU])
    message = str(e.value)
    assert "no runner class can train models/huge:huge" in message
    assert '{"gpu": 2}' in message and "`resources` field" in message


def test_bad_resources_in_peek_output_name_the_target() -> None:
    with pytest.raises(PlanError, match=r"target models/x:x: gpu must be a whole number >= 0"):
        plan_shards([model("x", {"gpu": -1})], [CPU])


def test_dependents_go_with_their_model_and_shared_ones_wait_for_the_shards() -> None:
    peeked = [model("a"), model("b"), image("a", "a"), image("b", "b"), image("both", "a", "b")]
    peeked.append({"address": "tools:lint_me", "target_type": "python_source", "dependencies": []})
    plan = plan_shards(peeked, [CPU], costs(a=10, b=9))
    by_model = {m: s for s in plan["shards"] for m in s["models"]}
    assert "models/a:image" in by_model["models/a:a"]["targets"]
    assert "models/b:image" in by_model["models/b:b"]["targets"]
    assert plan["after_shards"] == ["models/both:image"]
    assert all("models/both:image" not in s["targets"] for s in plan["shards"])
    # A target reaching no changed model trains nothing: in exactly one shard, spread by count.
    assert sum("tools:lint_me" in s["targets"] for s in plan["shards"]) == 1


def test_a_dependent_reaches_its_model_through_other_changed_targets() -> None:
    lib = {"address": "lib:lib", "target_type": "python_source", "dependencies": ["models/a:a"]}
    app = {"address": "app:app", "target_type": "pex_binary", "dependencies": ["lib:lib"]}
    plan = plan_shards([app, lib, model("a"), model("b")], [CPU], costs(a=10, b=9))
    [shard] = [s for s in plan["shards"] if "models/a:a" in s["models"]]
    assert {"app:app", "lib:lib"} <= set(shard["targets"])


def test_nothing_changed_gives_empty_shards() -> None:
    plan = plan_shards([], [CPU])
    assert [s["targets"] for s in plan["shards"]] == [[], [], []]
    assert plan["models"] == {} and plan["after_shards"] == []


def test_recorded_costs_come_from_model_json(tmp_path: Path) -> None:
    for name, content in (
        ("a", {"address": "models/a:a", "training": {"seconds": 12.5}}),
        ("b", {"address": "models/b:b"}),  # no training record: not a cost
    ):
        path = tmp_path / "models" / name / "model.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content))
    (tmp_path / "models" / "c").mkdir()
    (tmp_path / "models" / "c" / "model.json").write_text("not json")
    assert recorded_costs([tmp_path]) == {
        "models/a:a": (12.5, str(tmp_path / "models" / "a" / "model.json"))
    }
    with pytest.raises(PlanError, match="no such directory"):
        recorded_costs([tmp_path / "missing"])
    # record-costs keeps them (model.json only) where the next plan reads them.
    (tmp_path / "models" / "a" / "model.onnx").write_bytes(b"onnx")
    kept = tmp_path / "kept"
    assert main(["record-costs", str(tmp_path), str(kept)]) == 0
    assert not (kept / "models" / "a" / "model.onnx").exists()
    assert recorded_costs([kept]) == {
        "models/a:a": (12.5, str(kept / "models" / "a" / "model.json"))
    }


def test_the_repository_runner_classes_are_valid() -> None:
    classes = read_runner_classes(RUNNER_CLASSES)
    assert classes[0].resources.get("gpu", 0) == 0, "the least capable class must be a CPU one"
    assert all(c.labels for c in classes)


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"classes": {}}', "names no runner class"),
        ('{"classes": {"cpu": {"resources": {}, "shards": 0, "labels": ["x"]}}}', "shards must be"),
        (
            '{"classes": {"cpu": {"resources": {"tpu": 1}, "shards": 1, "labels": ["x"]}}}',
            "unknown resource 'tpu'",
        ),
        ('{"classes": {"cpu": {"resources": {}, "shards": 1}}}', "exactly the keys"),
        ('{"classes": {"cpu": {"resources": {}, "shards": 1, "labels": []}}}', "labels must be"),
        ("[", "cannot read the runner classes"),
    ],
)
def test_bad_runner_classes_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "classes.json"
    path.write_text(content)
    with pytest.raises(PlanError, match=expected):
        read_runner_classes(path)


def test_shard_of_checks_the_pipeline_agrees_with_the_plan() -> None:
    plan = plan_shards([model("a")], [CPU])
    assert shard_of(plan, "cpu", "0/3")["models"] == ["models/a:a"]
    with pytest.raises(PlanError, match="splits that class into 3 shards"):
        shard_of(plan, "cpu", "0/4")
    with pytest.raises(PlanError, match="no runner class 'gpu'"):
        shard_of(plan, "gpu", "0/1")
    with pytest.raises(PlanError, match="K/N"):
        shard_of(plan, "cpu", "1")
    with pytest.raises(PlanError, match="not in 0..2"):
        shard_of(plan, "cpu", "3/3")


def test_run_passes_the_shard_as_a_spec_file_and_skips_an_empty_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan_shards([model("a"), image("a", "a")], [CPU])))
    fake_pants = tmp_path / "pants"
    fake_pants.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/argv"\n')
    fake_pants.chmod(0o755)
    assert main(["run", str(plan_path), "cpu", "0/3", "--", str(fake_pants), "package"]) == 0
    spec_file = tmp_path / "shard-cpu-0.txt"
    assert (tmp_path / "argv").read_text().split() == [f"--spec-files={spec_file}", "package"]
    assert spec_file.read_text().splitlines() == ["models/a:a", "models/a:image"]
    (tmp_path / "argv").unlink()
    assert main(["run", str(plan_path), "cpu", "1/3", "--", str(fake_pants), "package"]) == 0
    assert not (tmp_path / "argv").exists()
    assert "cpu shard 1/3 is empty" in capsys.readouterr().out
    assert main(["run", str(plan_path), "cpu", "1/4", "--", str(fake_pants)]) == 2
    assert "disagree" in capsys.readouterr().err


def _log(path: Path, *processes: tuple[str, str]) -> Path:
    lines = [{"kind": "header", "format": 1}]
    lines += [{"kind": "process", "description": d, "source": s} for d, s in processes]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_check_no_training_fails_on_a_training_that_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cached = _log(
        tmp_path / "cached.jsonl",
        ("Train models/a:a", "HitRemotely"),
        ("Train models/b:b", "HitLocally"),
        ("Evaluate models/a:a", "Ran"),
    )
    assert trainings_that_ran(cached) == []
    assert main(["check-no-training", str(cached)]) == 0
    ran = _log(
        tmp_path / "ran.jsonl", ("Train models/a:a", "Ran"), ("Train models/b:b", "HitRemotely")
    )
    assert trainings_that_ran(ran) == ["Train models/a:a"]
    assert main(["check-no-training", str(ran)]) == 1
    assert "1 training(s) ran in a stage that must only use the cache" in capsys.readouterr().err
    assert main(["check-no-training", str(tmp_path / "none.jsonl")]) == 2
