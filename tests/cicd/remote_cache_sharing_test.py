"""CI's results reach developers through the authenticated cache, and nothing else gets in (real
./pants against a private BuildGrid: tests/support/remote_cache.py).

A repository made of this sandbox's files (our Pants set-up and infra/report) is copied to two
"machines", each with its own empty local store, named caches and workdir, and no pantsd:
1. CI (pants.ci.toml, CI's token) runs `test infra/report/...`: it writes to the cache.
2. A developer (pants.remote-read.toml, a developer token) runs the same: every lookup hits,
   nothing runs for lack of a hit, nothing is written.
3. Poison: CI runs an edited test, then every blob that run added is changed on the server's
   disk (same size, other bytes).
4. The developer, with the same edit and `remote_cache_write` turned on: no hit from the poisoned
   result (the test runs locally and passes); every write is refused (PERMISSION_DENIED, one
   warning) and the cache gains nothing (action results in Redis, blobs on disk).
5. An expired token: the build passes with one warning.
Counters come from `[stats] log`. Five Pants runs: 9-17 min on 2 busy cores (load 8-16). Restarts, key rotation
and every refusal over REAPI: remote_cache_auth_test.py; the cache down (a dead port):
two_machines_test.py.
"""

from __future__ import annotations

import os
import re
import shutil
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

    def edit(self, text: str | None = None) -> str:
        """A new line in the test file (`text`, or a fresh nonce): its pytest run is new to every
        cache. Returns the file's new contents."""
        path = self.root / EDITED
        path.write_text(text or path.read_text() + f"# nonce {uuid.uuid4().hex}\n")
        return path.read_text()

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


def _blobs(cache: RemoteCache) -> set[Path]:
    return {p for p in (cache.cas_dir / "cas" / "objects").rglob("*") if p.is_file()}


def _contents(cache: RemoteCache) -> tuple[int, set[Path]]:
    """(action results in Redis, blobs on disk)."""
    return int(cache.redis_cli("dbsize").strip()), _blobs(cache)


def test_ci_writes_developers_read_and_nobody_else_writes(tmp_path: Path) -> None:
    source = _source_repo(tmp_path / "source")
    (source / EDITED).write_text((source / EDITED).read_text() + f"# nonce {uuid.uuid4()}\n")
    ci, dev = Machine(source, tmp_path / "ci"), Machine(source, tmp_path / "developer")

    with running_cache(tmp_path / "cache") as cache:
        _, stats = ci.pants("pants.ci.toml", cache.pants_options("ci"))
        assert stats["remote_cache_write_successes"] > 0
        assert stats["remote_cache_write_errors"] == 0

        output, stats = dev.pants("pants.remote-read.toml", cache.pants_options("developer"))
        assert "succeeded in" in output and "(cached remotely)" in output, output
        assert stats["remote_cache_requests_cached"] > 0
        assert stats["remote_cache_requests_uncached"] == 0
        assert stats["remote_cache_write_attempts"] == 0

        # Poison: CI runs an edited test, then every blob that run added to the server's disk
        # gets other bytes (same size).
        edited = ci.edit()
        blobs = _blobs(cache)
        _, stats = ci.pants("pants.ci.toml", cache.pants_options("ci"))
        assert stats["remote_cache_write_successes"] > 0
        poisoned = _blobs(cache) - blobs
        assert poisoned, "CI's run added no blob to poison"
        for path in poisoned:
            data = path.read_bytes()
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if data else b"")
        keys, blobs = _contents(cache)

        # The developer, same edit, writing turned on: no hit from the poisoned result (the test
        # runs here and passes), and every write refused: the cache gains nothing.
        dev.edit(edited)
        output, stats = dev.pants(
            "pants.remote-read.toml", cache.pants_options("developer", write=True)
        )
        assert "(cached remotely)" not in output, output
        assert stats["remote_cache_requests_cached"] == 0
        assert any(cache.quarantine_dir.iterdir()), "the server did not catch the poisoned blobs"
        assert stats["remote_cache_write_attempts"] > 0
        assert stats["remote_cache_write_successes"] == 0
        assert output.count(WRITE_WARNING) == 1, output
        assert "PermissionDenied" in output, output
        keys_after, blobs_after = _contents(cache)
        assert keys_after <= keys and blobs_after <= blobs  # the server only dropped bad entries

        # A token that expired: reads are refused, the build passes with one warning.
        dev.edit()
        expired = cache.mint_token("developer", "expired", seconds=-60)
        output, stats = dev.pants(
            "pants.remote-read.toml", cache.pants_options("developer", token_path=expired)
        )
        assert stats["remote_cache_requests_cached"] == 0
        assert output.count(READ_WARNING) == 1, output
        assert "Unauthenticated" in output, output
