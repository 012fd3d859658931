"""What did a change do to each model? Test metrics before and after, as Markdown and a PNG chart.

    infra/ci/metrics-diff BASE [HEAD] [--out DIR] [--tolerance 0.005] [--pants-config-files F]

Packages every `ml_model` at BASE (in a temporary git worktree) and at HEAD (the checked-out
working tree when HEAD is not given, else another worktree), then compares their `model.json`
files: for every model whose artifact differs, each gated metric before and after, its delta and
threshold; a drop larger than the tolerance is flagged as a regression, and so is a class whose
F1 dropped by more than it. Models added or removed are listed. Packaging a commit the cache
already saw trains nothing; any training Pants had to run (`Completed: Train <address>`) is
reported, because the cache lacked it.

Writes `DIR/metrics-diff.md`, `DIR/metrics-diff.json` and `DIR/metrics-diff.png` (default
`dist/metrics-diff`) and prints the Markdown. Exit status: 0 (also with regressions: the diff
informs the review, the evaluation gate decides), 2 on bad arguments or a build that failed for
another reason than a model's gate.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

GATED_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
DEFAULT_TOLERANCE = 0.005
_TRAINED = re.compile(r"Completed: Train (\S+)")
_GATE_FAILURE = re.compile(r"Model (\S+) failed its evaluation gate")


class DiffError(Exception):
    """The comparison cannot be made (bad revision, a build that failed)."""


def _run(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _git(repo: Path, *args: str) -> str:
    result = _run(["git", *args], repo)
    if result.returncode != 0:
        raise DiffError(f"git {' '.join(args)}: {result.stdout.strip()}")
    return result.stdout.strip()


@dataclass
class Build:
    """The artifacts of one commit: model address -> model.json, and what it cost."""

    label: str
    commit: str
    models: dict[str, dict] = field(default_factory=dict)
    gate_failures: dict[str, str] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)


def _model_addresses(pants: Sequence[str], root: Path) -> list[str]:
    result = _run([*pants, "--filter-target-type=ml_model", "list", "::"], root)
    if result.returncode != 0:
        raise DiffError(f"listing the models in {root} failed:\n{result.stdout[-4000:]}")
    return sorted(line for line in result.stdout.splitlines() if re.match(r"^\S+:\S+$", line))


def _package(pants: Sequence[str], root: Path, addresses: Sequence[str], build: Build) -> None:
    """Packages the models; if one fails its gate, the others one by one (Pants stops at one)."""
    result = _run([*pants, "package", *addresses], root)
    build.trained.extend(_TRAINED.findall(result.stdout))
    if result.returncode == 0:
        return
    if len(addresses) > 1 and _GATE_FAILURE.search(result.stdout):
        for address in addresses:
            _package(pants, root, [address], build)
        return
    failed = _GATE_FAILURE.search(result.stdout)
    if failed and len(addresses) == 1:
        start = result.stdout.find(failed.group(0))
        build.gate_failures[addresses[0]] = result.stdout[start:].split("Nothing was packaged")[0]
        return
    raise DiffError(f"packaging the models at {build.label} failed:\n{result.stdout[-4000:]}")


def build_models(root: Path, label: str, pants_args: Sequence[str]) -> Build:
    pants = [str(root / "pants"), *pants_args]
    build = Build(label, _git(root, "rev-parse", "HEAD"))
    addresses = _model_addresses(pants, root)
    if addresses:
        _package(pants, root, addresses, build)
    for address in addresses:
        if address in build.gate_failures:
            continue
        name = address.rsplit(":", 1)[1]
        path = root / "dist" / "models" / name / "model.json"
        build.models[address] = json.loads(path.read_text())
    build.trained = sorted(set(build.trained))
    return build


def build_commit(
    repo: Path, rev: str, label: str, pants_args: Sequence[str], scratch: Path
) -> Build:
    """Builds `rev` in a detached worktree under `scratch`, without leaving a pantsd behind."""
    commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    worktree = scratch / label
    _git(repo, "worktree", "add", "--detach", str(worktree), commit)
    try:
        return build_models(worktree, f"{label} ({commit[:12]})", ["--no-pantsd", *pants_args])
    finally:
        _git(repo, "worktree", "remove", "--force", str(worktree))


@dataclass(frozen=True)
class MetricChange:
    metric: str
    base: float
    head: float
    threshold: float | None
    regression: bool

    @property
    def delta(self) -> float:
        return self.head - self.base


@dataclass(frozen=True)
class ModelChange:
    address: str
    base_version: str
    head_version: str
    metrics: tuple[MetricChange, ...]
    worse_classes: tuple[tuple[str, float, float], ...]  # (class, base F1, head F1)

    @property
    def regressed(self) -> bool:
        return any(m.regression for m in self.metrics) or bool(self.worse_classes)


@dataclass(frozen=True)
class Diff:
    base: Build
    head: Build
    tolerance: float
    changed: tuple[ModelChange, ...]
    unchanged: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def regressions(self) -> tuple[str, ...]:
        return tuple(c.address for c in self.changed if c.regressed)


def compare_models(address: str, base: dict, head: dict, tolerance: float) -> ModelChange:
    thresholds = head.get("thresholds", {})
    metrics = []
    for name in GATED_METRICS:
        before, after = base["metrics"][name], head["metrics"][name]
        metrics.append(
            MetricChange(name, before, after, thresholds.get(name), after < before - tolerance)
        )
    worse = []
    base_classes = base["metrics"].get("per_class", {})
    for name, after in head["metrics"].get("per_class", {}).items():
        before = base_classes.get(name)
        if before is not None and after["f1"] < before["f1"] - tolerance:
            worse.append((name, before["f1"], after["f1"]))
    return ModelChange(address, base["version"], head["version"], tuple(metrics), tuple(worse))


def _differs(base: dict, head: dict) -> bool:
    keys = ("version", "metrics", "thresholds")
    return any(base.get(k) != head.get(k) for k in keys)


def diff_builds(base: Build, head: Build, tolerance: float) -> Diff:
    changed, unchanged = [], []
    for address in sorted(set(base.models) & set(head.models)):
        if _differs(base.models[address], head.models[address]):
            changed.append(
                compare_models(address, base.models[address], head.models[address], tolerance)
            )
        else:
            unchanged.append(address)
    base_all = set(base.models) | set(base.gate_failures)
    head_all = set(head.models) | set(head.gate_failures)
    return Diff(
        base,
        head,
        tolerance,
        tuple(changed),
        tuple(unchanged),
        tuple(sorted(head_all - base_all)),
        tuple(sorted(base_all - head_all)),
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def to_markdown(diff: Diff, chart: str | None = "metrics-diff.png") -> str:
    lines = [f"## Model metrics: {diff.base.label} → {diff.head.label}", ""]
    if diff.regressions:
        lines.append(
            f"**{len(diff.regressions)} model(s) regressed** by more than {diff.tolerance:g}: "
            + ", ".join(f"`{a}`" for a in diff.regressions)
        )
    else:
        lines.append(f"No regression larger than {diff.tolerance:g}.")
    lines.append("")
    if diff.changed:
        lines += [
            "| model | metric | base | head | delta | threshold | |",
            "|---|---|---|---|---|---|---|",
        ]
        for change in diff.changed:
            for m in change.metrics:
                if m.regression:
                    flag = "**regression**"
                elif m.threshold is not None and m.head < m.threshold:
                    flag = "below the gate"
                else:
                    flag = ""
                lines.append(
                    f"| `{change.address}` | {m.metric} | {_number(m.base)} | {_number(m.head)} "
                    f"| {m.delta:+.4f} | {_number(m.threshold)} | {flag} |"
                )
        lines.append("")
        for change in diff.changed:
            lines.append(
                f"- `{change.address}`: version {change.base_version[:12]} → "
                f"{change.head_version[:12]}"
            )
            for name, before, after in change.worse_classes:
                lines.append(f"  - class `{name}`: F1 {before:.4f} → {after:.4f} (**worse**)")
        lines.append("")
    else:
        lines += ["No model's artifact differs.", ""]
    for title, addresses in (("Added", diff.added), ("Removed", diff.removed)):
        if addresses:
            lines.append(f"{title}: " + ", ".join(f"`{a}`" for a in addresses))
    for build in (diff.base, diff.head):
        for address, message in sorted(build.gate_failures.items()):
            lines.append(f"- At {build.label}, `{address}` failed its gate: {message.strip()}")
    if diff.unchanged:
        lines.append(f"Unchanged: {len(diff.unchanged)} model(s).")
    lines.append("")
    for build in (diff.base, diff.head):
        if build.trained:
            lines.append(
                f"Computed at {build.label} because the cache lacked it: trained "
                + ", ".join(f"`{a}`" for a in build.trained)
                + "."
            )
        else:
            lines.append(f"{build.label}: every artifact came from the cache (nothing trained).")
    if chart and diff.changed:
        lines += ["", f"![metrics before and after]({chart})"]
    return "\n".join(lines) + "\n"


def to_json(diff: Diff) -> dict:
    return {
        "base": {
            "label": diff.base.label,
            "commit": diff.base.commit,
            "trained": diff.base.trained,
        },
        "head": {
            "label": diff.head.label,
            "commit": diff.head.commit,
            "trained": diff.head.trained,
        },
        "tolerance": diff.tolerance,
        "changed": [
            {
                "address": c.address,
                "base_version": c.base_version,
                "head_version": c.head_version,
                "regressed": c.regressed,
                "metrics": {
                    m.metric: {
                        "base": m.base,
                        "head": m.head,
                        "delta": m.delta,
                        "threshold": m.threshold,
                        "regression": m.regression,
                    }
                    for m in c.metrics
                },
                "worse_classes": [
                    {"class": n, "base_f1": b, "head_f1": h} for n, b, h in c.worse_classes
                ],
            }
            for c in diff.changed
        ],
        "unchanged": list(diff.unchanged),
        "added": list(diff.added),
        "removed": list(diff.removed),
        "gate_failures": {"base": diff.base.gate_failures, "head": diff.head.gate_failures},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare against, e.g. the merge base")
    parser.add_argument("head", nargs="?", help="default: the checked-out working tree")
    parser.add_argument("--out", type=Path, default=None, help="default: dist/metrics-diff")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--repo", type=Path, default=None)
    parser.add_argument("--pants-config-files", action="append", default=[])
    args = parser.parse_args(argv)
    if not 0 <= args.tolerance < 1:
        print(f"metrics-diff: --tolerance must be in [0, 1), got {args.tolerance}", file=sys.stderr)
        return 2
    try:
        repo = args.repo or Path(_git(Path.cwd(), "rev-parse", "--show-toplevel"))
        out = args.out or repo / "dist" / "metrics-diff"
        pants_args = [f"--pants-config-files={f}" for f in args.pants_config_files]
        with tempfile.TemporaryDirectory(prefix="metrics-diff-") as scratch:
            base = build_commit(repo, args.base, "base", pants_args, Path(scratch))
            if args.head:
                head = build_commit(repo, args.head, "head", pants_args, Path(scratch))
            else:
                head = build_models(repo, "head (working tree)", pants_args)
    except DiffError as e:
        print(f"metrics-diff: {e}", file=sys.stderr)
        return 2
    diff = diff_builds(base, head, args.tolerance)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics-diff.json").write_text(json.dumps(to_json(diff), indent=2, sort_keys=True))
    chart = None
    if diff.changed:
        result = _run(
            [
                str(repo / "pants"),
                *pants_args,
                "run",
                "infra/ci:metrics_chart",
                "--",
                str((out / "metrics-diff.json").resolve()),
                str((out / "metrics-diff.png").resolve()),
            ],
            repo,
        )
        if result.returncode == 0:
            chart = "metrics-diff.png"
        else:
            print(f"metrics-diff: the chart failed:\n{result.stdout[-2000:]}", file=sys.stderr)
    markdown = to_markdown(diff, chart)
    (out / "metrics-diff.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
