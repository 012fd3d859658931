"""infra/ci/deploy-changed, the pipelines' deploy job, in a scratch repository with a fake `./pants`
(answering `peek` and writing the manifest on `package publish`), a fake kubectl, and a real
registry of the test's own holding the image and its signed provenance (or not)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.ci import what_will_rebuild
from infra.ci.git_testing import git
from infra.deploy import deploy, fake_kubectl, manifest, verify
from infra.registry import testing
from mlbuild import k8s_manifest
from mlbuild.oci import dsse, referrers, registry_client

FAKE_PANTS = """\
#!/usr/bin/env bash
echo "pants $*" >> "$FAKE_LOG"
case " $* " in
  *" peek "*) cat "$FAKE_PEEK" ;;
  *" package publish "*) mkdir -p dist/deploy && cp "$FAKE_MANIFEST" dist/deploy/a.yaml ;;
esac
"""
SCRIPTS = {
    "infra/ci/deploy-changed": None,
    "infra/ci/what-will-rebuild": None,
    "infra/ci/what_will_rebuild.py": what_will_rebuild.__file__,
    "infra/deploy/deploy": None,
    "infra/deploy/deploy.py": deploy.__file__,
    "infra/deploy/verify.py": verify.__file__,
    "infra/deploy/manifest.py": manifest.__file__,
    "pants-plugins/mlbuild/k8s_manifest.py": k8s_manifest.__file__,
    **{
        f"pants-plugins/mlbuild/oci/{Path(m.__file__).name}": m.__file__
        for m in (dsse, referrers, registry_client)
    },
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    for path, source in SCRIPTS.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source or path, repo / path)
    (repo / "pants").write_text(FAKE_PANTS)
    (repo / "pants").chmod(0o755)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=repo, check=True
        )
    return repo


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with testing.running_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    return testing.make_key(tmp_path, "ci")


def published(registry, repo: Path, tmp_path: Path, key: Path, signed: bool = True) -> str:
    """A tiny image in the registry, with (signed) or without provenance of repo's HEAD."""
    image = testing.push_tiny_image(registry, tmp_path, "models/a", str(tmp_path).encode())
    if signed:
        statement = testing.provenance(image.split("@")[1], git(repo, "rev-parse", "HEAD"))
        envelope = dsse.sign(json.dumps(statement).encode(), str(key))
        testing.attach_envelope(registry, image, envelope)
    return image


def run(
    repo: Path, tmp_path: Path, peeked: str, image: str, registry, public_key: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "peek.json").write_text(peeked)
    (tmp_path / "a.yaml").write_text(manifest.to_yaml(manifest.manifests("a", image, 8081)))
    env = fake_kubectl.fake_env(tmp_path, current_image="")
    env.update(FAKE_PEEK=str(tmp_path / "peek.json"), FAKE_MANIFEST=str(tmp_path / "a.yaml"))
    env.update(registry.env, DEPLOY_TRUSTED_KEY=str(public_key), DEPLOY_MAIN_REF="HEAD")
    env.update({"DEPLOY_SMOKE_CMD": "true", **extra})
    return subprocess.run(
        ["infra/ci/deploy-changed", "--pants-config-files=pants.ci.toml", "--since=HEAD"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )


IMAGE_CHANGED = '[{"address": "models/a:image", "target_type": "model_image"}, {"address": "models/a:model", "target_type": "ml_model"}]'


def test_publishes_verifies_and_deploys_the_changed_images(repo, tmp_path, registry, key) -> None:
    image = published(registry, repo, tmp_path, key[0])
    result = run(repo, tmp_path, IMAGE_CHANGED, image, registry, key[1])
    assert result.returncode == 0, result.stderr
    log = fake_kubectl.calls({"FAKE_LOG": str(tmp_path / "kubectl.log")})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert log[:2] == [
        f"pants --pants-config-files=pants.ci.toml --changed-since={head.stdout.strip()} "
        "--changed-dependents=transitive peek --exclude-defaults",
        "pants --pants-config-files=pants.ci.toml package publish models/a:image",
    ]
    assert "kubectl --namespace default apply --filename dist/deploy/a.yaml" in log
    assert (repo / "dist/deploy/a.record.json").exists()
    assert result.stdout.index("=== verify") < result.stdout.index(f"verified {image}")
    assert result.stdout.index(f"verified {image}") < result.stdout.index("=== deploy")


def test_deploys_nothing_when_an_image_does_not_verify(repo, tmp_path, registry, key) -> None:
    image = published(registry, repo, tmp_path, key[0], signed=False)
    result = run(repo, tmp_path, IMAGE_CHANGED, image, registry, key[1])
    assert result.returncode == 1
    assert "unsigned: no provenance is attached" in result.stderr
    assert "refusing to deploy anything: dist/deploy/a.yaml did not verify" in result.stderr
    log = fake_kubectl.calls({"FAKE_LOG": str(tmp_path / "kubectl.log")})
    assert not [call for call in log if call.startswith("kubectl")]


def test_nothing_to_deploy_when_no_image_changed(repo, tmp_path, registry, key) -> None:
    peeked = '[{"address": "models/a:model", "target_type": "ml_model"}]'
    result = run(repo, tmp_path, peeked, "r/a@sha256:" + "2" * 64, registry, key[1])
    assert result.returncode == 0, result.stderr
    assert "No model image changed" in result.stdout
    assert not any(
        " package " in c for c in fake_kubectl.calls({"FAKE_LOG": str(tmp_path / "kubectl.log")})
    )


def test_needs_a_smoke_command(repo, tmp_path, registry, key) -> None:
    result = run(
        repo, tmp_path, "[]", "r/a@sha256:" + "2" * 64, registry, key[1], DEPLOY_SMOKE_CMD=""
    )
    assert result.returncode != 0
    assert "set DEPLOY_SMOKE_CMD" in result.stderr
