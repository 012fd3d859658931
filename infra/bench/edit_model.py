"""What one model's config edit costs in this repo, with pantsd warm: real `./pants package`.

Each run nudges the model's learning rate by a new, tiny relative amount (a config Pants has never
seen, so exactly one training, yet the same gate result) and times `./pants package <dir>::`
(the model, its report, its image), with where the time went according to Pants's log:

    python3 infra/bench/edit_model.py models/digits_cnn_torch --runs 3

The config file is restored afterwards (and `dist/` re-packaged from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.scratch_repo import PantsRun, run_command  # noqa: E402

_LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d) \[INFO\] (Starting|Completed): (.*)$", re.M)


class EditBenchFailure(Exception):
    """A `./pants` call failed, or an edit trained other than exactly one model."""


def phases(run: PantsRun) -> dict[str, float]:
    """Seconds from the first to the last log line of each step Pants reported as running."""
    times: dict[str, list[float]] = {}
    for clock, _, what in _LOG_LINE.findall(run.output):
        t = datetime.strptime(clock, "%H:%M:%S.%f")
        step = what.split(" ")[0]
        times.setdefault(step, []).append(
            t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
        )
    return {step: max(ts) - min(ts) for step, ts in times.items()}


def pants_package(target: str) -> PantsRun:
    return run_command(["./pants", "package", target], cwd=REPO, env={}, timeout=3600)


def measure(model_dir: str, runs: int, log=print) -> list[dict]:
    config_path = REPO / model_dir / "config.json"
    original = config_path.read_text()
    config = json.loads(original)
    target = f"{model_dir}::"
    rows = []
    try:
        warm = pants_package(target)
        if warm.returncode != 0:
            raise EditBenchFailure(f"warm-up ./pants package {target} failed:\n{warm.output}")
        for i in range(runs):
            nudge = 1 + random.randrange(1, 10**6) * 1e-12
            edited = {**config, "learning_rate": config["learning_rate"] * nudge}
            config_path.write_text(json.dumps(edited, indent=2) + "\n")
            load = os.getloadavg()[0]
            run = pants_package(target)
            if run.returncode != 0 or len(run.trained) != 1:
                raise EditBenchFailure(
                    f"run {i + 1}: expected 1 training and success, got {run.trained}, "
                    f"exit {run.returncode}:\n{run.output}"
                )
            row = {"run": i + 1, "seconds": run.seconds, "load1": load, **phases(run)}
            rows.append(row)
            log(json.dumps(row))
    finally:
        config_path.write_text(original)
        pants_package(target)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="e.g. models/digits_cnn_torch")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    os.chdir(REPO)
    rows = measure(args.model_dir.rstrip("/"), args.runs)
    seconds = sorted(row["seconds"] for row in rows)
    print(
        f"{args.model_dir} config edit, pantsd warm: "
        + ", ".join(f"{s:.2f}" for s in seconds)
        + f" s (median {seconds[len(seconds) // 2]:.2f} s; load "
        + ", ".join(f"{row['load1']:.1f}" for row in rows)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
