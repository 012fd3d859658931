"""Real `./pants package publish` of a `model_image` in a scratch repo, to a registry of the test's
own: the image, SBOM and signed provenance reach the registry, deploy's verification accepts the
result, and a commit that changes nothing in the image rebuilds none of its cached steps (the
commit is added at publish time only) and pushes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infra.ci.git_testing import git
from infra.deploy import verify
from infra.registry import testing
from tests.e2e.scratch_repo import ScratchRepo

IMAGE = "models/tiny:image"
STEPS = ("Assembling the image models/tiny:image", "Writing the SBOM and provenance statement")


def completed_steps(output: str) -> list[str]:
    return [s for s in STEPS if re.search(rf"Completed: {re.escape(s)}", output)]


def test_publish_signs_attaches_and_outlives_a_commit(tmp_path: Path) -> None:
    key, public_key = testing.make_key(tmp_path, "ci")
    with testing.running_registry(tmp_path / "registry") as registry:
        repo = ScratchRepo(tmp_path / "repo")
        repo.add_tiny_model("tiny", uses_shared=False)
        repo.add_image("tiny")
        git(repo.root, "init", "-q", "-b", "main")
        git(repo.root, "add", "-A")
        git(repo.root, "commit", "-qm", "one")
        env = {
            **registry.env,
            "PANTS_OCI_REGISTRY": registry.host,
            "PROVENANCE_SIGNING_KEY": str(key),
            "CI_PIPELINE_ID": "77",
        }
        try:
            first = repo.pants("-ldebug", "package", "publish", IMAGE, env=env, pantsd=False)
            assert first.returncode == 0, first.output[-5000:]
            assert completed_steps(first.output) == list(STEPS)
            assert ": pushed as " in first.output and "SBOM attached" in first.output
            [deployment, _] = yaml.safe_load_all(repo.read("dist/deploy/tiny.yaml"))
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image.startswith(f"{registry.host}/ml/tiny@sha256:")
            verified = verify.verify(image, public_key, "main", repo.root, registry.env)
            assert verified.commit == git(repo.root, "rev-parse", "HEAD")

            repo.write("NOTES.md", "a commit that changes nothing in the image\n")
            git(repo.root, "add", "NOTES.md")
            git(repo.root, "commit", "-qm", "two")
            second = repo.pants("-ldebug", "package", "publish", IMAGE, env=env, pantsd=False)
            assert second.returncode == 0, second.output[-5000:]
            assert completed_steps(second.output) == []
            assert "already in the registry, nothing pushed" in second.output
        finally:
            repo.stop_pantsd()
