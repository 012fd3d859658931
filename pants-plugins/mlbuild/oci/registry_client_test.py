"""Where the registry client takes credentials from (the client itself runs against a real
registry in infra/registry/registry_test.py and tests/images/publish_test.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mlbuild.oci.registry_client import RegistryError, _credentials

# Only a key to look credentials up by: no server is contacted.
HOST = "registry.example.test"


def auth_file(path: Path, user: str, password: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {HOST: {"auth": token}}}))
    return str(path)


def test_username_and_password_win_then_the_named_file_then_login_files(tmp_path: Path) -> None:
    named = auth_file(tmp_path / "named.json", "named", "n")
    auth_file(tmp_path / "home" / ".docker" / "config.json", "docker-login", "d")
    (tmp_path / "password").write_text("p\n")
    env = {"HOME": str(tmp_path / "home"), "REGISTRY_AUTH_FILE": named}
    assert _credentials(HOST, {**env, "REGISTRY_USERNAME": "u", "REGISTRY_PASSWORD": "p"}) == (
        "u",
        "p",
    )
    password_file = {"REGISTRY_USERNAME": "u", "REGISTRY_PASSWORD_FILE": str(tmp_path / "password")}
    assert _credentials(HOST, {**env, **password_file}) == ("u", "p")
    assert _credentials(HOST, env) == ("named", "n")
    assert _credentials(HOST, {"HOME": env["HOME"]}) == ("docker-login", "d")
    assert _credentials("other:5000", {"HOME": env["HOME"]}) is None


def test_a_named_file_that_is_missing_or_bad_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="missing.json"):
        _credentials(HOST, {"REGISTRY_AUTH_FILE": str(tmp_path / "missing.json")})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RegistryError, match="bad.json"):
        _credentials(HOST, {"REGISTRY_AUTH_FILE": str(tmp_path / "bad.json")})
