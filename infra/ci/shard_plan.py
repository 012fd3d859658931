"""Fan CI out across runners: split what changed into shards that train every model once.

    infra/ci/shard-plan plan --since BASE --costs dist/ --out dist/shard-plan.json
    infra/ci/shard-plan run dist/shard-plan.json cpu 1/4 -- ./pants --pants-config-files=pants.ci.toml package
    infra/ci/shard-plan check-no-training dist/execution-log.jsonl

`plan` asks Pants for the changed targets and their transitive dependents (one `peek`, as
`what-will-rebuild` does), and splits them into the shards of each runner class named in
`infra/ci/runner-classes.json`:

- each `ml_model` goes to exactly one shard, of the least runner class whose resources cover the
  model's `resources` field (a GPU model never lands on a CPU runner); within a class, models are
  balanced by their training cost with LPT (longest first, onto the least loaded shard; ties by
  address and shard index, so the plan is deterministic);
- a target that depends (transitively, through changed targets) on changed models of one shard
  only goes with them (a model's image is built where the model is trained); one that depends on
  models of several shards waits for the unsharded stage after the shards (`after_shards`), so
  no shard trains another shard's model; the rest are spread over the shards by count.

A model's cost is the training time its artifact recorded (`training.seconds` in the `model.json`
of an earlier build, found under `--costs`), plus `--model-overhead` (evaluate, export, report,
image); a model without an artifact costs `--default-cost`.

`record-costs DIST DIR` keeps a build's model.json files in DIR (which pipelines carry from one
pipeline to the next) for `--costs DIR`. `run` runs a command on one shard's targets (through Pants's `--spec-files`), or says that the
shard is empty and succeeds. `check-no-training` fails if a Pants execution log shows a training
that ran instead of coming from a cache: the stages after the build must train nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra.ci.what_will_rebuild import RangeError, resolve_base  # noqa: E402

MODEL_TYPE = "ml_model"
RESOURCE_KINDS = ("gpu", "memory_gb")
RUNNER_CLASSES = REPO / "infra" / "ci" / "runner-classes.json"
DEFAULT_COST = 60.0
PLAN_FORMAT = 1


class PlanError(Exception):
    """The plan cannot be made or used as asked (the message says why)."""


@dataclass(frozen=True)
class RunnerClass:
    name: str
    resources: Mapping[str, int]
    shards: int
    labels: tuple[str, ...] = ()

    def covers(self, needs: Mapping[str, int]) -> bool:
        return all(self.resources.get(kind, 0) >= amount for kind, amount in needs.items())


@dataclass(frozen=True)
class Model:
    address: str
    cost: float
    cost_source: str
    resources: Mapping[str, int]


@dataclass(frozen=True)
class Shard:
    runner_class: str
    index: int
    count: int

    @property
    def name(self) -> str:
        return f"{self.runner_class}/{self.index}/{self.count}"


def read_runner_classes(path: Path) -> list[RunnerClass]:
    """The runner classes, least capable first."""
    try:
        raw = json.loads(path.read_text())["classes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PlanError(f"{path}: cannot read the runner classes ({e})") from e
    classes = []
    for name, spec in raw.items():
        where = f"{path}: runner class {name!r}"
        if not isinstance(spec, dict) or set(spec) != {"resources", "shards", "labels"}:
            raise PlanError(f"{where} must have exactly the keys labels, resources and shards")
        shards = spec["shards"]
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise PlanError(f"{where}: shards must be a whole number >= 1, not {shards!r}")
        resources = validate_resources(spec["resources"], where)
        labels = spec["labels"]
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise PlanError(f"{where}: labels must be a non-empty list of strings, not {labels!r}")
        classes.append(RunnerClass(name, resources, shards, tuple(labels)))
    if not classes:
        raise PlanError(f"{path} names no runner class")
    return least_capable_first(classes)


def least_capable_first(classes: Iterable[RunnerClass]) -> list[RunnerClass]:
    """Fewest GPUs, then least memory, then name: a model goes to the first class that fits."""
    return sorted(
        classes, key=lambda c: (c.resources.get("gpu", 0), c.resources.get("memory_gb", 0), c.name)
    )


def validate_resources(value: object, where: str) -> dict[str, int]:
    """`{"gpu": int >= 0, "memory_gb": int >= 0}` (either may be left out), or PlanError."""
    if not isinstance(value, dict):
        raise PlanError(f"{where}: resources must be a dict, not {value!r}")
    unknown = sorted(set(value) - set(RESOURCE_KINDS))
    if unknown:
        raise PlanError(
            f"{where}: unknown resource {unknown[0]!r}; known: {', '.join(RESOURCE_KINDS)}"
        )
    for kind, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise PlanError(f"{where}: {kind} must be a whole number >= 0, not {amount!r}")
    return dict(sorted(value.items()))


def recorded_costs(directories: Iterable[Path]) -> dict[str, tuple[float, str]]:
    """address -> (training seconds, the model.json it came from) from earlier builds' dist/
    directories (`models/<name>/model.json`); a later directory wins over an earlier one."""
    costs = {}
    for directory in directories:
        if not directory.is_dir():
            raise PlanError(f"--costs {directory}: no such directory")
        for path in sorted(directory.glob("models/*/model.json")):
            try:
                description = json.loads(path.read_text())
                seconds = float(description["training"]["seconds"])
                address = description["address"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not an artifact of ours, or one from before training was timed
            if seconds >= 0:
                costs[address] = (seconds, str(path))
    return costs


def models_of(
    peeked: Sequence[dict],
    costs: Mapping[str, tuple[float, str]],
    default_cost: float,
    model_overhead: float,
) -> list[Model]:
    models = []
    for target in peeked:
        if target.get("target_type") != MODEL_TYPE:
            continue
        address = target["address"]
        resources = validate_resources(target.get("resources") or {}, f"target {address}")
        seconds, source = costs.get(address, (default_cost, "default"))
        models.append(Model(address, seconds + model_overhead, source, resources))
    return sorted(models, key=lambda m: m.address)


def _changed_models_reached(peeked: Sequence[dict]) -> dict[str, set[str]]:
    """address -> the changed models it is or depends on, through changed targets.

    Walking the changed targets is enough: a target that depends on a changed model through some
    path is a dependent of every target on that path, so Pants's transitive dependents hold them."""
    dependents: dict[str, set[str]] = {t["address"]: set() for t in peeked}
    for target in peeked:
        for dep in target.get("dependencies") or ():
            if dep in dependents:
                dependents[dep].add(target["address"])
    reached: dict[str, set[str]] = {address: set() for address in dependents}
    for model in (t["address"] for t in peeked if t.get("target_type") == MODEL_TYPE):
        seen, todo = {model}, [model]
        while todo:
            address = todo.pop()
            reached[address].add(model)
            for dependent in dependents[address] - seen:
                seen.add(dependent)
                todo.append(dependent)
    return reached


