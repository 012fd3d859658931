"""infra/deploy/deploy against a fake kubectl on PATH that logs its calls and fails on request,
and a real registry (its own, on a free port) holding the images and their signed provenance:
deploy verifies each image before it runs anything, and refuses every image that fails."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.ci.git_testing import git
from infra.deploy import deploy, fake_kubectl
from infra.deploy.manifest import manifests, to_yaml
from infra.registry import testing
from mlbuild.oci import dsse

DEPLOY = Path(deploy.__file__).resolve()  # run as a script, as infra/deploy/deploy does
OLD = "registry.example.com/models/m@sha256:" + "0" * 64


@dataclass(frozen=True)
class World:
    """A registry, CI's key pair, another key, and a git repository: main (c1 - c2) and a side
    branch (c1 - s1) never merged."""

    registry: testing.TestRegistry
    key: Path
    public_key: Path
    other_key: Path
    repo: Path
    on_main: str
    not_on_main: str
    workdir: Path

    def image(self, content: bytes) -> str:
        return testing.push_tiny_image(self.registry, self.workdir, "ml/m", content)

    def sign(self, statement: dict, key: Path | None = None) -> dict:
        return dsse.sign(json.dumps(statement).encode(), str(key or self.key))

    def published(self, content: bytes, commit: str | None = None) -> str:
        """An image with a provenance signed by CI, as `pants publish` leaves it."""
        image = self.image(content)
        statement = testing.provenance(image.split("@")[1], commit or self.on_main)
        testing.attach_envelope(self.registry, image, self.sign(statement))
        return image


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("world")
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name in ("c1", "c2"):
        git(repo, "commit", "-q", "--allow-empty", "-m", name)
    git(repo, "checkout", "-q", "-b", "side", "HEAD~1")
    git(repo, "commit", "-q", "--allow-empty", "-m", "s1")
    not_on_main = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    key, public_key = testing.make_key(tmp, "ci")
    other_key, _ = testing.make_key(tmp, "other")
    with testing.running_registry(tmp / "registry") as registry:
        yield World(
            registry,
            key,
            public_key,
            other_key,
            repo,
            git(repo, "rev-parse", "HEAD"),
            not_on_main,
            tmp,
        )


@pytest.fixture(scope="module")
def new_image(world: World) -> str:
    return world.published(b"new")


@pytest.fixture
def env(tmp_path: Path, world: World, new_image: str) -> dict[str, str]:
    (tmp_path / "m.yaml").write_text(to_yaml(manifests("m", new_image, 8081, namespace="models")))
    return {**fake_kubectl.fake_env(tmp_path, OLD), **world.registry.env}


def verify_args(world: World) -> list[str]:
    return ["--key", str(world.public_key), "--main-ref", "main", "--repo", str(world.repo)]


def run_deploy(tmp_path: Path, env: dict[str, str], smoke_rc: int = 0, *extra: str, rc=(0, 1)):
    smoke = f'echo "smoke $DEPLOY_NAME $DEPLOY_NAMESPACE $DEPLOY_PORT $DEPLOY_IMAGE" >> "$FAKE_LOG"; exit {smoke_rc}'
    argv = [
        sys.executable,
        str(DEPLOY),
        "--manifest",
        str(tmp_path / "m.yaml"),
        "--smoke-cmd",
        smoke,
    ]
    argv += ["--record", str(tmp_path / "record.json"), "--timeout", "5s", *extra]
    result = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode in rc, result.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    return result, fake_kubectl.calls(env), record


K = "kubectl --namespace models"
GET = f'{K} get deployment/m --ignore-not-found --output jsonpath={{.spec.template.spec.containers[?(@.name=="model")].image}}'


def test_success_applies_waits_and_smoke_tests(tmp_path, env, world, new_image) -> None:
    result, calls, record = run_deploy(tmp_path, env, 0, *verify_args(world))
    assert result.returncode == 0, result.stderr
    assert calls == [
        GET,
        f"{K} apply --filename {tmp_path / 'm.yaml'}",
        f"{K} rollout status deployment/m --timeout=5s",
        f"smoke m models 8081 {new_image}",
    ]
    assert f"verified {new_image}: built from commit {world.on_main}" in result.stdout
    assert record["previous_image"] == OLD and record["image"] == new_image
    assert record["outcome"] == "deployed"


def test_failed_rollout_goes_back_to_the_recorded_digest(tmp_path, env, world) -> None:
    env["FAKE_FIRST_ROLLOUT_RC"] = "1"
    result, calls, record = run_deploy(tmp_path, env, 0, *verify_args(world))
    assert result.returncode == 1
    assert calls[3:] == [
        f"{K} set image deployment/m model={OLD}",
        f"{K} rollout status deployment/m --timeout=5s",
    ]
    assert not any(c.startswith("smoke") for c in calls)
    assert (record["outcome"], record["failure"]) == ("rolled back", "rollout did not complete")


def test_failed_smoke_test_rolls_back(tmp_path, env, world) -> None:
    result, calls, record = run_deploy(tmp_path, env, 3, *verify_args(world))
    assert result.returncode == 1
    assert calls[-2:] == [
        f"{K} set image deployment/m model={OLD}",
        f"{K} rollout status deployment/m --timeout=5s",
    ]
    assert (record["outcome"], record["failure"]) == ("rolled back", "smoke test failed")


def test_failed_first_deployment_removes_what_it_created(tmp_path, env, world) -> None:
    env["FAKE_CURRENT_IMAGE"] = ""
    result, calls, record = run_deploy(tmp_path, env, 1, *verify_args(world))
    assert result.returncode == 1
    assert calls[-1] == f"{K} delete --filename {tmp_path / 'm.yaml'} --ignore-not-found"
    assert record["previous_image"] is None


def test_dry_run_prints_every_command_and_runs_none(tmp_path, env, world) -> None:
    result, calls, record = run_deploy(tmp_path, env, 0, "--dry-run", *verify_args(world))
    assert result.returncode == 0, result.stderr
    assert calls == []
    printed = [line for line in result.stdout.splitlines() if line.startswith("would run")]
    assert [
        line.split()[5] if line.startswith("would run kubectl") else line.split()[2]
        for line in printed
    ] == [
        "get",
        "apply",
        "rollout",
        "sh",
        "set",
        "rollout",
    ]
    assert record["outcome"] == "dry run"


def test_generates_the_manifest_from_name_image_and_port(tmp_path, env, world, new_image) -> None:
    argv = [sys.executable, str(DEPLOY), "--name", "m", "--image", new_image, "--port", "8081"]
    argv += ["--namespace", "models", "--smoke-cmd", "true", "--dry-run", *verify_args(world)]
    result = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{K} apply --filename" in result.stdout
    bad = subprocess.run(
        argv[:4] + ["--smoke-cmd", "true"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "give either --manifest, or all of" in bad.stderr


# ---------------------------------------------------------------------------------- refusals


def refused(tmp_path: Path, world: World, image: str, *extra: str) -> str:
    """Deploys image; asserts it was refused with nothing run against the cluster (no kubectl
    call, no smoke test) and returns the reason given."""
    (tmp_path / "m.yaml").write_text(to_yaml(manifests("m", image, 8081, namespace="models")))
    env = {**fake_kubectl.fake_env(tmp_path, OLD), **world.registry.env}
    result, calls, record = run_deploy(tmp_path, env, 0, *verify_args(world), *extra, rc=(4,))
    assert calls == []
    assert record["outcome"] == "refused" and record["commands"] == []
    assert f"refusing to deploy {image}" in result.stderr
    return record["failure"]


def test_refuses_an_unsigned_image(tmp_path, world) -> None:
    image = world.image(b"unsigned")
    assert "unsigned: no provenance is attached" in refused(tmp_path, world, image)


def test_refuses_a_tampered_statement(tmp_path, world) -> None:
    image = world.image(b"tampered")
    envelope = world.sign(testing.provenance(image.split("@")[1], world.not_on_main))
    # Swap in another commit after signing: the signature no longer covers the payload.
    statement = testing.provenance(image.split("@")[1], world.on_main)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    testing.attach_envelope(world.registry, image, envelope)
    failure = refused(tmp_path, world, image)
    assert "no valid signature by the trusted key" in failure and "altered" in failure


def test_refuses_a_statement_signed_by_another_key(tmp_path, world) -> None:
    image = world.image(b"other key")
    statement = testing.provenance(image.split("@")[1], world.on_main)
    testing.attach_envelope(world.registry, image, world.sign(statement, world.other_key))
    failure = refused(tmp_path, world, image)
    assert "no valid signature by the trusted key" in failure and "altered" not in failure


def test_refuses_a_statement_about_another_digest(tmp_path, world, new_image) -> None:
    image = world.image(b"mismatch")
    # CI's valid signature, but over the statement of another image, attached to this one.
    statement = testing.provenance(new_image.split("@")[1], world.on_main)
    testing.attach_envelope(world.registry, image, world.sign(statement))
    assert "digest mismatch" in refused(tmp_path, world, image)


def test_refuses_an_image_built_from_a_commit_not_on_main(tmp_path, world) -> None:
    image = world.published(b"side branch", commit=world.not_on_main)
    assert f"commit {world.not_on_main} is not on main" in refused(tmp_path, world, image)


def test_refuses_an_image_not_in_a_registry(tmp_path, world) -> None:
    image = f"{world.registry.host}/ml/m@sha256:" + "3" * 64
    assert "is not in the registry" in refused(tmp_path, world, image)


def test_refuses_when_the_trusted_key_is_missing(tmp_path, world, new_image) -> None:
    failure = refused(tmp_path, world, new_image, "--key", str(tmp_path / "missing.pub"))
    assert "missing.pub does not exist" in failure
