"""infra/deploy/deploy against a fake kubectl on PATH that logs its calls and fails on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.deploy import deploy, fake_kubectl
from infra.deploy.manifest import manifests, to_yaml

DEPLOY = Path(deploy.__file__).resolve()  # run as a script, as infra/deploy/deploy does
NEW = "registry.example.com/models/m@sha256:" + "1" * 64
OLD = "registry.example.com/models/m@sha256:" + "0" * 64


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "m.yaml").write_text(to_yaml(manifests("m", NEW, 8081, namespace="models")))
    return fake_kubectl.fake_env(tmp_path, OLD)


def run_deploy(tmp_path: Path, env: dict[str, str], smoke_rc: int = 0, *extra: str):
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
    assert result.returncode in (0, 1), result.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    return result, fake_kubectl.calls(env), record


K = "kubectl --namespace models"
GET = f'{K} get deployment/m --ignore-not-found --output jsonpath={{.spec.template.spec.containers[?(@.name=="model")].image}}'


def test_success_applies_waits_and_smoke_tests(tmp_path, env) -> None:
    result, calls, record = run_deploy(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert calls == [
        GET,
        f"{K} apply --filename {tmp_path / 'm.yaml'}",
        f"{K} rollout status deployment/m --timeout=5s",
        f"smoke m models 8081 {NEW}",
    ]
    assert record["previous_image"] == OLD and record["image"] == NEW
    assert record["outcome"] == "deployed"


def test_failed_rollout_goes_back_to_the_recorded_digest(tmp_path, env) -> None:
    env["FAKE_FIRST_ROLLOUT_RC"] = "1"
    result, calls, record = run_deploy(tmp_path, env)
    assert result.returncode == 1
    assert calls[3:] == [
        f"{K} set image deployment/m model={OLD}",
        f"{K} rollout status deployment/m --timeout=5s",
    ]
    assert not any(c.startswith("smoke") for c in calls)
    assert (record["outcome"], record["failure"]) == ("rolled back", "rollout did not complete")


def test_failed_smoke_test_rolls_back(tmp_path, env) -> None:
    result, calls, record = run_deploy(tmp_path, env, smoke_rc=3)
    assert result.returncode == 1
    assert calls[-2:] == [
        f"{K} set image deployment/m model={OLD}",
        f"{K} rollout status deployment/m --timeout=5s",
    ]
    assert (record["outcome"], record["failure"]) == ("rolled back", "smoke test failed")


def test_failed_first_deployment_removes_what_it_created(tmp_path, env) -> None:
    env["FAKE_CURRENT_IMAGE"] = ""
    result, calls, record = run_deploy(tmp_path, env, smoke_rc=1)
    assert result.returncode == 1
    assert calls[-1] == f"{K} delete --filename {tmp_path / 'm.yaml'} --ignore-not-found"
    assert record["previous_image"] is None


def test_dry_run_prints_every_command_and_runs_none(tmp_path, env) -> None:
    result, calls, record = run_deploy(tmp_path, env, 0, "--dry-run")
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


def test_generates_the_manifest_from_name_image_and_port(tmp_path, env) -> None:
    argv = [sys.executable, str(DEPLOY), "--name", "m", "--image", NEW, "--port", "8081"]
    argv += ["--namespace", "models", "--smoke-cmd", "true", "--dry-run"]
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
