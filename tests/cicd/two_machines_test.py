"""Two machines share one team cache: real ./pants, a real authenticated BuildGrid of the test's own.

Machine A is CI (pants.ci.toml, writes); machine B a developer (reads only) whose computer
differs from A's the way two people's do (tests/e2e/machines.py): its own HOME,
XDG_CACHE_HOME, checkout path at another depth, its own copy of the interpreters under its own
PYENV_ROOT, another PATH order and LANG, and its own toolchain (Pants installed anew). On the
cache A filled, B must run none of the steps A cached (trainings, images, pytest runs, PEX
builds), and write a byte-identical dist/. Then B edits one model: exactly that model trains,
and explain-miss names the edited file as the only difference of that step. A machine that
cannot use the toolchain convention still builds and is told so once, also with the cache down.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from infra.cache.explain_miss import REMOTE_CACHEABLE, Log, diff
from tests.e2e.machines import Machine, namespace_prefix
from tests.e2e.scratch_repo import PantsRun, ScratchRepo
from tests.support.remote_cache import running_cache

MODELS = ("tiny_a", "tiny_b")
EXPLAIN_MISS = Path("infra/cache/explain_miss.py").resolve()
_COUNTER = re.compile(r"^\s*(remote_cache_\w+|local_\w+): (\d+)$", re.MULTILINE)
_ASSEMBLED = re.compile(r"Completed: Assembling the image (\S+)")

SAMPLE_TEST = """\
def test_addition():
    assert sum([1, 2, 3]) == 6
