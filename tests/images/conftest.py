"""Helpers for the image tests: the packaged images (`runtime_package_dependencies`) and their parts."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.registry import testing
from mlbuild.oci.registry_client import Registry

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


def chroot_command(root: Path, argv: list[str]) -> list[str]:
    """`argv` run as 65532 in a chroot of `root`, as PID 1 of a private PID and mount namespace
    (so the mounts it needs vanish with it)."""
    for mountpoint in ("dev", "proc"):
        (root / mountpoint).mkdir(exist_ok=True)
    mount, chroot = (
        shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") for tool in ("mount", "chroot")
    )
    script = (
        f'{mount} --rbind /dev "$0/dev" && {mount} -t proc proc "$0/proc" && '
        f'exec {chroot} --userspec=65532:65532 "$0" "$@"'
    )
    return [
        "unshare",
        "--pid",
        "--fork",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        str(root),
        *argv,
    ]


def load(name: str, dist: Path = DIST) -> Image:
    tar = dist / f"{name}.tar"
    with tarfile.open(tar) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    return Image(tar, json.loads((dist / f"{name}.json").read_text()), files)


@pytest.fixture(scope="session")
def image_a() -> Image:
    return load("image_a")


@pytest.fixture(scope="session")
def image_b() -> Image:
    return load("image_b")


def _no_engine(reason: str) -> None:
    # CI starts an engine and sets DOCKER_REQUIRED=1: there, a missing engine is a failure.
    if os.environ.get("DOCKER_REQUIRED") == "1":
        pytest.fail(f"DOCKER_REQUIRED=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_client():
    """A client of the engine at DOCKER_HOST; skips (or, with DOCKER_REQUIRED=1, fails) without one."""
    import docker

    if not os.environ.get("DOCKER_HOST"):
        _no_engine("no Docker engine: DOCKER_HOST is unset (see infra/docker/start-dockerd.sh)")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as e:
        _no_engine(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A registry of the tests' own (TLS, basic auth, free port) that the engine pulls from."""
    with testing.running_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


def pull_and_run(client, registry: testing.TestRegistry, image: Image):
    """Pushes the image tar to the registry (as `pants publish` does), pulls it into the engine
    by digest, as Kubernetes would from the manifest, and starts it locked down (read-only root
    filesystem with a writable /tmp as the Kubernetes manifest's emptyDir gives it, no capabilities,
    no privilege escalation) with port 8500 published on 127.0.0.1.

    The engine reaches the registry over TLS without checking its certificate: Docker treats
    registries on 127.0.0.0/8 as insecure. Its password is checked."""
    repository, digest = image.summary["repository"], image.summary["digest"]
    with Registry(registry.host, registry.env) as client_of_registry:
        client_of_registry.push(f"oci-archive:{image.tar}", repository, image.summary["tag"])
    password = Path(registry.env["REGISTRY_PASSWORD_FILE"]).read_text().strip()
    credentials = {"username": registry.env["REGISTRY_USERNAME"], "password": password}
    pulled = client.images.pull(
        f"{registry.host}/{repository}", tag=digest, auth_config=credentials
    )
    reference = f"{registry.host}/{repository}@{digest}"
    assert pulled.id == image.summary["image_id"]
    assert reference in pulled.attrs["RepoDigests"]
    return client.containers.run(
        reference,
        detach=True,
        ports={"8500/tcp": ("127.0.0.1", None)},
        read_only=True,
        # The manifest's /tmp emptyDir: the server's workers keep their metrics there.
        tmpfs={"/tmp": "rw,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
