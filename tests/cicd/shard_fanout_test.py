"""CI fanned out over three runners sharing one team cache: real ./pants, a real BuildGrid.

A scratch repo's last commit adds three tiny models (one declaring `resources`) and one model's
serving image. As the pipelines do (infra/ci/shard-plan): a plan over what changed, costs from a
single-runner reference build's artifacts; the build stage's three CPU shards, each on its own
machine (own checkout path, HOME and XDG_CACHE_HOME, so its own local cache), package their
shard against the cache; the test stage (`test --shard=K/3`, shard K on build machine K+1, whose
local cache lacks the other shards' models) and the unsharded assemble stage (on a machine with
an empty local cache) follow. Every model must be trained exactly once in all, the test and
assemble stages must train nothing (their execution logs, checked by `shard-plan
check-no-training`), and the assembled dist/ must equal the reference build's (but for
model.json's training time). Last, a model asking for more GPUs than this machine has is
refused, not trained on CPU.

To stay short, the machines share the Pants install, the interpreters and Pants's named caches
(downloads and installed venvs, not results: `PANTS_NAMED_CACHES_DIR`), as CI runners that keep
them do; tests/cicd/two_machines_test.py shows that keys also match across all of those.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from infra.ci import shard_plan
from models.common.resources import machine_resources
from tests.e2e.machines import Machine
from tests.e2e.scratch_repo import PantsRun, ScratchRepo
from tests.support.remote_cache import running_cache

MODELS = ("tiny_a", "tiny_b", "tiny_c")
ADDRESSES = [f"models/{name}:{name}" for name in MODELS]
WITH_RESOURCES = "tiny_c"
WITH_IMAGE = "tiny_a"
SHARD_PLAN = Path(shard_plan.__file__).resolve()
CI_CONFIG = "--pants-config-files=pants.ci.toml"
CHANGED = ["--changed-since=HEAD~1", "--changed-dependents=transitive"]
SAMPLE_TEST = "def test_addition():\n    assert sum([1, 2, 3]) == 6\n"


def commit(repo: Path, message: str) -> None:
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", message]):
        if args[0] == "init" and (repo / ".git").exists():
            continue
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )


def packaged(root: Path) -> dict[str, str]:
    """sha256 of every file `package` wrote (not CI's logs, reports or shard lists). A model.json
    counts without `training.seconds`: two trainings of a model give the same bytes, but not the
    same wall-clock time (measured: the only difference between the reference and the shards)."""
    dist = root / "dist"
    skip = ("test/", "execution-log.jsonl", "shard-")
    digests = {}
    for path in sorted(dist.rglob("*")):
        relative = path.relative_to(dist).as_posix()
        if not path.is_file() or relative.startswith(skip):
            continue
        content = path.read_bytes()
        if path.name == "model.json":
            description = json.loads(content)
            assert isinstance(description["training"].pop("seconds"), float)
            content = json.dumps(description, sort_keys=True).encode()
        digests[relative] = hashlib.sha256(content).hexdigest()
    return digests


def machine(tmp_path: Path, name: str, repo: ScratchRepo) -> Machine:
    checkout = repo.clone(tmp_path / name / "ci" / "builds" / "checkout").root
    runner = Machine(
        name, tmp_path / name, checkout, depth=1, own_interpreters=False, isolated=False
    )
    runner.env["PANTS_NAMED_CACHES_DIR"] = str(tmp_path / "named-caches")
    return runner


def no_training(run: PantsRun, on: Machine) -> PantsRun:
    """`shard-plan check-no-training` on the execution log the run wrote (pants.ci.toml)."""
    log = on.checkout / "dist" / "execution-log.jsonl"
    return on.run([sys.executable, str(SHARD_PLAN), "check-no-training", str(log)])


def test_three_shards_train_each_model_once_and_later_stages_train_nothing(tmp_path: Path) -> None:
    repo = ScratchRepo(tmp_path / "origin")
    commit(repo.root, "base: the build set-up")
    for name in MODELS:
        repo.add_tiny_model(name, uses_shared=True)
    build = repo.read(f"models/{WITH_RESOURCES}/BUILD")
    repo.write(
        f"models/{WITH_RESOURCES}/BUILD",
        build.replace("    thresholds=", '    resources={"memory_gb": 1},\n    thresholds='),
    )
    repo.add_image(WITH_IMAGE)
    repo.write("checks/BUILD", "python_tests(name='tests')\n")
    repo.write("checks/sample_test.py", SAMPLE_TEST)
    commit(repo.root, "four models and an image")

    # The single-runner build: the reference dist/, and the recorded costs the plan reads.
    reference = machine(tmp_path, "reference", repo)
    single = reference.pants("package", "::")
    print(f"single runner: {single.seconds:.0f} s, trained {len(single.trained)}")
    assert single.returncode == 0, single.output
    assert single.trained == ADDRESSES

    with running_cache(tmp_path / "cache") as cache:
        ci = [CI_CONFIG, *cache.pants_options("ci")]
        planner = reference  # it only asks Pants what changed
        plan_path = tmp_path / "shard-plan.json"
        planned = planner.run(
            [sys.executable, str(SHARD_PLAN), "plan", "--repo", str(planner.checkout)]
            + ["--since=HEAD~1", f"--costs={reference.checkout / 'dist'}", f"--out={plan_path}"],
            env={"PANTS_PANTSD": "false"},
        )
        assert planned.returncode == 0, planned.output
        plan = json.loads(plan_path.read_text())
        assert sorted(plan["models"]) == ADDRESSES
        assert plan["models"][f"models/{WITH_RESOURCES}:{WITH_RESOURCES}"]["resources"] == {
            "memory_gb": 1
        }
        assert all(m["cost_source"].endswith("model.json") for m in plan["models"].values())
        cpu = [s for s in plan["shards"] if s["runner_class"] == "cpu"]
        assert len(cpu) == 3 and all(s["models"] for s in cpu), plan["shards"]
        [with_image] = [s for s in cpu if f"models/{WITH_IMAGE}:{WITH_IMAGE}" in s["models"]]
        assert f"models/{WITH_IMAGE}:image" in with_image["targets"]

        # Build stage: each shard on its own machine, as `shard-plan run` does in the pipelines.
        trained, builders = [], [machine(tmp_path, f"build-{k}", repo) for k in range(3)]
        for k, shard in enumerate(builders):
            run = shard.run(
                [sys.executable, str(SHARD_PLAN), "run", str(plan_path), "cpu", f"{k}/3", "--"]
                + ["./pants", "--no-pantsd", *ci, "package"]
            )
            print(f"build shard {k}/3: {run.seconds:.0f} s, trained {run.trained}")
            assert run.returncode == 0, run.output
            assert run.trained == cpu[k]["models"], run.output
            trained += run.trained
        assert sorted(trained) == ADDRESSES  # each model exactly once, across the shards

        # Test stage: Pants's own --shard over the changed targets, each on another machine.
        for k in range(3):
            tester = builders[(k + 1) % 3]
            run = tester.pants(*ci, *CHANGED, "test", f"--shard={k}/3")
            print(f"test shard {k}/3: {run.seconds:.0f} s, trained {run.trained}")
            assert run.returncode == 0, run.output
            assert run.trained == [], run.output
            checked = no_training(run, tester)
            assert checked.returncode == 0, checked.output

        # Assemble stage: everything changed, unsharded, from the cache only.
        assembler = machine(tmp_path, "assemble", repo)
        run = assembler.pants(*ci, *CHANGED, "package")
        print(f"assemble: {run.seconds:.0f} s, trained {run.trained}")
        assert run.returncode == 0, run.output
        assert run.trained == [], run.output
        checked = no_training(run, assembler)
        assert checked.returncode == 0, checked.output
        assert "no training ran" in checked.output

    final = packaged(assembler.checkout)
    assert final == packaged(reference.checkout)
    assert f"models/{WITH_IMAGE}/model.json" in final and f"models.{WITH_IMAGE}/image.tar" in final

    # A model asking for more GPUs than this machine has is refused, not trained on CPU.
    gpus = machine_resources().gpu + 1
    refusing = ScratchRepo.existing(assembler.checkout)
    refusing.add_tiny_model("tiny_gpu", uses_shared=False)
    build = refusing.read("models/tiny_gpu/BUILD")
    refusing.write(
        "models/tiny_gpu/BUILD",
        build.replace("    thresholds=", f'    resources={{"gpu": {gpus}}},\n    thresholds='),
    )
    run = assembler.pants("package", "models/tiny_gpu:tiny_gpu")
    assert run.returncode != 0, run.output
    assert "Refusing to train" in run.output, run.output
    assert f"gpu: needs {gpus}, this machine has {gpus - 1}" in run.output
    assert not (assembler.checkout / "dist" / "models" / "tiny_gpu").exists()
