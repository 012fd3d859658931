"""A scratch copy of this monorepo's build set-up with tiny models, driven by real `./pants`.

End-to-end tests copy the real bootstrap script, Pants config, plugin, lockfiles and shared
library into a temporary directory, add small fast models there, and count the trainings Pants
reports (`Completed: Train <address>`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# What a scratch repo copies from this one (the test's sandbox holds these via `files` targets).
# Not the root BUILD: its `files` targets name files a scratch repo does not have.
COPIED = (
    "pants",
    "pants.toml",
    "pants.ci.toml",
    "ruff.toml",
    "3rdparty/python",
    "pants-plugins",
    "models/__init__.py",
    "models/BUILD",
    "models/common",
    "models/datasets",
    # The plugin's dataset tests start an artifact store with these (infra/datastore/testing.py).
    "infra/__init__.py",
    "infra/BUILD",
    "infra/service_testing.py",
    "infra/datastore",
)

# What `model_image` targets need besides the model: the server (its code, not its tests, whose
# BUILD names this repo's real models), its Node front end (code and npm pins) and the base
# layer's pins; models/BUILD's defaults point at them.
IMAGE_INPUTS = ("infra/images/base",)
SERVER_BUILD = """\
python_sources(
    sources=["*.py", "!*_test.py"],
    overrides={"node_frontend.py": {"dependencies": ["//serving/node:js"]}},
)

pex_binary(name="server", entry_point="server.py:main")
"""
PROTO_BUILD = 'grpc_python_proto(name="open_inference", source="open_inference_grpc.proto")\n'


# A training Pants ran: its process completed, or (a dataset by digest) `Ran:` logged by our rule.
_TRAINED = re.compile(r"(?:Completed|Ran): Train (\S+)")

TINY_MODEL = """\
from torch import nn

from models.common.harness import run
from models.common.torch_framework import TorchFramework
{extra_import}

# nonce: {nonce}


def build_model(config, spec):
    # Through the config, like a real model: the standard checks expect unknown keys refused.
    hidden = config.architecture({{"hidden_units": {hidden}}})["hidden_units"]
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, spec.num_classes))


if __name__ == "__main__":
    run(TorchFramework(build_model))
"""

TINY_BUILD = """\
python_sources(name="lib", resolve="torch")

ml_model(
    name="{name}",
    framework="torch",
    entry_point="train.py",
    config="config.json",
    dataset="//models/datasets:digits",
    thresholds={{"accuracy": {threshold}}},
)
"""


@dataclass(frozen=True)
class PantsRun:
    returncode: int
    output: str
    seconds: float = 0.0

    @property
    def trained(self) -> list[str]:
        return sorted(_TRAINED.findall(self.output))


def run_command(argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float) -> PantsRun:
    """Runs `argv` in `cwd` with this environment plus `env`, output and error interleaved."""
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    return PantsRun(proc.returncode, proc.stdout, time.monotonic() - start)


def _copy(source: Path, root: Path, relpaths: tuple[str, ...]) -> None:
    for relpath in relpaths:
        src = source / relpath
        dst = root / relpath
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


class ScratchRepo:
    def __init__(self, root: Path, source: Path = Path(".")) -> None:
        self.root = root
        self.source = source
        _copy(source, root, COPIED)
        (root / "pants").chmod(0o755)
        # This repo's root BUILD names files a scratch repo does not have.
        self.write("BUILD", "")
        # A fresh nonce per scratch repo: its trainings can never be cache hits from an earlier run.
        self.nonce = uuid.uuid4().hex
        self.write("models/shared/__init__.py", "")
        self.add_shared_module("extra")
        self.write("models/shared/BUILD", 'python_sources(resolve="torch")\n')

    @classmethod
    def existing(cls, root: Path) -> ScratchRepo:
        """A scratch repo made earlier (edits to it use a fresh nonce)."""
        repo = cls.__new__(cls)
        repo.root = root
        repo.nonce = uuid.uuid4().hex
        return repo

    def add_shared_module(self, module: str) -> None:
        """A module `models.shared.<module>` that tiny models may import (`HIDDEN`, their width)."""
        self.write(f"models/shared/{module}.py", f"# nonce: {self.nonce}\nHIDDEN = 16\n")

    def write(self, relpath: str, content: str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def read(self, relpath: str) -> str:
        return (self.root / relpath).read_text()

    def add_tiny_model(
        self,
        name: str,
        *,
        uses_shared: bool,
        threshold: float = 0.5,
        shared_module: str = "extra",
        nonce: str | None = None,
    ) -> None:
        """Writes (or rewrites) a tiny model; a new `nonce` makes its training inputs new."""
        self.write(f"models/{name}/__init__.py", "")
        self.write(
            f"models/{name}/train.py",
            TINY_MODEL.format(
                nonce=nonce or self.nonce,
                extra_import=f"from models.shared.{shared_module} import HIDDEN"
                if uses_shared
                else "",
                hidden="HIDDEN" if uses_shared else "16",
            ),
        )
        self.write(
            f"models/{name}/config.json",
            json.dumps({"seed": 0, "epochs": 2, "batch_size": 64, "learning_rate": 0.01}),
        )
        self.write(f"models/{name}/BUILD", TINY_BUILD.format(name=name, threshold=threshold))

    def clone(self, root: Path) -> ScratchRepo:
        """A copy of this repo at `root` (another "machine": no Pants state is copied)."""
        shutil.copytree(self.root, root, ignore=shutil.ignore_patterns("dist", ".pants.d", ".pids"))
        clone = object.__new__(ScratchRepo)
        clone.root, clone.source, clone.nonce = root, self.source, self.nonce
        return clone

    def add_image(self, name: str) -> None:
        """A `model_image` named `image` for the tiny model `name` (server and base copied once)."""
        if not (self.root / IMAGE_INPUTS[0]).exists():
            _copy(self.source, self.root, IMAGE_INPUTS)
            for path in (self.source / "serving").glob("*.py"):
                if not path.name.endswith("_test.py"):
                    self.write(f"serving/{path.name}", path.read_text())
            self.write("serving/BUILD", SERVER_BUILD)
            for proto_file in ("__init__.py", "open_inference_grpc.proto"):
                self.write(
                    f"serving/proto/{proto_file}",
                    (self.source / "serving/proto" / proto_file).read_text(),
                )
            self.write("serving/proto/BUILD", PROTO_BUILD)
            node = self.source / "serving/node"
            for path in [
                node / "BUILD",
                node / "pin_npm.py",
                *node.glob("*.js"),
                *node.glob("*.json"),
            ]:
                self.write(f"serving/node/{path.name}", path.read_text())
        build = self.read(f"models/{name}/BUILD")
        self.write(
            f"models/{name}/BUILD", build + f'\nmodel_image(name="image", model=":{name}")\n'
        )

    def pants(
        self,
        *args: str,
        pantsd: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 900,
    ) -> PantsRun:
        argv = ["./pants", *([] if pantsd else ["--no-pantsd"]), *args]
        return run_command(argv, self.root, {"PANTS_COLORS": "false", **(env or {})}, timeout)

    def stop_pantsd(self, wait: float = 30) -> None:
        stop_pantsd(self.root, wait)


def stop_pantsd(root: Path, wait: float = 30) -> None:
    """Stops the pantsd of the checkout at `root` and waits (up to `wait` seconds) for it to exit."""
    pids = []
    for pid_file in root.glob(".pids/*/pantsd/pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (ValueError, ProcessLookupError):
            pass
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