def plan_shards(
    peeked: Sequence[dict],
    classes: Sequence[RunnerClass],
    costs: Mapping[str, tuple[float, str]] | None = None,
    default_cost: float = DEFAULT_COST,
    model_overhead: float = 0.0,
) -> dict:
    """The plan (JSON-ready) for the targets Pants's `peek` printed."""
    classes = least_capable_first(classes)
    shards = [Shard(c.name, i, c.shards) for c in classes for i in range(c.shards)]
    load = {s: 0.0 for s in shards}
    members: dict[Shard, list[str]] = {s: [] for s in shards}
    home: dict[str, Shard] = {}
    models = models_of(peeked, costs or {}, default_cost, model_overhead)
    by_class: dict[str, list[Model]] = {c.name: [] for c in classes}
    for model in models:
        fitting = [c for c in classes if c.covers(model.resources)]
        if not fitting:
            offered = "; ".join(f"{c.name}: {json.dumps(dict(c.resources))}" for c in classes)
            raise PlanError(
                f"no runner class can train {model.address}: it needs "
                f"{json.dumps(dict(model.resources))} (the `resources` field of the target), the "
                f"runner classes offer {offered}"
            )
        by_class[fitting[0].name].append(model)
    for runner_class in classes:
        own = [s for s in shards if s.runner_class == runner_class.name]
        # LPT: the costliest model first, onto the shard with the least work so far.
        for model in sorted(by_class[runner_class.name], key=lambda m: (-m.cost, m.address)):
            target = min(own, key=lambda s: (load[s], s.index))
            load[target] += model.cost
            members[target].append(model.address)
            home[model.address] = target

    after_shards = []
    others = []
    reached = _changed_models_reached(peeked)
    for address in sorted(reached):
        if address in home:
            continue
        homes = {home[m] for m in reached[address]}
        if len(homes) == 1:
            members[homes.pop()].append(address)
        elif homes:
            after_shards.append(address)
        else:
            others.append(address)
    # The rest train nothing: spread by count over the shards of the least capable class.
    cheapest = [s for s in shards if s.runner_class == classes[0].name]
    for i, address in enumerate(others):
        members[cheapest[i % len(cheapest)]].append(address)

    return {
        "format": PLAN_FORMAT,
        "runner_classes": {
            c.name: {"resources": dict(c.resources), "shards": c.shards} for c in classes
        },
        "shards": [
            {
                "runner_class": s.runner_class,
                "index": s.index,
                "count": s.count,
                "cost_seconds": round(load[s], 3),
                "models": sorted(a for a in members[s] if a in home),
                "targets": sorted(members[s]),
            }
            for s in shards
        ],
        "models": {
            m.address: {
                "cost_seconds": round(m.cost, 3),
                "cost_source": m.cost_source,
                "resources": dict(m.resources),
                "shard": home[m.address].name,
            }
            for m in models
        },
        "after_shards": after_shards,
    }