"""


def counters(run: PantsRun) -> dict[str, int]:
    return {name: int(value) for name, value in _COUNTER.findall(run.output)}


def dist_digests(root: Path) -> dict[str, str]:
    """sha256 of every file `package ::` wrote (not CI's JUnit reports in dist/test/)."""
    dist = root / "dist"
    return {
        path.relative_to(dist).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(dist.rglob("*"))
        if path.is_file() and not path.relative_to(dist).as_posix().startswith("test/")
    }


def record(machine: Machine, log: Path, *pants_args: str) -> PantsRun:
    """Real ./pants on `machine`, through explain-miss (execution log with input files)."""
    return machine.run(
        [sys.executable, str(EXPLAIN_MISS), "record", "--out", str(log), "--", "--no-pantsd"]
        + ["--stats-log", *pants_args]
    )


def figures(label: str, run: PantsRun) -> str:
    c = counters(run)
    return (
        f"{label}: {run.seconds:.0f} s, trained {run.trained}, images assembled "
        f"{len(_ASSEMBLED.findall(run.output))}, remote hits "
        f"{c.get('remote_cache_requests_cached', 0)}/{c.get('remote_cache_requests', 0)}, "
        f"writes {c.get('remote_cache_write_successes', 0)}, "
        f"processes run here {c.get('local_execution_requests', 0)}"
    )


@pytest.fixture(scope="module")
def namespaces() -> None:
    try:
        namespace_prefix()
    except RuntimeError as e:
        if os.environ.get("REMOTE_CACHE_REQUIRED") == "1":
            pytest.fail(f"REMOTE_CACHE_REQUIRED=1 but {e}")
        pytest.skip(str(e))


def test_a_second_machine_runs_nothing_the_first_one_cached(
    tmp_path: Path, namespaces: None
) -> None:
    repo_a = ScratchRepo(tmp_path / "A" / "repo")
    for name in MODELS:
        repo_a.add_tiny_model(name, uses_shared=True)
        repo_a.add_image(name)
    repo_a.write("checks/BUILD", "python_tests(name='tests')\n")
    repo_a.write("checks/sample_test.py", SAMPLE_TEST)
    repo_b = repo_a.clone(tmp_path / "B" / "x" / "y" / "checkout")

    # A uses this machine's own toolchain and interpreters; B gets its own of everything.
    a = Machine("A", tmp_path / "A", repo_a.root, depth=0, own_interpreters=False, isolated=False)
    b = Machine("B", tmp_path / "B", repo_b.root, depth=3, reverse_path=True, lang="de_DE.UTF-8")
    logs = tmp_path / "logs"
    logs.mkdir()

    with running_cache(tmp_path / "cache") as cache:
        run_a = record(
            a,
            logs / "A.jsonl",
            "--pants-config-files=pants.ci.toml",
            *cache.pants_options("ci"),
            "package",
            "test",
            "::",
        )
        print(figures("A (CI, cold)", run_a))
        assert run_a.returncode == 0, run_a.output
        assert run_a.trained == [f"models/{name}:{name}" for name in MODELS]
        assert counters(run_a).get("remote_cache_write_errors", 0) == 0, run_a.output

        run_b = record(
            b, logs / "B.jsonl", *cache.pants_options("developer"), "package", "test", "::"
        )
        print(figures("B (developer, warm team cache)", run_b))
        assert run_b.returncode == 0, run_b.output
        assert run_b.trained == [], run_b.output
        assert _ASSEMBLED.findall(run_b.output) == [], run_b.output

        # The property itself: every step Pants caches remotely has, on B, a key that A wrote.
        a_log, b_log = Log.read(logs / "A.jsonl"), Log.read(logs / "B.jsonl")
        explanation = diff(a_log, b_log)
        a_keys = {p["key"] for p in a_log.processes}
        cacheable = [p for p in b_log.processes if p["cache_scope"] in REMOTE_CACHEABLE]
        assert [p["description"] for p in cacheable if p["key"] not in a_keys] == [], explanation
        # So B ran nothing for lack of a hit. Pants 2.17 starts a step locally while it asks the
        # cache (speculation); a short step may finish first under load: only such races may run
        # again, and never a training, an image or a test.
        ran_again = [p["description"] for p in cacheable if p["source"] == "Ran"]
        lost_races = counters(run_b).get("remote_cache_speculation_local_completed_first", 0)
        assert len(ran_again) <= lost_races, explanation
        assert not [d for d in ran_again if d.startswith(("Train", "Assembling", "Run Pytest"))]
        assert any(
            p["source"] == "HitRemotely" and p["description"].startswith("Run Pytest")
            for p in b_log.processes
        ), explanation
        assert b.toolchain_installed(), "B must run its own Pants install, not A's"

        # Byte-identical artifacts: models (model.json's inputs_digest included), image tars and
        # digests, manifests, the server PEX.
        assert dist_digests(repo_b.root) == dist_digests(repo_a.root)
        model_json = json.loads(repo_b.read("dist/models/tiny_a/model.json"))
        assert re.fullmatch(r"[0-9a-f]{64}", model_json["inputs_digest"])

        # B edits one model's config: exactly that model trains, and explain-miss says why.
        config = json.loads(repo_b.read("models/tiny_a/config.json"))
        repo_b.write("models/tiny_a/config.json", json.dumps({**config, "epochs": 3}))
        run_edit = record(
            b, logs / "B-edit.jsonl", *cache.pants_options("developer"), "package", "::"
        )
        print(figures("B after editing tiny_a's config", run_edit))
        assert run_edit.returncode == 0, run_edit.output
        assert run_edit.trained == ["models/tiny_a:tiny_a"], run_edit.output
        report = diff(
            Log.read(logs / "A.jsonl"), Log.read(logs / "B-edit.jsonl"), step="Train models/tiny_a"
        )
        print(report)
        step_lines = report.splitlines()
        start = step_lines.index("Train models/tiny_a:tiny_a [Ran]")
        differences = [line.strip() for line in step_lines[start + 1 :] if line.startswith("  ")]
        assert len(differences) == 1, report
        assert differences[0].startswith("input file models/tiny_a/config.json: theirs "), report
        assert (
            dist_digests(repo_b.root)["models/tiny_b/model.json"]
            == dist_digests(repo_a.root)["models/tiny_b/model.json"]
        )
        # inputs_digest follows the model's inputs: the edited model's changed, the other's not.
        edited = json.loads(repo_b.read("dist/models/tiny_a/model.json"))
        assert edited["inputs_digest"] != model_json["inputs_digest"]


def test_a_machine_off_the_convention_builds_and_is_told_once(
    tmp_path: Path, namespaces: None
) -> None:
    repo = ScratchRepo(tmp_path / "C" / "repo")
    # Its toolchain root belongs to another user: ./pants must not use it.
    c = Machine("C", tmp_path / "C", repo.root, depth=1, toolchain_owner=65534)
    # And the team cache is down (nothing listens on its port): the build passes, one warning.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    first = c.pants(
        "--remote-cache-read",
        f"--remote-store-address=grpc://127.0.0.1:{dead_port}",
        "--remote-cache-warnings=first_only",
        "lint",
        "models/common/config.py",
    )
    assert first.returncode == 0, first.output
    assert first.output.count("Failed to read from remote cache") == 1, first.output
    notices = [
        line for line in first.output.splitlines() if "will not share the team's cache" in line
    ]
    assert len(notices) == 1, first.output
    assert "belongs to another user" in notices[0]
    assert str(tmp_path / "C" / "xdg-cache" / "ml-monorepo" / "toolchain") in notices[0]
    second = c.pants("--version")
    assert second.returncode == 0, second.output
    assert "will not share the team's cache" not in second.output
