"""The packaged image in a real Docker engine (Docker SDK): pushed to a registry and pulled from it
by digest, run as non-root, serve, stop.

Skips, saying why, when no engine answers at DOCKER_HOST (start one with
`export DOCKER_HOST="$(infra/docker/start-dockerd.sh)"`; pants.toml passes DOCKER_HOST to tests).
"""

from __future__ import annotations

import json
import time

import docker
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.images.conftest import Image, pull_and_run


def wait_for_event(container, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in container.logs(stdout=True, stderr=False).decode().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == name:
                return json.loads(line)
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.5)
    raise AssertionError(f"no {name!r} event; logs:\n{container.logs().decode()}")


def test_pulls_by_digest_runs_as_nonroot_serves_and_stops_cleanly(
    docker_client: docker.DockerClient, registry, image_a: Image
) -> None:
    container = pull_and_run(docker_client, registry, image_a)
    try:
        ready = wait_for_event(container, "ready")
        assert (ready["uid"], ready["pid"], ready["model"]) == (65532, 1, "fixture_a")
        container.reload()
        assert container.attrs["Config"]["User"] == "65532:65532"
        port = container.attrs["NetworkSettings"]["Ports"]["8500/tcp"][0]["HostPort"]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        container.stop(timeout=20)
        assert time.monotonic() - started < 15, "SIGTERM was ignored: docker had to SIGKILL"
        assert container.wait(timeout=30)["StatusCode"] == 0
        assert wait_for_event(container, "stopped")["model"] == "fixture_a"
    finally:
        container.remove(force=True)
        docker_client.images.remove(image_a.summary["image_id"], force=True)
