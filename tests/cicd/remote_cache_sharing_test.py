"""CI's results reach developers through the authenticated cache, and nothing else gets in (real
./pants against a private BuildGrid: tests/support/remote_cache.py).

A repository made of this sandbox's files (our Pants set-up and infra/report) is copied to two
"machines", each with its own empty local store, named caches and workdir, and no pantsd:
1. CI (pants.ci.toml, CI's token) runs `test infra/report/...`: it writes to the cache.
2. The cache restarts (results persist: the action cache is Redis with an append-only file).
3. A developer (pants.remote-read.toml, a developer token) runs the same: every lookup hits,
   nothing runs for lack of a hit, nothing is written.
4. The developer edits the test and turns `remote_cache_write` on: the server refuses every
   write (PERMISSION_DENIED), the build still passes with one warning, and the cache holds
   exactly what it held before (action results in Redis, blobs on disk).
5. An expired token, then the cache down: the build passes with one warning each.
Counters come from `[stats] log`. ~5 min on 2 busy cores.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.remote_cache import RemoteCache, running_cache

REPO_FILES = [
    "pants",
    "pants.toml",
    "pants.ci.toml",
    "pants.remote-read.toml",
    "ruff.toml",
    "3rdparty",
    "pants-plugins",
    "infra/__init__.py",
    "infra/BUILD",
    "infra/report",
]
GOAL = ["test", "infra/report/pipeline_report_test.py"]
EDITED = "infra/report/pipeline_report_test.py"
_COUNTER = re.compile(r"^\s*(remote_cache_\w+|local_execution_requests): (\d+)$", re.MULTILINE)
READ_WARNING = "Failed to read from remote cache"
WRITE_WARNING = "Failed to write to remote cache"


class Machine:
    """A checkout with its own empty local caches; runs Pants without pantsd."""

    def __init__(self, source: Path, root: Path) -> None:
        self.root = root / "repo"
        shutil.copytree(source, self.root, symlinks=True)
        self.caches = root

    def edit(self) -> None:
        """A new line in the test file: its pytest run is new to every cache."""
        path = self.root / EDITED
        path.write_text(path.read_text() + f"# nonce {uuid.uuid4().hex}\n")

    def pants(self, config: str, options: list[str]) -> tuple[str, dict[str, int]]:
        start = time.monotonic()
        result = subprocess.run(
            [
                "./pants",
                "--no-pantsd",
                f"--pants-workdir={self.caches / 'workdir'}",
                f"--pants-config-files={config}",
                "--stats-log",
                *options,
                *GOAL,
            ],
            cwd=self.root,
            env={
                **os.environ,
                "PANTS_LOCAL_STORE_DIR": str(self.caches / "store"),
                "PANTS_NAMED_CACHES_DIR": str(self.caches / "named-caches"),
                "PANTS_COLORS": "false",
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = result.stdout + result.stderr
        counters = {name: int(value) for name, value in _COUNTER.findall(output)}
        print(f"{self.root.parent.name} ({config}): {time.monotonic() - start:.0f} s, {counters}")
        assert result.returncode == 0, output
        return output, counters


def _source_repo(root: Path) -> Path:
    for name in REPO_FILES:
        src, dst = Path(name), root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return root


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _contents(cache: RemoteCache) -> tuple[int, set[str]]:
    """(action results in Redis, blobs on disk)."""
    port = (cache.directory / "run" / "redis.port").read_text().strip()
    keys = subprocess.run(
        ["redis-cli", "-p", port, "dbsize"], capture_output=True, text=True, check=True
    )
    blobs = {p.name for p in cache.cas_dir.rglob("*") if p.is_file() and "objects" in p.parts}
    return int(keys.stdout.strip()), blobs


def test_ci_writes_developers_read_and_nobody_else_writes(tmp_path: Path) -> None:
    source = _source_repo(tmp_path / "source")
    (source / EDITED).write_text((source / EDITED).read_text() + f"# nonce {uuid.uuid4()}\n")
    ci, dev = Machine(source, tmp_path / "ci"), Machine(source, tmp_path / "developer")

    with running_cache(tmp_path / "cache") as cache:
        _, stats = ci.pants("pants.ci.toml", cache.pants_options("ci"))
        assert stats["remote_cache_write_successes"] > 0
        assert stats["remote_cache_write_errors"] == 0

        cache.restart()
        _, stats = dev.pants("pants.remote-read.toml", cache.pants_options("developer"))
        assert stats["remote_cache_requests_cached"] > 0
        assert stats["remote_cache_requests_uncached"] == 0
        assert stats["remote_cache_write_attempts"] == 0

        # A developer who turns writing on: Pants tries, the server refuses, nothing is stored.
        before = _contents(cache)
        dev.edit()
        output, stats = dev.pants(
            "pants.remote-read.toml", [*cache.pants_options("developer"), "--remote-cache-write"]
        )
        assert stats["remote_cache_write_attempts"] > 0
        assert stats["remote_cache_write_successes"] == 0
        assert output.count(WRITE_WARNING) == 1, output
        assert "PermissionDenied" in output, output
        assert _contents(cache) == before

        # A token that expired: reads are refused, the build passes with one warning.
        dev.edit()
        expired = cache.mint_token("developer", "expired", seconds=-60)
        output, stats = dev.pants(
            "pants.remote-read.toml", cache.pants_options("developer", token_path=expired)
        )
        assert stats["remote_cache_requests_cached"] == 0
        assert output.count(READ_WARNING) == 1, output
        assert "Unauthenticated" in output, output

    # The cache down (stopped, then a port nobody listens on).
    dev.edit()
    options = [
        *cache.pants_options("developer"),
        f"--remote-store-address=grpcs://localhost:{_dead_port()}",
    ]
    output, stats = dev.pants("pants.remote-read.toml", options)
    assert stats["remote_cache_requests_cached"] == 0
    assert output.count(READ_WARNING) == 1, output
    assert output.count(WRITE_WARNING) == 0, output
