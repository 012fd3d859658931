"""`./pants package ::` retrains exactly the models whose inputs changed (real Pants, scratch repo)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.scratch_repo import ScratchRepo

A, B, C = "models/tiny_a:tiny_a", "models/tiny_b:tiny_b", "models/tiny_c:tiny_c"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = ScratchRepo(tmp_path_factory.mktemp("repo"))
    repo.add_tiny_model("tiny_a", uses_shared=True)
    repo.add_tiny_model("tiny_b", uses_shared=True)
    repo.add_tiny_model("tiny_c", uses_shared=False)
    repo.write("README.md", "scratch\n")
    repo.write("serving/__init__.py", "")
    repo.write("serving/server.py", "PORT = 8001\n")
    repo.write("serving/BUILD", "python_sources()\n")
    yield repo
    repo.stop_pantsd()


def _package(repo: ScratchRepo, *, pantsd: bool = True):
    run = repo.pants("package", "::", pantsd=pantsd)
    assert run.returncode == 0, run.output
    return run.trained


def test_incremental_training(repo: ScratchRepo) -> None:
    # Cold: every model trains once, and each leaves its artifact.
    assert _package(repo) == [A, B, C]
    for name in ("tiny_a", "tiny_b", "tiny_c"):
        description = json.loads(repo.read(f"dist/models/{name}/model.json"))
        assert description["name"] == name and description["metrics"]["accuracy"] >= 0.5

    # No change: nothing trains, with pantsd warm and in a new Pants session.
    assert _package(repo) == []
    repo.stop_pantsd()
    assert _package(repo, pantsd=False) == []

    # One model's config: exactly that model.
    config = json.loads(repo.read("models/tiny_a/config.json"))
    repo.write("models/tiny_a/config.json", json.dumps({**config, "epochs": 3}))
    assert _package(repo) == [A]

    # The shared module: exactly the models that import it.
    repo.write("models/shared/extra.py", repo.read("models/shared/extra.py") + "# edited\n")
    assert _package(repo) == [A, B]

    # Docs and serving code are no input of any model.
    repo.write("README.md", "scratch, edited\n")
    repo.write("serving/server.py", "PORT = 9001\n")
    assert _package(repo) == []


def test_gate_failure_fails_writes_nothing_and_is_not_cached(repo: ScratchRepo) -> None:
    shutil.rmtree(repo.root / "dist", ignore_errors=True)
    build = repo.read("models/tiny_c/BUILD")
    repo.write("models/tiny_c/BUILD", build.replace('"accuracy": 0.5', '"accuracy": 0.999'))
    failed = repo.pants("package", "models/tiny_c")
    assert failed.returncode != 0
    assert "Model models/tiny_c:tiny_c failed its evaluation gate" in failed.output
    assert "is below the threshold 0.999" in failed.output
    assert not (repo.root / "dist/models/tiny_c").exists()
    # Again: still a failure (never reported as success), and the model is not retrained.
    again = repo.pants("package", "models/tiny_c")
    assert again.returncode != 0 and again.trained == []
    # Fixing the threshold passes without retraining: the gate re-checks the cached metrics.
    repo.write("models/tiny_c/BUILD", build)
    assert _package(repo) == []
    assert (repo.root / "dist/models/tiny_c/model.onnx").is_file()


def test_dataset_digest_mismatch_shows_both_digests(repo: ScratchRepo) -> None:
    build = repo.read("models/datasets/BUILD")
    declared = "aa0266383e99f4be23c4d287fdf1932181874f48822e18c35fc52675ae0ac154"
    wrong = "0" * 64
    repo.write("models/datasets/BUILD", build.replace(declared, wrong))
    try:
        run = repo.pants("package", "models/tiny_c")
    finally:
        repo.write("models/datasets/BUILD", build)
    assert run.returncode != 0
    assert f"declared {wrong}, actual {declared}" in run.output
    assert run.trained == []


def test_bad_build_field_names_target_field_and_allowed_values(repo: ScratchRepo) -> None:
    build = repo.read("models/tiny_c/BUILD")
    repo.write("models/tiny_c/BUILD", build.replace('framework="torch"', 'framework="jax"'))
    try:
        run = repo.pants("package", "models/tiny_c")
    finally:
        repo.write("models/tiny_c/BUILD", build)
    assert run.returncode != 0
    assert "'framework' field in target models/tiny_c:tiny_c must be one of" in run.output
    assert "['tensorflow', 'torch'], but 'jax' was provided" in run.output
