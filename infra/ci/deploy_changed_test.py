"""infra/ci/deploy-changed, the pipelines' deploy job, in a scratch repository with a fake `./pants`
(answering `peek` and writing the manifest on `package`) and a fake kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.ci import what_will_rebuild
from infra.deploy import deploy, fake_kubectl, manifest
from mlbuild import k8s_manifest

IMAGE = "registry.example.com/models/a@sha256:" + "2" * 64
FAKE_PANTS = """\
#!/usr/bin/env bash
echo "pants $*" >> "$FAKE_LOG"
case " $* " in
  *" peek "*) cat "$FAKE_PEEK" ;;
  *" package "*) mkdir -p dist/deploy && cp "$FAKE_MANIFEST" dist/deploy/a.yaml ;;
esac
"""
SCRIPTS = {
    "infra/ci/deploy-changed": None,
    "infra/ci/what-will-rebuild": None,
    "infra/ci/what_will_rebuild.py": what_will_rebuild.__file__,
    "infra/deploy/deploy": None,
    "infra/deploy/deploy.py": deploy.__file__,
    "infra/deploy/manifest.py": manifest.__file__,
    "pants-plugins/mlbuild/k8s_manifest.py": k8s_manifest.__file__,
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


def run(repo: Path, tmp_path: Path, peeked: str, **extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "peek.json").write_text(peeked)
    (tmp_path / "a.yaml").write_text(manifest.to_yaml(manifest.manifests("a", IMAGE, 8081)))
    env = fake_kubectl.fake_env(tmp_path, current_image="")
    env.update(FAKE_PEEK=str(tmp_path / "peek.json"), FAKE_MANIFEST=str(tmp_path / "a.yaml"))
    env.update({"DEPLOY_SMOKE_CMD": "true", **extra})
    return subprocess.run(
        ["infra/ci/deploy-changed", "--pants-config-files=pants.ci.toml", "--since=HEAD"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )


def test_deploys_the_changed_images(repo: Path, tmp_path: Path) -> None:
    peeked = '[{"address": "models/a:image", "target_type": "model_image"}, {"address": "models/a:model", "target_type": "ml_model"}]'
    result = run(repo, tmp_path, peeked)
    assert result.returncode == 0, result.stderr
    log = fake_kubectl.calls({"FAKE_LOG": str(tmp_path / "kubectl.log")})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert log[:2] == [
        f"pants --pants-config-files=pants.ci.toml --changed-since={head.stdout.strip()} "
        "--changed-dependents=transitive peek --exclude-defaults",
        "pants --pants-config-files=pants.ci.toml package models/a:image",
    ]
    assert "kubectl --namespace default apply --filename dist/deploy/a.yaml" in log
    assert (repo / "dist/deploy/a.record.json").exists()


def test_nothing_to_deploy_when_no_image_changed(repo: Path, tmp_path: Path) -> None:
    result = run(repo, tmp_path, '[{"address": "models/a:model", "target_type": "ml_model"}]')
    assert result.returncode == 0, result.stderr
    assert "No model image changed" in result.stdout
    assert not any(
        " package " in c for c in fake_kubectl.calls({"FAKE_LOG": str(tmp_path / "kubectl.log")})
    )


def test_needs_a_smoke_command(repo: Path, tmp_path: Path) -> None:
    result = run(repo, tmp_path, "[]", DEPLOY_SMOKE_CMD="")
    assert result.returncode != 0
    assert "set DEPLOY_SMOKE_CMD" in result.stderr
