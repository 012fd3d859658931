"""For tests: a service of the test's own, started by its `infra/<service>/start` script in a
temporary directory and stopped by its `stop` script (the registry, the datastore).

Without the service's tools installed a test skips, saying so; CI installs them and sets the
service's `*_REQUIRED=1`, so there a missing tool fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_tools(tools: tuple[str, ...], required_var: str, installer: str) -> None:
    missing = [t for t in tools if not shutil.which(t, path=SYSTEM_PATH)]
    if missing:
        import pytest  # only here: benchmarks start services with this module, without pytest

        reason = f"{', '.join(missing)} not installed ({installer} installs them)"
        if os.environ.get(required_var) == "1":
            pytest.fail(f"{required_var}=1 but {reason}")
        pytest.skip(reason)


@contextmanager
def started_service(scripts: Path, settings: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Runs scripts/start with settings added to the environment; yields the variables it
    exported (its `export NAME=value` lines); runs scripts/stop after."""
    env = {**os.environ, **settings}
    env["PATH"] = f"{SYSTEM_PATH}:{env.get('PATH', '')}"
    started = subprocess.run(
        [str(scripts / "start")], env=env, capture_output=True, text=True, check=False
    )
    assert started.returncode == 0, started.stderr
    exported = dict(
        line[len("export ") :].split("=", 1)
        for line in started.stdout.splitlines()
        if line.startswith("export ")
    )
    try:
        yield exported
    finally:
        subprocess.run([str(scripts / "stop")], env=env, capture_output=True, check=False)
