"""What will CI rebuild? The models that would retrain and the images that would rebuild.

    infra/ci/what-will-rebuild origin/main...HEAD     # what a merge request would rebuild
    infra/ci/what-will-rebuild HEAD~1                 # what the last commit on main rebuilt
    infra/ci/what-will-rebuild --json HEAD~3..HEAD

It asks Pants the same question CI does (`--changed-since=<base> --changed-dependents=transitive`)
but only lists targets (one `peek`, no build) and keeps those of the types `ml_model` and
`model_image`. `A...B` compares against the merge base of A and B (as a merge request does),
`A..B` and a bare `A` against A. Pants compares against the working tree, so the end of the range
must be the checked-out HEAD; uncommitted changes count too (a note says so).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MODEL_TYPE = "ml_model"
IMAGE_TYPE = "model_image"


class RangeError(Exception):
    """The ref range cannot be answered from this checkout."""


@dataclass(frozen=True)
class Rebuild:
    base: str
    models: tuple[str, ...]
    images: tuple[str, ...]
    dirty: bool

    def to_json(self) -> str:
        return json.dumps(
            {"base": self.base, "models": self.models, "images": self.images, "dirty": self.dirty},
            indent=2,
        )

    def to_text(self) -> str:
        lines = [f"Compared against {self.base}."]
        if self.dirty:
            lines.append("Note: uncommitted changes in the working tree are included.")
        for title, addresses in (
            ("Models that would retrain", self.models),
            ("Images that would rebuild", self.images),
        ):
            lines.append(f"{title} ({len(addresses)}):")
            lines.extend(f"  {address}" for address in addresses)
        return "\n".join(lines)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def resolve_base(repo: Path, ref_range: str) -> str:
    """The commit to pass to `--changed-since` for `A`, `A..B` or `A...B` (B must be HEAD)."""
    if "..." in ref_range:
        start, _, end = ref_range.partition("...")
        symmetric = True
    elif ".." in ref_range:
        start, _, end = ref_range.partition("..")
        symmetric = False
    else:
        start, end, symmetric = ref_range, "HEAD", False
    try:
        head = _git(repo, "rev-parse", "--verify", "HEAD^{commit}")
        end_commit = _git(repo, "rev-parse", "--verify", f"{end or 'HEAD'}^{{commit}}")
        start_commit = _git(repo, "rev-parse", "--verify", f"{start or 'HEAD'}^{{commit}}")
    except subprocess.CalledProcessError as e:
        raise RangeError(f"unknown revision in {ref_range!r}: {e.stderr.strip()}") from e
    if end_commit != head:
        raise RangeError(
            f"the range must end at the checked-out HEAD ({head[:12]}), but {end!r} is "
            f"{end_commit[:12]}; check it out first (Pants compares against the working tree)"
        )
    return _git(repo, "merge-base", start_commit, head) if symmetric else start_commit


def select(peeked: Sequence[dict]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (models, images) among the targets Pants's `peek` printed, sorted by address."""

    def of_type(target_type: str) -> tuple[str, ...]:
        return tuple(sorted(t["address"] for t in peeked if t.get("target_type") == target_type))

    return of_type(MODEL_TYPE), of_type(IMAGE_TYPE)


def what_will_rebuild(
    repo: Path, ref_range: str, pants: Sequence[str], pants_args: Sequence[str] = ()
) -> Rebuild:
    base = resolve_base(repo, ref_range)
    # `peek` rather than `list --filter-target-type=...`: one Pants run answers both types, and it
    # does not fail while one of them (model_image) is not registered yet.
    result = subprocess.run(
        [
            *pants,
            *pants_args,
            f"--changed-since={base}",
            "--changed-dependents=transitive",
            "peek",
            "--exclude-defaults",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Pants failed ({result.returncode}):\n{result.stderr[-4000:]}")
    peeked = json.loads(result.stdout) if result.stdout.strip() else []
    models, images = select(peeked)
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    return Rebuild(base=base, models=models, images=images, dirty=dirty)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("range", help="BASE, BASE..HEAD or BASE...HEAD")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--repo", type=Path, default=None, help="the repository (default: the one we are in)"
    )
    parser.add_argument(
        "--pants-config-files",
        action="append",
        default=[],
        help="extra Pants config file, e.g. pants.ci.toml (repeatable)",
    )
    args = parser.parse_args(argv)
    repo = args.repo or Path(_git(Path.cwd(), "rev-parse", "--show-toplevel"))
    pants_args = [f"--pants-config-files={f}" for f in args.pants_config_files]
    try:
        rebuild = what_will_rebuild(repo, args.range, [str(repo / "pants")], pants_args)
    except RangeError as e:
        print(f"what-will-rebuild: {e}", file=sys.stderr)
        return 2
    print(rebuild.to_json() if args.json else rebuild.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
