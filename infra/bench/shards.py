"""Sharded CI at scale: measure on this machine what it can run, model the rest from that.

This machine has 2 cores, so N = 100 models x {1, 2, 4, 8} cold shards cannot run side by side
here. The benchmark therefore runs one small sharded pipeline for real and fits a cost model to
it, then computes each pipeline's critical path (plan + slowest build shard + the unsharded
assemble stage that waits for it) with the real planner (infra/ci/shard_plan.py) for N = 100 and
N = 1,000.

Measured (real ./pants, each run on a fresh simulated machine of tests/e2e/machines.py: its own
checkout, HOME and XDG_CACHE_HOME, so an empty local cache; Pants's named caches shared and
filled by a warm-up run first, as on CI runners that keep them; a real BuildGrid from
tests/support/remote_cache.py), on a scratch repo of N_real tiny models from scale.py:

  single        `package ::` cold, no remote cache: one runner doing everything
  plan          `infra/ci/shard-plan plan` over what the last commit changed
  shard K/S     `shard-plan run ... package` cold, writing to the remote cache but not reading
                it, so no shard profits from another (as when they run at the same time)
  assemble      `package` of everything changed, reading the cache: must train nothing
  assemble_half the same for half the models (a second point for the per-model hit cost)
  shared_shard  after editing models/shared/left.py (half the models retrain): a new plan, and
                its shard 0 on a fresh machine that reads the cache (the warm-cache fixed cost)

Fitted from those: c = per-model cold cost, F = a cold runner's fixed cost, F_warm = a runner's
fixed cost when the cache already holds the requirement PEXes, A0 + h*n = assemble of n models.
Each model's own cost adds its recorded training time's deviation from the mean (model.json).

    python3 infra/bench/shards.py --n-real 8 --shards-real 2     (needs pytest: the cache helper)

Writes `<out>/shards.json` (measured, fitted, simulated) and `<out>/shards.png` (through
`./pants run infra/bench/shards_plot.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra.bench.scale import build_repo, half_of, model_name  # noqa: E402
from infra.ci.shard_plan import RunnerClass, plan_shards, read_runner_classes  # noqa: E402
from tests.e2e.machines import Machine  # noqa: E402
from tests.e2e.scratch_repo import PantsRun, ScratchRepo  # noqa: E402
from tests.support.remote_cache import running_cache  # noqa: E402

SHARD_PLAN = REPO / "infra" / "ci" / "shard_plan.py"
CI_CONFIG = "--pants-config-files=pants.ci.toml"
CHANGED = ["--changed-since=HEAD~1", "--changed-dependents=transitive"]
SIMULATED_N = (100, 1000)
SIMULATED_SHARDS = (1, 2, 4, 8)


class BenchFailure(Exception):
    """A real run failed or trained other than what the case implies."""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


class Bench:
    def __init__(self, workdir: Path, log=print) -> None:
        self.workdir = workdir
        self.log = log
        self.machines = 0

    def machine(self, repo: ScratchRepo, label: str) -> Machine:
        """A fresh machine (empty local cache) with its own clone of `repo`. Pants's named caches
        (downloads, installed venvs: no results) are shared, as on CI runners that keep them."""
        self.machines += 1
        base = self.workdir / f"{self.machines:02d}-{label}"
        checkout = repo.clone(base / "ci" / "checkout").root
        runner = Machine(label, base, checkout, depth=1, own_interpreters=False, isolated=False)
        runner.env["PANTS_NAMED_CACHES_DIR"] = str(self.workdir / "named-caches")
        return runner

    def timed(self, label: str, machine: Machine, argv: list[str], trained: int | None) -> PantsRun:
        self.load = load = os.getloadavg()[0]
        run = machine.run(argv, env={"PANTS_PANTSD": "false"}, timeout=7200)
        self.log(f"{label}: {run.seconds:.1f} s, trained {len(run.trained)}, load {load:.2f}")
        if run.returncode != 0:
            raise BenchFailure(f"{label} failed:\n{run.output[-6000:]}")
        if trained is not None and len(run.trained) != trained:
            raise BenchFailure(f"{label}: expected {trained} trainings, got {run.trained}")
        return run


def measure(workdir: Path, n: int, shards: int, log=print) -> dict:
    """The real runs (see the module's docstring); seconds, trainings and load of each."""
    bench = Bench(workdir, log)
    repo = build_repo(workdir / "origin", 0)
    _git(repo.root, "init", "-q", "-b", "main")
    _git(repo.root, "add", "-A")
    _git(repo.root, "commit", "-qm", "base")
    for i in range(n):
        repo.add_tiny_model(model_name(i), uses_shared=True, shared_module=half_of(i))
    _git(repo.root, "add", "-A")
    _git(repo.root, "commit", "-qm", f"{n} models")
    measured: dict = {"n_real": n, "shards_real": shards, "runs": {}}

    def keep(label: str, run: PantsRun, models: int) -> None:
        measured["runs"][label] = {
            "seconds": round(run.seconds, 2),
            "models": models,
            "load_average_1min": round(bench.load, 2),
        }

    # Fill the shared named caches first, so that no measured run pays for installing torch.
    warm = bench.machine(repo, "warm-up")
    bench.timed(
        "warm-up", warm, ["./pants", "package", f"models/{model_name(0)}:{model_name(0)}"], 1
    )
    single = bench.machine(repo, "single")
    keep("single", bench.timed("single", single, ["./pants", "package", "::"], n), n)
    trainings = []
    for path in sorted((single.checkout / "dist" / "models").glob("*/model.json")):
        trainings.append(json.loads(path.read_text())["training"]["seconds"])
    measured["training_seconds"] = trainings
    classes_file = workdir / "runner-classes.json"
    classes_file.write_text(json.dumps({"classes": {"cpu": {
        "resources": {}, "shards": shards, "labels": ["bench"]}}}))  # fmt: skip
    read_runner_classes(classes_file)  # a file the planner refuses would waste the runs below

    with running_cache(workdir / "cache") as cache:
        write_only = [CI_CONFIG, *cache.pants_options("ci"), "--no-remote-cache-read"]
        read_write = [CI_CONFIG, *cache.pants_options("ci")]
        planner = bench.machine(repo, "plan")
        plan_run, plan = _plan(bench, planner, single.checkout / "dist", workdir, classes_file)
        keep("plan", plan_run, n)
        for k, entry in enumerate(plan["shards"]):
            runner = bench.machine(repo, f"shard-{k}")
            argv = [sys.executable, str(SHARD_PLAN), "run", str(workdir / "plan.json"), "cpu"]
            argv += [f"{k}/{shards}", "--", "./pants", *write_only, "package"]
            run = bench.timed(f"shard {k}/{shards}", runner, argv, len(entry["models"]))
            keep(f"shard_{k}", run, len(entry["models"]))
        assembler = bench.machine(repo, "assemble")
        keep("assemble", bench.timed("assemble", assembler, ["./pants", *read_write, *CHANGED, "package"], 0), n)  # fmt: skip
        half = [f"models/{model_name(i)}:{model_name(i)}" for i in range(n // 2)]
        assembler = bench.machine(repo, "assemble-half")
        keep("assemble_half", bench.timed("assemble_half", assembler, ["./pants", *read_write, "package", *half], 0), n // 2)  # fmt: skip

        # A shared-module change: half the models retrain, on runners whose cache is warm.
        edited = ScratchRepo.existing(repo.root)
        path = f"models/shared/{half_of(0)}.py"
        edited.write(path, edited.read(path) + "# edited\n")
        _git(repo.root, "commit", "-qam", "edit the shared module")
        planner = bench.machine(repo, "plan-shared")
        plan_run, plan = _plan(bench, planner, single.checkout / "dist", workdir, classes_file)
        keep("plan_shared", plan_run, n // 2)
        runner = bench.machine(repo, "shared-shard-0")
        argv = [sys.executable, str(SHARD_PLAN), "run", str(workdir / "plan.json"), "cpu"]
        argv += [f"0/{shards}", "--", "./pants", *read_write, "package"]
        models = len(plan["shards"][0]["models"])
        keep("shared_shard", bench.timed("shared shard 0", runner, argv, models), models)
    measured["load_average_end"] = os.getloadavg()[0]
    return measured


def _plan(bench: Bench, machine: Machine, costs: Path, workdir: Path, classes: Path):
    argv = [sys.executable, str(SHARD_PLAN), "plan", "--repo", str(machine.checkout)]
    argv += ["--since=HEAD~1", f"--costs={costs}", f"--runner-classes={classes}"]
    argv += [f"--out={workdir / 'plan.json'}"]
    run = bench.timed("plan", machine, argv, None)
    return run, json.loads((workdir / "plan.json").read_text())


def fit(measured: dict) -> dict:
    """The cost model's parameters from the real runs (see the module's docstring)."""
    runs, n, s = measured["runs"], measured["n_real"], measured["shards_real"]
    shard_runs = [runs[f"shard_{k}"] for k in range(s)]
    per_shard = statistics.mean(r["seconds"] for r in shard_runs)
    per_shard_models = statistics.mean(r["models"] for r in shard_runs)
    c = (runs["single"]["seconds"] - per_shard) / (n - per_shard_models)
    f = per_shard - c * per_shard_models
    h = (runs["assemble"]["seconds"] - runs["assemble_half"]["seconds"]) / (
        runs["assemble"]["models"] - runs["assemble_half"]["models"]
    )
    a0 = runs["assemble"]["seconds"] - h * runs["assemble"]["models"]
    f_warm = runs["shared_shard"]["seconds"] - c * runs["shared_shard"]["models"]
    plan = statistics.mean([runs["plan"]["seconds"], runs["plan_shared"]["seconds"]])
    return {
        "per_model_cold_s": round(c, 3),
        "runner_fixed_cold_s": round(f, 3),
        "runner_fixed_warm_s": round(f_warm, 3),
        "assemble_fixed_s": round(a0, 3),
        "assemble_per_model_s": round(h, 3),
        "plan_s": round(plan, 3),
    }


def model_costs(n: int, model: dict, trainings: list[float]) -> dict[str, tuple[float, str]]:
    """Each of `n` synthetic models' cold cost: c plus its (cycled) recorded training time's
    deviation from the mean."""
    mean = statistics.mean(trainings)
    return {
        f"models/{model_name(i)}:{model_name(i)}": (
            model["per_model_cold_s"] + trainings[i % len(trainings)] - mean,
            "bench",
        )
        for i in range(n)
    }


def critical_path(n: int, shards: int, scenario: str, model: dict, trainings: list[float]) -> dict:
    """Plan + slowest build shard + assemble, for `scenario` "cold" (every model trains, runners
    start from an empty cache) or "shared" (half retrain, the cache holds everything else)."""
    names = [model_name(i) for i in range(n)]
    changed = (
        names if scenario == "cold" else [m for i, m in enumerate(names) if half_of(i) == "left"]
    )
    peeked = [{"address": f"models/{m}:{m}", "target_type": "ml_model"} for m in changed]
    plan = plan_shards(peeked, [RunnerClass("cpu", {}, shards)], model_costs(n, model, trainings))
    fixed = model["runner_fixed_cold_s"] if scenario == "cold" else model["runner_fixed_warm_s"]
    slowest = fixed + max(s["cost_seconds"] for s in plan["shards"])
    assemble = model["assemble_fixed_s"] + model["assemble_per_model_s"] * len(changed)
    total = model["plan_s"] + slowest + assemble
    single_runner = fixed + sum(m["cost_seconds"] for m in plan["models"].values())
    return {
        "n": n,
        "shards": shards,
        "scenario": scenario,
        "trained": len(changed),
        "slowest_shard_s": round(slowest, 1),
        "critical_path_s": round(total, 1),
        "single_runner_s": round(single_runner, 1),
    }


def simulate(model: dict, trainings: list[float]) -> list[dict]:
    return [
        critical_path(n, s, scenario, model, trainings)
        for n in SIMULATED_N
        for scenario in ("cold", "shared")
        for s in SIMULATED_SHARDS
    ]


def format_table(rows: list[dict]) -> str:
    lines = [
        "| N | change | trained | shards | slowest shard (s) | critical path (s) | one runner, no fan-out (s) | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = r["single_runner_s"] / r["critical_path_s"]
        lines.append(
            f"| {r['n']} | {r['scenario']} | {r['trained']} | {r['shards']} | "
            f"{r['slowest_shard_s']:.0f} | {r['critical_path_s']:.0f} | "
            f"{r['single_runner_s']:.0f} | {speedup:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-real", type=int, default=8)
    parser.add_argument("--shards-real", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "infra/bench/results")
    parser.add_argument("--workdir", type=Path, help="where scratch repos go (default: a temp dir)")
    parser.add_argument("--measured", type=Path, help="re-simulate from an earlier shards.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.n_real < 4 or args.n_real % (2 * args.shards_real):
        parser.error("--n-real must be >= 4 and a multiple of 2 x --shards-real")
    out = args.out.resolve()
    if args.measured:
        measured = json.loads(args.measured.read_text())["measured"]
    else:
        workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="mlbench-shards-"))).resolve()
        try:
            measured = measure(workdir, args.n_real, args.shards_real)
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    model = fit(measured)
    rows = simulate(model, measured["training_seconds"])
    out.mkdir(parents=True, exist_ok=True)
    result = {"measured": measured, "fitted": model, "simulated": rows}
    (out / "shards.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(model, indent=2))
    print(format_table(rows))
    print(f"wrote {out / 'shards.json'}")
    if not args.no_plot:
        os.chdir(REPO)
        plot = ["./pants", "run", "infra/bench/shards_plot.py", "--"]
        code = subprocess.run([*plot, str(out / "shards.json"), str(out / "shards.png")]).returncode
        if code != 0:
            return code
        print(f"wrote {out / 'shards.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
