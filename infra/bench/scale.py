"""How the cost of a change grows with the number of models: real `./pants` on scratch monorepos.

For each N, builds a scratch copy of this repo's build set-up (tests/e2e/scratch_repo.py) with N
tiny torch models on the digits data, half importing `models.shared.left`, half
`models.shared.right`, and times these cases of `./pants package ::`:

  cold         everything trains
  noop_warm    nothing changed, pantsd warm
  noop_cold    nothing changed, new Pants session (`--no-pantsd`)
  config       one model's config.json edited
  shared       one shared module edited (its half retrains)
  naive        every model retrained (a fresh nonce in every train.py): what a pipeline without
               a build graph does on every push
  baseline     `./pants --no-pantsd list ::`: Pants start-up plus target graph, no plugin rules

Run from the repo root (see infra/bench/README.md):

    python3 infra/bench/scale.py --n 10 50 100

Writes `<out>/scale.csv` and, through `./pants run infra/bench/plot.py`, `<out>/scale.png`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.scratch_repo import ScratchRepo  # noqa: E402

CASES = ("cold", "noop_warm", "noop_cold", "config", "shared", "naive", "baseline")
HALVES = ("left", "right")


class BenchFailure(Exception):
    """A `./pants` call failed, or trained a different number of models than the case implies."""


@dataclass
class Row:
    n: int
    seconds: dict[str, float] = field(default_factory=dict)
    trained: dict[str, int] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    # CPU seconds of pantsd and every process it ran (with pantsd only): far less sensitive to
    # the other builds on the machine than wall time.
    cpu: dict[str, float] = field(default_factory=dict)
    failed: str = ""  # the first line of the failure that ended this N's cases early

    @property
    def ratio(self) -> float | None:
        if "config" in self.seconds and "naive" in self.seconds:
            return self.seconds["config"] / self.seconds["naive"]
        return None

    def csv_fields(self) -> dict[str, object]:
        out: dict[str, object] = {"n": self.n}
        for case in CASES:
            out[f"{case}_s"] = _fmt(self.seconds.get(case))
            out[f"{case}_trained"] = self.trained.get(case, "")
            out[f"{case}_load1"] = _fmt(self.load.get(case))
            out[f"{case}_cpu_s"] = _fmt(self.cpu.get(case))
        out["config_over_naive"] = _fmt(self.ratio, 4)
        out["failed"] = self.failed
        return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def pantsd_cpu_seconds(root: Path) -> float:
    """User + system CPU seconds of the repo's pantsd and of the processes it ran and reaped
    (/proc/PID/stat utime, stime, cutime, cstime); 0 when no pantsd runs."""
    total = 0.0
    for pid_file in root.glob(".pids/*/pantsd/pid"):
        try:
            stat = Path(f"/proc/{int(pid_file.read_text().strip())}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def model_name(i: int) -> str:
    return f"m{i:03d}"


def half_of(i: int) -> str:
    return HALVES[i % 2]


def build_repo(root: Path, n: int) -> ScratchRepo:
    repo = ScratchRepo(root, source=REPO)
    for half in HALVES:
        repo.add_shared_module(half)
    for i in range(n):
        repo.add_tiny_model(model_name(i), uses_shared=True, shared_module=half_of(i))
    return repo


def measure(repo: ScratchRepo, n: int, cases: tuple[str, ...], log, reused: bool = False) -> Row:
    """Runs the requested cases in order on a scratch repo of `n` models.

    A `reused` repo was fully trained by an earlier run: its "cold" case trains nothing and is
    only a warm-up (e.g. to re-measure the other cases after a plugin change).
    """
    row = Row(n)
    try:
        _measure_into(row, repo, n, cases, log, reused)
    except BenchFailure as e:
        log(str(e))
        row.failed = str(e).splitlines()[0]
    return row


def _measure_into(
    row: Row, repo: ScratchRepo, n: int, cases: tuple[str, ...], log, reused: bool
) -> None:
    half = sum(1 for i in range(n) if half_of(i) == "left")
    expected = {"cold": 0 if reused else n, "noop_warm": 0, "noop_cold": 0, "config": 1}
    expected.update({"shared": half, "naive": n})

    def timed(case: str, *args: str, pantsd: bool = True) -> None:
        row.load[case] = os.getloadavg()[0]
        cpu_before = pantsd_cpu_seconds(repo.root)
        run = repo.pants(*args, pantsd=pantsd, timeout=7200)
        if run.returncode != 0:
            raise BenchFailure(f"N={n} {case}: ./pants {' '.join(args)} failed:\n{run.output}")
        row.seconds[case] = run.seconds
        if pantsd:
            row.cpu[case] = pantsd_cpu_seconds(repo.root) - cpu_before
        if case in expected:
            row.trained[case] = len(run.trained)
            if len(run.trained) != expected[case]:
                raise BenchFailure(
                    f"N={n} {case}: expected {expected[case]} trainings, got {run.trained}"
                )
        cpu = f", {row.cpu[case]:.1f} CPU s" if case in row.cpu else ""
        log(
            f"N={n} {case}: {run.seconds:.2f} s{cpu}, trained {row.trained.get(case, '-')}, "
            f"load {row.load[case]:.2f}"
        )

    # Every model must be trained before the incremental cases mean anything.
    timed("cold", "package", "::")
    if reused:
        del row.seconds["cold"], row.trained["cold"], row.load["cold"], row.cpu["cold"]
    if "noop_warm" in cases:
        timed("noop_warm", "package", "::")
    if "noop_cold" in cases or "baseline" in cases:
        repo.stop_pantsd()
        if "baseline" in cases:
            timed("baseline", "list", "::", pantsd=False)
        if "noop_cold" in cases:
            timed("noop_cold", "package", "::", pantsd=False)
        # The incremental cases below are measured with pantsd warm, as on a developer's machine.
        warm = repo.pants("package", "::")
        if warm.returncode != 0 or warm.trained:
            raise BenchFailure(f"N={n}: warming pantsd failed or trained:\n{warm.output}")
    if "config" in cases:
        path = f"models/{model_name(0)}/config.json"
        config = json.loads(repo.read(path))
        repo.write(path, json.dumps({**config, "epochs": config["epochs"] + 1}))
        timed("config", "package", "::")
    if "shared" in cases:
        path = f"models/shared/{half_of(0)}.py"
        repo.write(path, repo.read(path) + "# edited\n")
        timed("shared", "package", "::")
    if "naive" in cases:
        nonce = uuid.uuid4().hex
        for i in range(n):
            repo.add_tiny_model(
                model_name(i), uses_shared=True, shared_module=half_of(i), nonce=nonce
            )
        timed("naive", "package", "::")


def format_table(rows: list[Row]) -> str:
    header = ["N", *(f"{c} s (trained)" for c in CASES), "config/naive"]
    lines = [" | ".join(header)]
    for row in rows:
        cells = [str(row.n)]
        for case in CASES:
            if case not in row.seconds:
                cells.append("-")
            elif case in row.trained:
                cells.append(f"{row.seconds[case]:.2f} ({row.trained[case]})")
            else:
                cells.append(f"{row.seconds[case]:.2f}")
        cells.append("-" if row.ratio is None else f"{row.ratio:.2%}")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Row(0).csv_fields()))
        writer.writeheader()
        for row in rows:
            writer.writerow(row.csv_fields())


def reuse_repo(root: Path) -> ScratchRepo:
    """A kept scratch repo, with this repo's current plugin copied in (pantsd stopped first)."""
    repo = ScratchRepo.existing(root)
    repo.stop_pantsd()
    shutil.rmtree(root / "pants-plugins")
    shutil.copytree(
        REPO / "pants-plugins", root / "pants-plugins", ignore=shutil.ignore_patterns("__pycache__")
    )
    return repo