def shard_of(plan: dict, runner_class: str, shard: str) -> dict:
    """The plan's entry for `K/N` (0-based K, as Pants's `--shard`) of `runner_class`."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise PlanError(f"shard must look like K/N (e.g. 0/4), not {shard!r}") from None
    classes = plan.get("runner_classes", {})
    if runner_class not in classes:
        raise PlanError(
            f"the plan has no runner class {runner_class!r}; it has {', '.join(classes)}"
        )
    planned = classes[runner_class]["shards"]
    if count != planned:
        raise PlanError(
            f"this job is shard {shard} of {runner_class!r}, but the plan splits that class into "
            f"{planned} shards: the pipeline's shard count and infra/ci/runner-classes.json disagree"
        )
    if not 0 <= index < count:
        raise PlanError(f"shard index {index} is not in 0..{count - 1}")
    [entry] = [
        s for s in plan["shards"] if s["runner_class"] == runner_class and s["index"] == index
    ]
    return entry


def trainings_that_ran(log_path: Path) -> list[str]:
    """The training processes an execution log (pants.ci.toml's `[execution-log]`) shows as run
    here rather than taken from a cache."""
    from infra.cache.explain_miss import Log

    return sorted(
        p["description"]
        for p in Log.read(log_path).processes
        if p["description"].startswith("Train ") and p["source"] == "Ran"
    )


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


def _peek(repo: Path, base: str, pants_args: Sequence[str]) -> list[dict]:
    result = subprocess.run(
        [str(repo / "pants"), *pants_args, f"--changed-since={base}"]
        + ["--changed-dependents=transitive", "peek", "--exclude-defaults"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PlanError(f"Pants failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout) if result.stdout.strip() else []


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".partial") as f:
        f.write(text)
    os.replace(f.name, path)


def _plan_command(args: argparse.Namespace) -> int:
    repo = Path(args.repo or subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True
    ).stdout.strip())  # fmt: skip
    base = resolve_base(repo, args.since)
    pants_args = [f"--pants-config-files={f}" for f in args.pants_config_files]
    plan = plan_shards(
        _peek(repo, base, pants_args),
        read_runner_classes(args.runner_classes),
        recorded_costs(args.costs),
        args.default_cost,
        args.model_overhead,
    )
    plan["base"] = base
    text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    if args.out:
        _write_atomically(args.out, text)
    for entry in plan["shards"]:
        print(
            f"{entry['runner_class']} {entry['index']}/{entry['count']}: "
            f"{len(entry['models'])} models, {len(entry['targets'])} targets, "
            f"{entry['cost_seconds']:.0f} s of training"
        )
    if plan["after_shards"]:
        print(f"after the shards: {', '.join(plan['after_shards'])}")
    if not args.out:
        print(text, end="")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    plan = json.loads(args.plan.read_text())
    entry = shard_of(plan, args.runner_class, args.shard)
    command = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        raise PlanError("no command given after `--`")
    label = f"{args.runner_class} shard {args.shard}"
    if not entry["targets"]:
        print(f"{label} is empty: nothing to run.")
        return 0
    print(f"{label}: {len(entry['models'])} models ({', '.join(entry['models']) or 'none'})")
    spec_file = args.plan.parent / f"shard-{args.runner_class}-{entry['index']}.txt"
    _write_atomically(spec_file, "".join(f"{t}\n" for t in entry["targets"]))
    # --spec-files goes right after ./pants: a global option, before the goals.
    command = [command[0], f"--spec-files={spec_file}", *command[1:]]
    return subprocess.run(command).returncode


def _record_costs_command(args: argparse.Namespace) -> int:
    """Keeps each model.json of a build (its recorded training time) for the next plans."""
    kept = 0
    for path in sorted(args.dist.glob("models/*/model.json")):
        relative = path.relative_to(args.dist)
        _write_atomically(args.into / relative, path.read_text())
        kept += 1
    print(f"kept the recorded costs of {kept} models in {args.into}")
    return 0


def _check_command(args: argparse.Namespace) -> int:
    if not args.log.is_file():
        raise PlanError(f"{args.log}: no execution log (is [execution-log].path set?)")
    ran = trainings_that_ran(args.log)
    if ran:
        print(
            f"{len(ran)} training(s) ran in a stage that must only use the cache:\n  "
            + "\n  ".join(ran)
            + "\nThe build stage's shards should have trained them: check that they pushed to the "
            "remote cache (remote_cache_write_successes) and that the cache keys match "
            "(infra/remote-cache/explain-miss diff).",
            file=sys.stderr,
        )
        return 1
    print(f"{args.log}: no training ran (every model came from a cache).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command_name", required=True)

    plan = commands.add_parser("plan", help="plan the shards of what changed since a base")
    plan.add_argument("--since", required=True, help="BASE, BASE..HEAD or BASE...HEAD")
    plan.add_argument("--costs", type=Path, action="append", default=[],
                      help="an earlier build's dist/ (its models/*/model.json); repeatable")  # fmt: skip
    plan.add_argument("--default-cost", type=float, default=DEFAULT_COST,
                      help=f"seconds for a model with no recorded cost (default {DEFAULT_COST})")  # fmt: skip
    plan.add_argument("--model-overhead", type=float, default=0.0,
                      help="seconds added to every model (evaluate, export, report, image)")  # fmt: skip
    plan.add_argument("--runner-classes", type=Path, default=RUNNER_CLASSES)
    plan.add_argument("--pants-config-files", action="append", default=[])
    plan.add_argument("--repo", type=Path, default=None)
    plan.add_argument("--out", type=Path, default=None, help="write the plan here (JSON)")
    plan.set_defaults(handler=_plan_command)

    run = commands.add_parser("run", help="run a command (./pants ...) on one shard's targets")
    run.add_argument("plan", type=Path)
    run.add_argument("runner_class")
    run.add_argument("shard", help="K/N, K from 0")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run_command)

    record = commands.add_parser("record-costs", help="keep a build's model.json files for --costs")
    record.add_argument("dist", type=Path, help="the build's dist/")
    record.add_argument("into", type=Path, help="the directory the next plans read with --costs")
    record.set_defaults(handler=_record_costs_command)

    check = commands.add_parser("check-no-training", help="fail if a training ran (not cached)")
    check.add_argument("log", type=Path, help="a Pants execution log (dist/execution-log.jsonl)")
    check.set_defaults(handler=_check_command)

    args = parser.parse_args(argv)
    for number in ("default_cost", "model_overhead"):
        if getattr(args, number, 0) < 0:
            parser.error(f"--{number.replace('_', '-')} must be >= 0")
    try:
        return args.handler(args)
    except (PlanError, RangeError) as e:
        print(f"shard-plan: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
