"""Pipeline report: how often each CI stage succeeds, and what that does to the whole pipeline.

    infra/report/pipeline-report history.json
    infra/report/pipeline-report --junit runs/*.xml

A pipeline run succeeds only if every stage does, so its success probability is the product of
the stages' success rates: P = r_1 * r_2 * ... * r_n. A stage's rate counts only the runs in which
it ran (a stage skipped after an earlier failure, or on a branch that does not deploy, neither
passes nor fails). The stage that costs most is the one whose failures take most off P: making it
always pass would raise P to P / r_i, so it is the stage with the lowest rate.

Input, either:
- a JSON history: {"runs": [{"id": "...", "stages": {"build": "success", "test": "failed",
  "package": "skipped"}}, ...]}; stage order is the order of first appearance;
- JUnit XML files, one per pipeline run, one <testcase> per stage (<failure>/<error> = failed,
  <skipped> = skipped, else success).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"
Run = dict[str, str]  # stage -> outcome, in stage order


@dataclass(frozen=True)
class StageStats:
    name: str
    ran: int
    passed: int

    @property
    def rate(self) -> float:
        return self.passed / self.ran if self.ran else 1.0


@dataclass(frozen=True)
class Report:
    runs: int
    stages: tuple[StageStats, ...]

    @property
    def probability(self) -> float:
        return math.prod(s.rate for s in self.stages)

    def costliest(self) -> StageStats:
        return min(self.stages, key=lambda s: (s.rate, -s.ran))

    def to_text(self) -> str:
        width = max(len("stage"), *(len(s.name) for s in self.stages))
        lines = [f"{self.runs} pipeline runs", f"{'stage':<{width}}  ran  passed  success rate"]
        lines += [f"{s.name:<{width}} {s.ran:>4} {s.passed:>7}  {s.rate:.4f}" for s in self.stages]
        factors = " x ".join(f"{s.rate:.4f}" for s in self.stages)
        lines.append(f"P(pipeline succeeds) = {factors} = {self.probability:.4f}")
        worst = self.costliest()
        lines.append(
            f"Costs most: {worst.name} (success rate {worst.rate:.4f}); if it always passed, "
            f"P would be {self.probability / worst.rate:.4f} instead of {self.probability:.4f}"
            if worst.rate
            else f"Costs most: {worst.name} (it never passed)"
        )
        return "\n".join(lines)


def report(runs: Sequence[Run]) -> Report:
    if not runs:
        raise ValueError("the history holds no runs")
    order: dict[str, None] = {}
    for run in runs:
        for stage, outcome in run.items():
            if outcome not in (SUCCESS, FAILED, SKIPPED):
                raise ValueError(f"stage {stage!r} has the unknown outcome {outcome!r}")
            order.setdefault(stage)
    stats = tuple(
        StageStats(
            name=stage,
            ran=sum(run.get(stage, SKIPPED) != SKIPPED for run in runs),
            passed=sum(run.get(stage) == SUCCESS for run in runs),
        )
        for stage in order
    )
    return Report(runs=len(runs), stages=stats)


def load_json(path: Path) -> list[Run]:
    data = json.loads(path.read_text())
    return [dict(run["stages"]) for run in data["runs"]]


def load_junit(paths: Iterable[Path]) -> list[Run]:
    runs = []
    for path in paths:
        run: Run = {}
        for case in ET.parse(path).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                run[case.attrib["name"]] = FAILED
            elif case.find("skipped") is not None:
                run[case.attrib["name"]] = SKIPPED
            else:
                run[case.attrib["name"]] = SUCCESS
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="a JSON history, or JUnit XML files")
    parser.add_argument("--junit", action="store_true", help="the files are JUnit XML, one per run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if not args.junit and len(args.files) != 1:
        parser.error("give one JSON history, or --junit with one XML file per run")
    try:
        runs = load_junit(args.files) if args.junit else load_json(args.files[0])
        result = report(runs)
    except (OSError, ValueError, KeyError, ET.ParseError) as e:
        print(f"pipeline-report: {e!r}", file=sys.stderr)
        return 2
    if args.json:
        stages = [
            {"name": s.name, "ran": s.ran, "passed": s.passed, "rate": s.rate}
            for s in result.stages
        ]
        out = {"runs": result.runs, "stages": stages, "probability": result.probability}
        print(json.dumps({**out, "costliest": result.costliest().name}, indent=2))
    else:
        print(result.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