def run(
    ns: list[int],
    cases: tuple[str, ...],
    workdir: Path,
    out: Path | None,
    keep: bool,
    reuse: bool = False,
    log=print,
) -> list[Row]:
    rows = []
    for n in ns:
        root = workdir / f"n{n}"
        reused = reuse and (root / "dist").is_dir()
        if reused:
            repo = reuse_repo(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
            repo = build_repo(root, n)
        try:
            rows.append(measure(repo, n, cases, log, reused))
        finally:
            repo.stop_pantsd()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
        log(format_table(rows))
        if out is not None:
            write_csv(rows, out / "scale.csv")  # after each N: a later failure keeps earlier rows
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--out", type=Path, default=REPO / "infra/bench/results")
    parser.add_argument("--workdir", type=Path, help="where scratch repos go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch repos")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="re-measure kept, trained scratch repos in --workdir with the current plugin (no cold case)",
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlbench-"))
    out = args.out.resolve()
    rows = run(
        args.n, tuple(args.cases), workdir.resolve(), out, args.keep or args.reuse, args.reuse
    )
    print(f"wrote {out / 'scale.csv'}")
    if not args.no_plot and rows:
        # matplotlib lives in the python-default resolve: plot through the repo's own Pants.
        os.chdir(REPO)
        code = os.spawnvp(
            os.P_WAIT,
            "./pants",
            [
                "./pants",
                "run",
                "infra/bench/plot.py",
                "--",
                str(out / "scale.csv"),
                str(out / "scale.png"),
            ],
        )
        if code != 0:
            return code
        print(f"wrote {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
