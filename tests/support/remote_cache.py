"""A real, private remote cache for a test: BuildGrid + Redis over TLS with token authorization.

    from tests.support.remote_cache import running_cache

    def test_something(tmp_path):
        with running_cache(tmp_path / "cache") as cache:
            run = repo.pants(*cache.pants_options("ci"), "package", "::", pantsd=False)

`running_cache(directory)` runs `infra/remote-cache/start` with its data, a fresh local CA and a
fresh signing key in `directory`, on free ports (never a fixed one), and `stop` on exit (also on
failure): the same server configuration (infra/remote-cache/server_config.py) as the team's. It
yields a `RemoteCache`:

- `address`: "grpcs://localhost:PORT" (Pants 2.17 refuses TLS to an IP address);
  `host_port`: "localhost:PORT"; `instance_name`: "main"
- `ca_cert_path`: the CA that signed the server's certificate
- `ci_token_path` (role ci: read + write), `developer_token_path` (role developer: read only)
- `mint_token(role, name, seconds=3600, other_key=False) -> Path`: another token; `seconds < 0`
  gives an expired one, `other_key=True` one signed with a key the server does not know
- `pants_options(role="ci", token_path=None, write=None) -> list[str]`: Pants flags to use this
  cache as `role` ("ci" writes, "developer" only reads; `write=True`: try anyway):
  `--remote-store-address`, `--remote-ca-certs-path`, `--remote-oauth-bearer-token-path`,
  `--remote-instance-name`, `--remote-cache-read`, `--[no-]remote-cache-write`; they override
  whatever pants.ci.toml / pants.remote-read.toml say (their token and CA paths need not exist)
- `probe(action, token_path=None, plaintext=False, blob=, action_digest=, nonce=) -> dict`: REAPI
  calls made as one client (infra/remote-cache/reapi_probe.py: "write" [same nonce, same blobs],
  "read" of blob= and action_digest=, "mismatch"), returning each RPC's gRPC status name
- `redis_cli(*args, password=True) -> str`: the output of `redis-cli ARGS` against the server's
  Redis (the action results), logged in with its password or not
- `blob_path(digest)`: where the server keeps blob "HASH/SIZE" on disk; `quarantine_dir`: where
  it moves blobs whose bytes do not match their digest (infra/remote-cache/serve.py)
- `restart()`: stop and start again on the same data (results persist; the port may change, so
  read `address` / `pants_options` again); `rotate_signing_key()`: a new key pair, server
  restarted, old tokens refused, `ci_token_path` / `developer_token_path` re-issued with the new
  key; `stop()`; `cas_dir`: the server's blob store on disk

Install: the first use on a machine runs `infra/remote-cache/install` (BuildGrid's venv under
`${XDG_CACHE_HOME:-~/.cache}/ml-monorepo/`, ~20 s, shared by every test and `start`; Debian's
redis-server). The test target needs `HOME`, `PATH`, `PYENV_ROOT`, `XDG_CACHE_HOME`,
`SSL_CERT_FILE` and `REMOTE_CACHE_REQUIRED` in `extra_env_vars` (`CACHE_SERVER_ENV` in
tests/cicd/BUILD); the dependency on `//tests/support:remote_cache` is inferred from the import.
If a prerequisite cannot be installed (no Python 3.13, no redis-server), the test is skipped
saying why, or fails when REMOTE_CACHE_REQUIRED=1 (CI); a server that does not come up always
fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "remote-cache"
INSTANCE_NAME = "main"
ROLES = ("ci", "developer")
PREREQUISITE_MISSING = 3  # infra/remote-cache/install's exit status


def _venv_python() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (
        Path(os.environ.get("REMOTE_CACHE_VENV") or cache / "ml-monorepo" / "buildgrid-0.9.1")
        / "bin"
        / "python"
    )


@dataclass
class RemoteCache:
    directory: Path
    env: dict[str, str]
    ca_cert_path: Path = field(init=False)
    ci_token_path: Path = field(init=False)
    developer_token_path: Path = field(init=False)
    address: str = field(init=False, default="")
    instance_name: str = INSTANCE_NAME

    def __post_init__(self) -> None:
        self.ca_cert_path = self.directory / "tls" / "ca.pem"
        self.ci_token_path = self.directory / "tokens" / "ci.token"
        self.developer_token_path = self.directory / "tokens" / "developer.token"
        self._tokens = 0

    @property
    def host_port(self) -> str:
        return self.address.removeprefix("grpcs://")

    @property
    def cas_dir(self) -> Path:
        return self.directory / "cas"

    def redis_cli(self, *args: str, password: bool = True) -> str:
        """`redis-cli` against the server's action cache store (with its password, or none)."""
        port = (self.directory / "run" / "redis.port").read_text().strip()
        env = {k: v for k, v in self.env.items() if k != "REDISCLI_AUTH"}
        if password:
            env["REDISCLI_AUTH"] = self.redis_password_path.read_text()
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", port, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout + result.stderr

    @property
    def redis_password_path(self) -> Path:
        return self.directory / "keys" / "redis.password"

    @property
    def quarantine_dir(self) -> Path:
        return self.cas_dir / "quarantine"

    def blob_path(self, digest: str) -> Path:
        hash_ = digest.partition("/")[0]
        return self.cas_dir / "cas" / "objects" / hash_[:2] / hash_[2:]

    def _script(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPTS / name), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def _check(self, name: str, *args: str) -> str:
        result = self._script(name, *args)
        if result.returncode != 0:
            raise RuntimeError(
                f"infra/remote-cache/{name} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result.stdout

    def _log_tail(self) -> str:
        log = self.directory / "logs" / "buildgrid.log"
        if not log.exists():
            return ""
        return "\nbuildgrid.log (end):\n" + "\n".join(log.read_text().splitlines()[-30:])

    def start(self) -> None:
        self._check("start")
        self.address = (self.directory / "run" / "address").read_text().strip()

    def stop(self) -> None:
        self._check("stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def rotate_signing_key(self) -> None:
        """A new signing key (infra/remote-cache/rotate-signing-key), and new `ci_token_path` and
        `developer_token_path` signed with it (copy the old ones first to test them)."""
        self._check("rotate-signing-key")
        self.address = (self.directory / "run" / "address").read_text().strip()
        self._issue_standard_tokens()

    def _issue_standard_tokens(self) -> None:
        for role, name, path in (
            ("ci", "ci", self.ci_token_path),
            ("developer", "dev", self.developer_token_path),
        ):
            self._check("issue-token", "--role", role, "--name", name, "--days", "1",
                        "--out", str(path))  # fmt: skip

    def mint_token(
        self, role: str, name: str, seconds: float = 3600, other_key: bool = False
    ) -> Path:
        """A new token file. `seconds < 0`: already expired; `other_key`: signed with a key pair
        the server never saw (made on first use)."""
        self._tokens += 1
        out = self.directory / "tokens" / f"{self._tokens}-{role}-{name}.token"
        lifetime = ["--role", role, "--name", name, "--seconds", str(seconds), "--out", str(out)]
        if not other_key:
            self._check("issue-token", *lifetime)
            return out
        key = self.directory / "other-key" / "token-signing.key"
        if not key.exists():
            self._credentials("signing-key", str(key), str(key.with_suffix(".pub")))
        self._credentials("token", "--key", str(key), *lifetime)
        return out

    def _credentials(self, *args: str) -> None:
        command = [str(_venv_python()), str(SCRIPTS / "credentials.py"), *args]
        subprocess.run(command, check=True, env=self.env, capture_output=True, timeout=120)

    def pants_options(
        self, role: str = "ci", token_path: Path | None = None, write: bool | None = None
    ) -> list[str]:
        """Pants flags for this cache as `role`; `write` (default: role is ci) sets
        --[no-]remote-cache-write, e.g. write=True for a developer trying to write."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        token = token_path or (self.ci_token_path if role == "ci" else self.developer_token_path)
        return [
            f"--remote-store-address={self.address}",
            f"--remote-ca-certs-path={self.ca_cert_path}",
            f"--remote-oauth-bearer-token-path={token}",
            f"--remote-instance-name={self.instance_name}",
            "--remote-cache-read",
            "--remote-cache-write"
            if write or (write is None and role == "ci")
            else "--no-remote-cache-write",
        ]

    def probe(
        self,
        action: str,
        token_path: Path | None = None,
        plaintext: bool = False,
        blob: str | None = None,
        action_digest: str | None = None,
        nonce: str | None = None,
    ) -> dict:
        """What the server answers one client's REAPI calls (see reapi_probe.py)."""
        args = [str(_venv_python()), "reapi_probe.py", self.host_port, action]
        args += ["--plaintext"] if plaintext else ["--ca", str(self.ca_cert_path)]
        if token_path is not None:
            args += ["--token", str(token_path)]
        if blob is not None:
            args += ["--blob", blob]
        if action_digest is not None:
            args += ["--action-digest", action_digest]
        if nonce is not None:
            args += ["--nonce", nonce]
        result = subprocess.run(
            args, cwd=SCRIPTS, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"reapi_probe.py {action} failed:\n{result.stderr}")
        return json.loads(result.stdout)


def _install(env: dict[str, str]) -> None:
    """Installs BuildGrid and Redis once per machine; skips or fails the test if it cannot."""
    result = subprocess.run(
        [str(SCRIPTS / "install")], env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode == 0:
        return
    reason = f"cannot run a remote cache here: {result.stderr.strip()}"
    if result.returncode == PREREQUISITE_MISSING and os.environ.get("REMOTE_CACHE_REQUIRED") != "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (REMOTE_CACHE_REQUIRED=1: CI must run this test)", pytrace=False)


@contextmanager
def running_cache(directory: Path) -> Iterator[RemoteCache]:
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ML_REMOTE_CACHE_DIR": str(directory),
        "REMOTE_CACHE_HOST": "127.0.0.1",
        "REMOTE_CACHE_NAME": "localhost",
        "REMOTE_CACHE_PORT": "0",
        "REMOTE_CACHE_REDIS_PORT": "0",
    }
    for inherited in (
        "REMOTE_CACHE_TLS_DIR",
        "REMOTE_CACHE_SIGNING_KEY",
        "REMOTE_CACHE_VERIFY_KEY",
        "REMOTE_CACHE_TLS_HOSTS",
    ):
        env.pop(inherited, None)
    _install(env)
    cache = RemoteCache(directory, env)
    try:
        cache.start()
        cache._issue_standard_tokens()
        yield cache
    finally:
        cache.stop()
