"""The server as a real process: SIGTERM while requests are in flight."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import FRONTENDS
from serving.testsupport import (
    decode_outputs,
    metric_value,
    raw_request,
    server_process,
    stub,
    wait_for_ports,
)

X = np.ones((1, 1, 8, 8), np.float32)


@contextlib.contextmanager
def slow_server(tmp_path, drain_seconds: str, frontend: str, *extra_args: str):
    # Each call multiplies two 1600x1600 matrices: long enough to be in flight at SIGTERM.
    # A model this slow runs in threads (`--execution thread`): inline, each call would hold the
    # event loop, and the next requests would wait instead of being in flight.
    model = write_artifact(tmp_path / "slow", "slow", slow_matmul=1600)
    process = server_process(
        *("--model-dir", str(model), "--insecure", "--port", "0", "--metrics-port", "0"),
        *("--frontend", frontend, "--execution", "thread", *extra_args),
        *("--drain-seconds", drain_seconds, "--grace-seconds", "10"),
    )
    try:
        port, metrics_port = wait_for_ports(process)
        client, channel = stub(port)
        client.ModelInfer(raw_request("slow", X), timeout=30)  # warm up
        yield (
            process,
            port,
            client,
            lambda: metric_value(metrics_port, "inference_in_flight_requests"),
        )
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def own_connection(port: int):
    """A client on a connection of its own (with several workers, connections spread over them)."""
    return stub(port, **{"grpc.use_local_subchannel_pool": 1})[0]


def in_flight(port: int, in_flight_now, count: int) -> tuple[list[threading.Thread], list]:
    """Starts `count` calls, each on its own connection, and returns once the server reports
    them in flight."""
    results: list = []

    def call(client) -> None:
        results.append(client.ModelInfer(raw_request("slow", X), timeout=30))

    calls = [threading.Thread(target=call, args=(own_connection(port),)) for _ in range(count)]
    for call in calls:
        call.start()
    deadline = time.monotonic() + 10
    while in_flight_now() < count:
        assert time.monotonic() < deadline, "the calls never reached the server"
        time.sleep(0.005)
    return calls, results


def assert_all_answered(calls, results, count: int) -> None:
    for call in calls:
        call.join(timeout=30)
    assert len(results) == count
    for response in results:
        assert decode_outputs(response)["probabilities"].shape == (1, 10)


def assert_exits_cleanly(process: subprocess.Popen, port: int) -> None:
    assert process.wait(timeout=15) == 0
    client, channel = stub(port)
    try:
        client.ServerLive(pb.ServerLiveRequest(), timeout=2)
        raise AssertionError("the server still answers after exiting")
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        channel.close()


WORKERS = pytest.mark.parametrize("workers", ["1", "2"])
FRONTEND = pytest.mark.parametrize("frontend", FRONTENDS)


@WORKERS
@FRONTEND
def test_sigterm_drains_then_exits_zero(tmp_path, workers, frontend):
    drain = slow_server(tmp_path, "2", frontend, "--workers", workers)
    with drain as (process, port, client, in_flight_now):
        calls, results = in_flight(port, in_flight_now, 3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # within the drain period
        for _ in range(4):  # with 2 workers, all of them say so
            client = own_connection(port)
            assert not client.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            assert not client.ModelReady(pb.ModelReadyRequest(name="slow"), timeout=5).ready
            channel = grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Not ready, but requests that still arrive while draining are answered.
        late = client.ModelInfer(raw_request("slow", X), timeout=30)
        assert decode_outputs(late)["predicted_class"].shape == (1,)
        assert_all_answered(calls, results, 3)
        assert_exits_cleanly(process, port)


@WORKERS
@FRONTEND
def test_sigterm_without_drain_lets_in_flight_requests_finish(tmp_path, workers, frontend):
    no_drain = slow_server(tmp_path, "0", frontend, "--workers", workers)
    with no_drain as (process, port, client, in_flight_now):
        calls, results = in_flight(port, in_flight_now, 2)
        process.send_signal(signal.SIGTERM)
        assert_all_answered(calls, results, 2)
        assert_exits_cleanly(process, port)
        assert "received signal 15" in process.stderr.read()


@WORKERS  # with 2, the workers load the models: their error stops the server all the same
@FRONTEND
def test_bad_artifact_process_exits_nonzero_naming_the_file(tmp_path, workers, frontend):
    model = write_artifact(tmp_path / "m")
    (model / "model.onnx").write_bytes(b"garbage")
    process = server_process(
        *("--model-dir", str(model), "--insecure", "--port", "0", "--workers", workers),
        *("--frontend", frontend),
    )
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert f"error: {model / 'model.onnx'}: size is 7 bytes" in err
