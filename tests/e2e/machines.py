"""Simulated team machines for tests that share a cache: two machines, not two folders.

Each `Machine` differs from the others the way two people's computers do: its own HOME,
XDG_CACHE_HOME (so its own Pants store and named caches), checkout path (at its own depth), its
own copy of the interpreters under its own PYENV_ROOT, its own PATH order and LANG, and its own
toolchain root. The toolchain root is the one path that ./pants fixes for every machine
(`TEAM_TOOLCHAIN_ROOT` in ./pants): each machine runs Pants in a private mount namespace
(`unshare --mount`) where that path is a bind mount of the machine's own directory, exactly as on
separate computers. Needs root, or unprivileged user namespaces (`unshare --user`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.e2e.scratch_repo import PantsRun, run_command

PYTHON_VERSIONS = ("3.9", "3.11")


def team_toolchain_root(pants_script: Path = Path("pants")) -> str:
    """The fixed toolchain path ./pants uses on every machine (read from the script)."""
    match = re.search(r'^readonly TEAM_TOOLCHAIN_ROOT="([^"]+)"', pants_script.read_text(), re.M)
    if not match:
        raise AssertionError(f"{pants_script} defines no TEAM_TOOLCHAIN_ROOT")
    return match.group(1)


def namespace_prefix() -> list[str]:
    """The `unshare` command line that gives a process its own mount namespace here."""
    candidates = [["unshare", "--mount", "--propagation", "private"]]
    if os.geteuid() != 0:
        candidates = [["unshare", "--user", "--map-root-user", "--mount"]]
    for prefix in candidates:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix
    raise RuntimeError(
        f"cannot make a mount namespace with {candidates[0]}: {probe.stderr.strip()}"
    )


def _real_pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def copy_interpreters(destination: Path) -> Path:
    """A PYENV_ROOT at `destination` holding the machine's Python 3.9 and 3.11 (hard links where
    the file system allows: a different location, not different bytes)."""
    source = _real_pyenv_root() / "versions"
    for version in PYTHON_VERSIONS:
        matches = sorted(source.glob(f"{version}.*"))
        if not matches:
            raise RuntimeError(f"no Python {version} under {source}")
        target = destination / "versions" / matches[-1].name
        target.parent.mkdir(parents=True, exist_ok=True)
        linked = subprocess.run(["cp", "-al", str(matches[-1]), str(target)], capture_output=True)
        if linked.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["cp", "-a", str(matches[-1]), str(target)], check=True)
    return destination


class Machine:
    """One simulated computer: a checkout plus everything around it that differs by machine."""

    def __init__(
        self,
        name: str,
        base: Path,
        checkout: Path,
        *,
        depth: int,
        reverse_path: bool = False,
        lang: str = "C.UTF-8",
        own_interpreters: bool = True,
        isolated: bool = True,
        toolchain_owner: int | None = None,
    ) -> None:
        """`isolated=False`: this computer itself (its toolchain root, no namespace)."""
        self.name = name
        self.checkout = checkout
        self.root = team_toolchain_root(checkout / "pants")
        self.isolated = isolated
        self.toolchain = base / "toolchain" if isolated else Path(self.root)
        if isolated:
            self.toolchain.mkdir(parents=True, exist_ok=True)
        if toolchain_owner is not None:  # A root that ./pants must refuse: not this user's.
            os.chown(self.toolchain, toolchain_owner, toolchain_owner)
        home = base.joinpath(*[f"d{i}" for i in range(depth)], "home")
        home.mkdir(parents=True, exist_ok=True)
        path = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if reverse_path:
            path.reverse()
        self.env = {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(base / "xdg-cache"),
            "LANG": lang,
            "PANTS_COLORS": "false",
        }
        if own_interpreters:
            pyenv = copy_interpreters(base / "pyenv")
            self.env["PYENV_ROOT"] = str(pyenv)
            path.insert(0, str(pyenv / "bin"))
        self.env["PATH"] = os.pathsep.join(path)
        self.prefix = namespace_prefix() if isolated else []

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 1500
    ) -> PantsRun:
        """Runs `argv` in the checkout, on this machine (own namespace, own environment)."""
        command = list(argv)
        if self.isolated:
            mount = 'mkdir -p "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"'
            command = [*self.prefix, "sh", "-c", mount, "sh", str(self.toolchain), self.root, *argv]
        return run_command(command, self.checkout, {**self.env, **(env or {})}, timeout)

    def toolchain_installed(self) -> bool:
        """Whether ./pants installed Pants in this machine's own toolchain root."""
        return any(self.toolchain.glob("pants-*/.complete"))

    def pants(self, *args: str, timeout: float = 1500) -> PantsRun:
        """Real ./pants without pantsd (a daemon would outlive the namespace)."""
        return self.run(["./pants", "--no-pantsd", *args], timeout=timeout)
