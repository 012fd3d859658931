"""The real serving image of a real model: the KServe v2 server answers correct inferences.

Without an engine, from the unpacked layers in a chroot; with a Docker engine, as a container.
Both compare the server's answers with the packaged ONNX model run in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from models.common.datasets import load_dataset, split_dataset
from serving.proto import open_inference_grpc_pb2 as pb
from serving.testsupport import decode_outputs, raw_request, stub
from tests.images.conftest import Image, chroot_command, load, pull_and_run

MODEL = "digits_cnn_torch"


@pytest.fixture(scope="module")
def image() -> Image:
    return load("image", Path(f"models.{MODEL}"))


@pytest.fixture(scope="module")
def test_images_and_expected() -> tuple[np.ndarray, np.ndarray]:
    """A batch of the model's held-out test images and the packaged model's own predictions."""
    split = split_dataset(load_dataset(Path("models/datasets/digits.npz")), seed=0)
    x = split.test.features[:32, np.newaxis].astype(np.float32)
    session = onnxruntime.InferenceSession(
        f"models/{MODEL}/model.onnx", providers=["CPUExecutionProvider"]
    )
    probabilities, _ = session.run(None, {"input": x})
    return x, probabilities


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inference, channel = stub(port)
        try:
            if inference.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                return
        except Exception:
            time.sleep(0.5)
        finally:
            channel.close()
    raise AssertionError(f"server on port {port} not ready within {timeout}s")


def _check_inference(port: int, expected_version: str, x: np.ndarray, expected: np.ndarray) -> None:
    inference, channel = stub(port)
    with channel:
        metadata = inference.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=10)
        assert list(metadata.versions) == [expected_version]
        response = inference.ModelInfer(raw_request(MODEL, x), timeout=30)
    outputs = decode_outputs(response)
    assert np.allclose(outputs["probabilities"], expected, atol=1e-6)
    assert np.array_equal(outputs["predicted_class"], expected.argmax(axis=1))


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1) for chroot"
)
def test_unpacked_image_serves_correct_inferences(
    image: Image, tmp_path: Path, test_images_and_expected
) -> None:
    root = tmp_path / "rootfs"
    image.unpack(root)
    config = image.config["config"]
    port = _free_port()
    argv = [
        *config["Entrypoint"],
        *config["Cmd"],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(_free_port()),
    ]
    proc = subprocess.Popen(
        chroot_command(root, argv), env=dict(e.split("=", 1) for e in config["Env"])
    )
    try:
        _wait_ready(port)
        _check_inference(
            port,
            image.config["config"]["Labels"]["org.opencontainers.image.version"],
            *test_images_and_expected,
        )
        # The server is PID 1 of its namespace (the child of unshare): SIGTERM stops it cleanly.
        [server] = [
            int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        os.kill(server, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_container_pulled_by_digest_serves_correct_inferences_as_nonroot(
    docker_client, registry, image: Image, test_images_and_expected
) -> None:
    container = pull_and_run(docker_client, registry, image)
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8500/tcp"][0]["HostPort"])
        _wait_ready(port)
        _check_inference(
            port,
            image.config["config"]["Labels"]["org.opencontainers.image.version"],
            *test_images_and_expected,
        )
        top = container.top(ps_args="-o uid,pid,comm")
        uids = {row[0] for row in top["Processes"]}
        assert uids == {"65532"}, top
        container.stop(timeout=20)
        assert container.wait(timeout=30)["StatusCode"] == 0
    finally:
        container.remove(force=True)
        docker_client.images.remove(image.summary["image_id"], force=True)
