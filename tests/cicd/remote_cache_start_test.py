"""infra/remote-cache/start and stop on a busy machine: Redis opens its port before it writes its
pid file, so `start` must wait for the file, or it takes a slow Redis for a failed one, starts
another, and leaves the first running with no record of it (found after CI runs: a stray
redis-server per run). A stand-in redis-server that is slow to write its pid file makes the race
certain; BuildGrid is real.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from tests.support.remote_cache import running_cache

SLOW_REDIS = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # Stands in for redis-server: daemonizes, opens its port, and writes its pid file 1.5 s later.
    import os, socket, sys, time
    args = sys.argv[2:]
    options = {args[i][2:]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    if os.fork():
        sys.exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)  # as a daemon: the caller's pipes are not held open
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    server = socket.socket()
    server.bind((options["bind"], int(options["port"])))
    server.listen(16)
    time.sleep(1.5)
    with open(os.environ["SLOW_REDIS_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(options["pidfile"], "w") as f:
        f.write(f"{os.getpid()}\\n")
    while True:
        server.accept()[0].close()
    """
)


def test_a_redis_slow_to_write_its_pid_file_is_started_once_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").write_text(SLOW_REDIS)
    (bin_dir / "redis-server").chmod(0o755)
    log = tmp_path / "started"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLOW_REDIS_LOG", str(log))
    try:
        with running_cache(tmp_path / "cache") as cache:
            started = [int(pid) for pid in log.read_text().split()]
            recorded = int((cache.directory / "run" / "redis.pid").read_text())
            assert started == [recorded] == _stand_ins(bin_dir)
        assert _stand_ins(bin_dir) == []
    finally:
        # Whatever the outcome, no stand-in outlives the test (one may not have logged yet).
        for pid in _stand_ins(bin_dir):
            os.kill(pid, signal.SIGKILL)


def _stand_ins(bin_dir: Path) -> list[int]:
    """The live processes running the stand-in from `bin_dir`, by their command lines."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(bin_dir).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids
