"""The packaged model images without a container engine: layout, layer sharing, and a real start
of the entrypoint in a chroot of the unpacked layers, as PID 1 of its own PID namespace."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.images.conftest import DIST, Image, chroot_command


def test_one_tar_is_an_oci_layout_and_a_docker_archive(image_a: Image) -> None:
    digest = (DIST / "image_a.digest").read_text().strip()
    assert image_a.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    [entry] = image_a.json("index.json")["manifests"]
    assert entry["digest"] == digest == image_a.summary["digest"]
    for path, data in image_a.files.items():
        if path.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == path.rsplit("/", 1)[1]
    manifest = image_a.json("blobs/sha256/" + digest.split(":")[1])
    docker = image_a.docker_manifest
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert docker["Layers"] == [
        "blobs/sha256/" + layer["digest"].split(":")[1] for layer in manifest["layers"]
    ]
    assert docker["RepoTags"] == ["ml/fixture_a:" + image_a.summary["model_version"][:12]]


def test_config_is_secure_reproducible_and_labelled_from_model_json(image_a: Image) -> None:
    config = image_a.config
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Cmd"] == ["--model-dir", "/models/fixture_a"]
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == labels["ml.model.name"] == "fixture_a"
    assert labels["org.opencontainers.image.version"] == image_a.summary["model_version"]
    assert labels["ml.model.framework"] == "torch"
    assert labels["ml.model.metrics.accuracy"] == "0.5"
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert not any(key for key in env if "SECRET" in key or "TOKEN" in key or "PASSWORD" in key)
    assert "/root" not in json.dumps(config) and "/work" not in json.dumps(config)


def test_images_of_two_models_share_every_layer_below_the_model(
    image_a: Image, image_b: Image
) -> None:
    layers_a = [layer["digest"] for layer in image_a.summary["layers"]]
    layers_b = [layer["digest"] for layer in image_b.summary["layers"]]
    assert len(layers_a) == len(layers_b) == 4
    assert layers_a[:3] == layers_b[:3]
    assert layers_a[3] != layers_b[3]
    assert image_a.summary["digest"] != image_b.summary["digest"]


def test_image_is_small(image_a: Image) -> None:
    assert image_a.summary["uncompressed_size"] < 250_000_000


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1) for chroot"
)
def test_entrypoint_serves_the_model_as_nonroot_pid1_and_stops_cleanly_on_sigterm(
    image_a: Image, tmp_path: Path
) -> None:
    root = tmp_path / "rootfs"
    image_a.unpack(root)
    assert not (root / "bin" / "sh").exists() and not (root / "usr" / "bin" / "sh").exists()
    config = image_a.config["config"]
    argv = [*config["Entrypoint"], *config["Cmd"], "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        chroot_command(root, argv),
        env=dict(item.split("=", 1) for item in config["Env"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready", ready
        assert (ready["uid"], ready["pid"], ready["model"]) == (65532, 1, "fixture_a")
        assert ready["outputs"] == {"probabilities": [1, 3], "predicted_class": [1]}
        with grpc.insecure_channel(f"127.0.0.1:{ready['port']}") as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        [server_pid] = children(proc.pid)
        os.kill(server_pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert json.loads(proc.stdout.readline()) == {"event": "stopped", "model": "fixture_a"}
    finally:
        if proc.poll() is None:
            proc.kill()
            time.sleep(0.5)
