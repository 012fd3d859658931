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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# What a scratch repo copies from this one (the test's sandbox holds these via `files` targets).
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
)

# What `model_image` targets need besides the model: the server and the base layer's pins (the
# defaults in models/BUILD point at them).
IMAGE_INPUTS = ("tests/fixtures/server", "infra/images/base")

_TRAINED = re.compile(r"Completed: Train (\S+)")

TINY_MODEL = """\
from torch import nn

from models.common.harness import run
from models.common.torch_framework import TorchFramework
{extra_import}

# nonce: {nonce}


def build_model(config, spec):
    hidden = {hidden}
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

    @property
    def trained(self) -> list[str]:
        return sorted(_TRAINED.findall(self.output))


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
        self.write("models/shared/extra.py", f"# nonce: {self.nonce}\nHIDDEN = 16\n")
        self.write("models/shared/BUILD", 'python_sources(resolve="torch")\n')

    def write(self, relpath: str, content: str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def read(self, relpath: str) -> str:
        return (self.root / relpath).read_text()

    def add_tiny_model(self, name: str, *, uses_shared: bool, threshold: float = 0.5) -> None:
        self.write(f"models/{name}/__init__.py", "")
        self.write(
            f"models/{name}/train.py",
            TINY_MODEL.format(
                nonce=self.nonce,
                extra_import="from models.shared.extra import HIDDEN" if uses_shared else "",
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
        build = self.read(f"models/{name}/BUILD")
        self.write(
            f"models/{name}/BUILD", build + f'\nmodel_image(name="image", model=":{name}")\n'
        )

    def pants(
        self, *args: str, pantsd: bool = True, env: Mapping[str, str] | None = None
    ) -> PantsRun:
        argv = ["./pants", *([] if pantsd else ["--no-pantsd"]), *args]
        proc = subprocess.run(
            argv,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
            env={**os.environ, "PANTS_COLORS": "false", **(env or {})},
        )
        return PantsRun(proc.returncode, proc.stdout)

    def stop_pantsd(self) -> None:
        for pid_file in self.root.glob(".pids/*/pantsd/pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
