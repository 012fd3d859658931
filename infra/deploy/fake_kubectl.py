"""A fake `kubectl` for tests: put it first on PATH; it logs each call and fails on request."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCRIPT = """\
#!/usr/bin/env bash
# Logs each call to $FAKE_LOG; `get` prints $FAKE_CURRENT_IMAGE; the first `rollout status`
# exits $FAKE_FIRST_ROLLOUT_RC, later ones 0.
echo "kubectl $*" >> "$FAKE_LOG"
case "$3" in
  get) printf '%s' "${FAKE_CURRENT_IMAGE:-}" ;;
  rollout)
    if [[ ! -e "$FAKE_LOG.rolled" ]]; then touch "$FAKE_LOG.rolled"; exit "${FAKE_FIRST_ROLLOUT_RC:-0}"; fi ;;
esac
"""


def fake_env(tmp_path: Path, current_image: str) -> dict[str, str]:
    """Installs the fake in tmp_path/bin; returns the environment that puts it on PATH (and lets
    a script run with this Python find the test's requirements, which may come from a PEX)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "kubectl").write_text(SCRIPT)
    (bin_dir / "kubectl").chmod(0o755)
    return {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PYTHON": sys.executable,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FAKE_LOG": str(tmp_path / "kubectl.log"),
        "FAKE_CURRENT_IMAGE": current_image,
    }


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_LOG"])
    return log.read_text().splitlines() if log.exists() else []
