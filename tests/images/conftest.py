"""Helpers for the image tests: the packaged images (`runtime_package_dependencies`) and their parts."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

DIST = Path("tests.images")


@dataclass
class Image:
    tar: Path
    summary: dict
    files: dict[str, bytes]

    def json(self, path: str) -> object:
        return json.loads(self.files[path])

    @property
    def docker_manifest(self) -> dict:
        return self.json("manifest.json")[0]

    @property
    def config(self) -> dict:
        return self.json(self.docker_manifest["Config"])

    def unpack(self, root: Path) -> None:
        """Applies the layers in order, as an engine would (these layers hold no whiteouts)."""
        for layer in self.docker_manifest["Layers"]:
            with tarfile.open(self.tar) as outer:
                blob = outer.extractfile(layer)
                with tarfile.open(fileobj=blob, mode="r:gz") as tar:
                    tar.extractall(root, numeric_owner=True)


def load(name: str) -> Image:
    tar = DIST / f"{name}.tar"
    with tarfile.open(tar) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    return Image(tar, json.loads((DIST / f"{name}.json").read_text()), files)


@pytest.fixture(scope="session")
def image_a() -> Image:
    return load("image_a")


@pytest.fixture(scope="session")
def image_b() -> Image:
    return load("image_b")
