"""The server as a real process: SIGTERM while a request is in flight."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.testsupport import decode_outputs, raw_request, server_process, stub, wait_for_port


def test_sigterm_drains_and_finishes_in_flight_requests(tmp_path):
    # Each call multiplies two 1600x1600 matrices: long enough to be in flight at SIGTERM.
    model = write_artifact(tmp_path / "slow", "slow", slow_matmul=1600)
    process = server_process(
        "--model-dir",
        str(model),
        "--insecure",
        "--port",
        "0",
        "--drain-seconds",
        "1",
        "--grace-seconds",
        "10",
    )
    try:
        port = wait_for_port(process)
        client, channel = stub(port)
        health = health_pb2_grpc.HealthStub(channel)
        x = np.ones((1, 1, 8, 8), np.float32)
        started = time.monotonic()
        client.ModelInfer(raw_request("slow", x), timeout=30)
        one_call = time.monotonic() - started

        results: list = []
        calls = [
            threading.Thread(
                target=lambda: results.append(client.ModelInfer(raw_request("slow", x), timeout=30))
            )
            for _ in range(3)
        ]
        for call in calls:
            call.start()
        time.sleep(min(0.05, one_call / 4))
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # within the drain period: still answering, but not ready
        assert not client.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        for call in calls:
            call.join(timeout=30)
        assert len(results) == 3
        for response in results:
            assert decode_outputs(response)["probabilities"].shape == (1, 10)
        assert process.wait(timeout=15) == 0
        channel.close()
        # After exit nothing answers.
        with_new, new_channel = stub(port)
        try:
            with_new.ServerLive(pb.ServerLiveRequest(), timeout=2)
            raise AssertionError("the server still answers after exiting")
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        new_channel.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_artifact_process_exits_nonzero_naming_the_file(tmp_path):
    model = write_artifact(tmp_path / "m")
    (model / "model.onnx").write_bytes(b"garbage")
    process = server_process("--model-dir", str(model), "--insecure", "--port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"{model / 'model.onnx'}: size is 7 bytes" in err
