"""The ./pants bootstrap, run for real: missing Python 3.9, concurrent first calls, a killed
install, an interpreter whose installation moved, the notice of a machine off the convention, and
the hand-off to a warm pantsd through Pants's native client."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.scratch_repo import stop_pantsd


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2("pants", root / "pants")
    shutil.copy2("pants.toml", root / "pants.toml")
    shutil.copy2("ruff.toml", root / "ruff.toml")
    shutil.copytree("pants-plugins", root / "pants-plugins")
    (root / "pants").chmod(0o755)
    return root


def _env(cache: Path, **extra: str) -> dict[str, str]:
    # A toolchain root of the test's own: off the team's convention, so ./pants says so (once).
    return {**os.environ, "ML_TOOLCHAIN_ROOT": str(cache), **extra}


def test_no_python39_is_one_clear_line(checkout: Path, tmp_path: Path) -> None:
    env = _env(
        tmp_path / "cache",
        PATH="/usr/bin:/bin",
        PYENV_ROOT=str(tmp_path / "no-pyenv"),
        HOME=str(tmp_path / "home"),
        PANTS_BOOTSTRAP_PYTHON=str(tmp_path / "missing-python"),
    )
    proc = subprocess.run(
        ["./pants", "--version"], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "needs Python 3.9 and none was found" in lines[0]
    assert "PANTS_BOOTSTRAP_PYTHON" in lines[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/.complete"))


def _version(checkout: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["./pants", "--no-pantsd", "--version"],
        cwd=checkout,
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_first_calls_install_once_and_a_killed_install_is_redone(
    checkout: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, second = _version(checkout, cache), _version(checkout, cache)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outputs):
        assert proc.returncode == 0, err
        assert out.strip() == "2.17.1"
    installs = sum(err.count("installing Pants 2.17.1") for _, err in outputs)
    assert installs == 1

    (install,) = cache.glob("pants-2.17.1-pex-*")
    digest = (install / "pex.digest").read_text()
    assert "pex_sha256=" in digest and "pex_size=" in digest

    # Simulate an install killed mid-way: no completion marker, a broken venv.
    (install / ".complete").unlink()
    (install / "venv" / "bin" / "pants").unlink()
    out, err = _version(checkout, cache).communicate(timeout=600)
    assert "installing Pants 2.17.1" in err
    assert out.strip() == "2.17.1"
    assert (install / ".complete").is_file()

    # The build interpreters are copies (Pants records an interpreter by its real path) that run
    # from the root; one whose installation moved is copied again.
    python311 = cache / "python3.11" / "bin" / "python3.11"
    assert python311.is_file() and not python311.is_symlink()
    (cache / "python3.11" / "lib").unlink()
    (cache / "python3.11" / "lib").symlink_to(tmp_path / "moved-away")
    out, err = _version(checkout, cache).communicate(timeout=600)
    assert out.strip() == "2.17.1", err
    assert "installing Pants" not in err
    prefix = subprocess.run(
        [str(python311), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    )
    assert prefix.stdout.strip() == str(cache / "python3.11"), prefix.stderr

    # Off the convention (ML_TOOLCHAIN_ROOT here): said once, with the reason, then not again.
    notices = [e for _, e in outputs if "will not share the team's cache" in e]
    assert len(notices) >= 1 and "ML_TOOLCHAIN_ROOT moves the toolchain to" in notices[0]
    assert "will not share the team's cache" not in err


def test_a_warm_pantsd_is_reached_without_starting_python(checkout: Path, tmp_path: Path) -> None:
    """./pants hands a run to a warm pantsd through Pants's native client, and falls back to the
    Python client when asked to. Python's import profiler shows which one ran: it prints one
    `import time:` line per module the Python client imports, and the native client imports none.
    """
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    env.pop("PANTS_NO_NATIVE_CLIENT", None)

    def pants(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["./pants", *args],
            cwd=checkout,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )

    try:
        started = pants("--version")  # no pantsd yet: the Python client starts one
        assert started.returncode == 0 and started.stdout.strip() == "2.17.1", started.stderr
        assert "import time:" in started.stderr

        warm = pants("--version")
        assert warm.returncode == 0 and warm.stdout.strip() == "2.17.1", warm.stderr
        assert "import time:" not in warm.stderr

        python_client = pants("--version", PANTS_NO_NATIVE_CLIENT="1")
        assert python_client.stdout.strip() == "2.17.1", python_client.stderr
        assert "import time:" in python_client.stderr

        # pantsd's exit code and error reach the caller through the native client.
        failed = pants("list", "no/such/dir::")
        assert failed.returncode != 0
        assert "no/such/dir" in failed.stderr and "import time:" not in failed.stderr
    finally:
        stop_pantsd(checkout)
