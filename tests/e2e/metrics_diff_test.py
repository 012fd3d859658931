"""infra/ci/metrics-diff and `pants models`, end to end: a scratch git repository with two tiny
models and real Pants runs.

Editing one model's config gives a diff naming exactly that model, with the numbers of the two
commits' model.json files; a deliberate regression is flagged; the listing tells which artifact
in dist/ is stale, without training anything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.ci.git_testing import git
from tests.e2e.scratch_repo import ScratchRepo

A, B = "models/tiny_a:tiny_a", "models/tiny_b:tiny_b"
METRICS_DIFF_FILES = (
    "infra/ci/metrics-diff",
    "infra/ci/metrics_diff.py",
    "infra/ci/metrics_chart.py",
)
CI_BUILD = 'python_sources()\n\npex_binary(name="metrics_chart", entry_point="metrics_chart.py")\n'


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def metrics_diff(repo: ScratchRepo, *revs: str) -> tuple[str, dict]:
    proc = subprocess.run(
        ["infra/ci/metrics-diff", *revs],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = repo.root / "dist/metrics-diff"
    assert (out / "metrics-diff.md").read_text() == proc.stdout.rstrip("\n") + "\n"
    return proc.stdout, json.loads((out / "metrics-diff.json").read_text())


def model_json(repo: ScratchRepo, name: str) -> dict:
    return json.loads(repo.read(f"dist/models/{name}/model.json"))


def edit_config(repo: ScratchRepo, name: str, **changes) -> None:
    config = json.loads(repo.read(f"models/{name}/config.json"))
    repo.write(f"models/{name}/config.json", json.dumps({**config, **changes}))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = ScratchRepo(tmp_path_factory.mktemp("repo"))
    repo.add_tiny_model("tiny_a", uses_shared=False)
    # A gate low enough that the regression below still packages.
    repo.add_tiny_model("tiny_b", uses_shared=False, threshold=0.05)
    for relpath in METRICS_DIFF_FILES:
        repo.write(relpath, (repo.source / relpath).read_text())
    (repo.root / "infra/ci/metrics-diff").chmod(0o755)
    repo.write("infra/__init__.py", "")
    repo.write("infra/ci/__init__.py", "")
    repo.write("infra/ci/BUILD", CI_BUILD)
    repo.write(".gitignore", "/.pants.d/\n/dist/\n/.pids/\n")
    git(repo.root, "init", "-q", "-b", "main")
    yield repo
    repo.stop_pantsd()


def test_metrics_diff_and_listing(repo: ScratchRepo) -> None:
    base = commit_all(repo.root, "two models")
    run = repo.pants("package", "::")
    assert run.returncode == 0, run.output
    before = {name: model_json(repo, name) for name in ("tiny_a", "tiny_b")}
    # the report is part of the package
    assert (repo.root / "dist/models/tiny_a/report.html").is_file()

    # The listing trains nothing and finds both artifacts current.
    listing = repo.pants("models", "--as-json", "::")
    assert listing.returncode == 0, listing.output
    rows = {r["address"]: r for r in map(json.loads, listing.output.splitlines()) if r}
    assert {a: r["artifact"] for a, r in rows.items()} == {A: "up to date", B: "up to date"}
    assert rows[A]["version"] == before["tiny_a"]["version"]

    # One model's config: the diff names exactly that model, with both model.json's numbers.
    edit_config(repo, "tiny_a", epochs=3)
    stale = repo.pants("models", "--as-json", "::")
    assert stale.trained == [], stale.output
    rows = {r["address"]: r for r in map(json.loads, stale.output.splitlines()) if r}
    assert rows[A]["artifact"].startswith("stale") and rows[B]["artifact"] == "up to date"
    commit_all(repo.root, "tiny_a: 3 epochs")

    markdown, diff = metrics_diff(repo, base)
    after = model_json(repo, "tiny_a")  # the working tree's package, built by metrics-diff
    assert [c["address"] for c in diff["changed"]] == [A]
    assert diff["unchanged"] == [B] and diff["added"] == diff["removed"] == []
    for metric, numbers in diff["changed"][0]["metrics"].items():
        assert numbers["base"] == before["tiny_a"]["metrics"][metric]
        assert numbers["head"] == after["metrics"][metric]
        assert numbers["threshold"] == after["thresholds"].get(metric)
    assert f"{before['tiny_a']['metrics']['accuracy']:.4f}" in markdown
    assert f"{after['metrics']['accuracy']:.4f}" in markdown
    # Nothing retrains to compare: the base, built in a worktree at another path, gets every
    # artifact from the cache (keys do not depend on the checkout); the head's new config trains.
    assert diff["base"]["trained"] == [], markdown
    assert (
        f"{diff['base']['label']}: every artifact came from the cache (nothing trained)."
        in markdown
    )
    assert diff["head"]["trained"] == [A]
    assert "Computed at head (working tree) because the cache lacked it: trained `" + A in markdown
    chart = (repo.root / "dist/metrics-diff/metrics-diff.png").read_bytes()
    assert chart.startswith(b"\x89PNG") and "![metrics before and after]" in markdown

    # A deliberate regression (one epoch at a tiny learning rate) against the previous commit.
    previous = git(repo.root, "rev-parse", "HEAD")
    edit_config(repo, "tiny_b", epochs=1, learning_rate=0.0001)
    commit_all(repo.root, "tiny_b: undertrained")
    markdown, diff = metrics_diff(repo, previous)
    [change] = diff["changed"]
    assert change["address"] == B and diff["unchanged"] == [A]
    assert change["regressed"] and change["metrics"]["accuracy"]["regression"]
    assert change["metrics"]["accuracy"]["base"] == before["tiny_b"]["metrics"]["accuracy"]
    assert (
        change["metrics"]["accuracy"]["head"] == model_json(repo, "tiny_b")["metrics"]["accuracy"]
    )
    assert "**1 model(s) regressed**" in markdown and "**regression**" in markdown
    assert diff["head"]["trained"] == [B]
