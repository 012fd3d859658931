from __future__ import annotations

import hashlib
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import FRONTENDS, INFERENCE_SERVICE, ServerConfig
from serving.testsupport import (
    decode_outputs,
    raw_request,
    running_server,
    stub,
    typed_request,
)

MODEL = "fixture_digits"
MAX_BATCH = 64
MAX_MESSAGE = 256 * 1024


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "digits": write_artifact(root / "digits", MODEL),
        "cancer": write_artifact(root / "cancer", "fixture_cancer", (-1, 30), 2, seed=1),
    }


@pytest.fixture(scope="module", params=FRONTENDS)
def server(artifacts, request):
    config = ServerConfig(
        frontend=request.param,
        model_dirs=(str(artifacts["digits"]), str(artifacts["cancer"])),
        port=0,
        metrics_port=0,
        insecure=True,
        max_batch_size=MAX_BATCH,
        max_message_bytes=MAX_MESSAGE,
    )
    with running_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    client, channel = stub(server.port)
    yield client
    channel.close()


def expected(artifacts, key: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(artifacts[key] / "model.onnx"))
    probabilities, predicted = session.run(None, {"input": x})
    return {"probabilities": probabilities, "predicted_class": predicted}


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_server_live_ready_and_metadata(client, server):
    assert client.ServerLive(pb.ServerLiveRequest()).live
    assert client.ServerReady(pb.ServerReadyRequest()).ready
    meta = client.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "ml-monorepo-serving"
    version = server.artifacts[MODEL].version
    assert client.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready
    assert client.ModelReady(pb.ModelReadyRequest(name=MODEL, version=version)).ready


def test_model_metadata_reports_signature_and_digest(client, artifacts):
    digest = hashlib.sha256((artifacts["digits"] / "model.onnx").read_bytes()).hexdigest()
    meta = client.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    assert meta.name == MODEL
    assert list(meta.versions) == [digest]
    assert meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP32", [-1, 1, 8, 8])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 10]),
        ("predicted_class", "INT64", [-1]),
    ]


@pytest.mark.parametrize("batch", [1, 7, MAX_BATCH])
def test_raw_inference_equals_onnxruntime(client, artifacts, batch):
    x = images(batch, seed=batch)
    response = client.ModelInfer(raw_request(MODEL, x, id=f"req-{batch}"))
    assert response.id == f"req-{batch}"
    assert response.model_name == MODEL
    assert not any(out.HasField("contents") for out in response.outputs)
    got = decode_outputs(response)
    want = expected(artifacts, "digits", x)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got["predicted_class"], want["predicted_class"])
    assert got["probabilities"].shape == (batch, 10)


def test_typed_contents_and_second_model(client, artifacts):
    x = images(5, seed=11)
    got = decode_outputs(client.ModelInfer(typed_request(MODEL, x)))
    np.testing.assert_array_equal(
        got["predicted_class"], expected(artifacts, "digits", x)["predicted_class"]
    )
    features = np.random.default_rng(3).normal(size=(4, 30)).astype(np.float32)
    got = decode_outputs(client.ModelInfer(raw_request("fixture_cancer", features)))
    want = expected(artifacts, "cancer", features)
    assert got["probabilities"].shape == (4, 2)
    np.testing.assert_array_equal(got["predicted_class"], want["predicted_class"])


def test_requested_output_subset(client):
    request = raw_request(MODEL, images(2))
    request.outputs.add(name="predicted_class")
    response = client.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["predicted_class"]
    assert len(response.raw_output_contents) == 1


def metric_sum(metrics_port: int, prefix: str) -> float:
    """The sum of the samples on the server's /metrics page whose line starts with prefix."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith(prefix)
    )


def test_concurrent_requests_are_batched_and_answered_correctly(client, artifacts, server):
    inputs = [images(1 + i % 3, seed=100 + i) for i in range(48)]
    rows = f'inference_batch_rows_sum{{model="{MODEL}"}}'
    rows_before = metric_sum(server.metrics_port, rows)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda x: client.ModelInfer(raw_request(MODEL, x)), inputs))
    # Every row went through onnxruntime once. (Whether requests shared a call depends on when
    # they arrived; the benchmark shows what batching saves.)
    assert metric_sum(server.metrics_port, rows) - rows_before == sum(len(x) for x in inputs)
    for x, response in zip(inputs, responses):
        want = expected(artifacts, "digits", x)
        got = decode_outputs(response)
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6)
        np.testing.assert_array_equal(got["predicted_class"], want["predicted_class"])


def error_of(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call(request)
    return e.value


def with_raw(request: pb.ModelInferRequest, raw: bytes) -> pb.ModelInferRequest:
    del request.raw_input_contents[:]
    request.raw_input_contents.append(raw)
    return request


@pytest.mark.parametrize(
    "make_request, code, fragments",
    [
        (
            lambda: raw_request("nope", images(1)),
            grpc.StatusCode.NOT_FOUND,
            ["'nope' is not served", MODEL],
        ),
        (
            lambda: raw_request(MODEL, images(1), model_version="v999"),
            grpc.StatusCode.NOT_FOUND,
            ["no version 'v999'"],
        ),
        (
            lambda: raw_request(MODEL, images(1), datatype="FP64"),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["expected datatype FP32", "received 'FP64'"],
        ),
        (
            lambda: raw_request(MODEL, np.zeros((2, 64), np.float32)),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["expected shape [-1, 1, 8, 8]", "received [2, 64]"],
        ),
        (
            lambda: raw_request(MODEL, images(MAX_BATCH + 1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            [f"batch size of 1 to {MAX_BATCH}", f"received {MAX_BATCH + 1}"],
        ),
        (
            lambda: with_raw(raw_request(MODEL, images(2)), images(1).tobytes()),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["expected 512 bytes", "received 256"],
        ),
        (
            lambda: raw_request(MODEL, images(1), name="pixels"),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["unknown input 'pixels'", "expected inputs ['input']"],
        ),
        (
            lambda: pb.ModelInferRequest(model_name=MODEL),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["missing input(s) ['input']"],
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "datatype",
        "shape",
        "batch-too-big",
        "raw-length",
        "wrong-name",
        "missing-input",
    ],
)
def test_invalid_requests(client, make_request, code, fragments):
    error = error_of(client.ModelInfer, make_request())
    assert error.code() == code
    for fragment in fragments:
        assert fragment in error.details()


def test_typed_element_count_mismatch(client):
    request = typed_request(MODEL, images(1))
    request.inputs[0].contents.fp32_contents.append(0.5)
    error = error_of(client.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 64 elements in contents.fp32_contents" in error.details()
    assert "received 65" in error.details()


def test_unknown_model_in_metadata_and_ready(client):
    for call, request in [
        (client.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
        (client.ModelReady, pb.ModelReadyRequest(name=MODEL, version="old")),
    ]:
        assert error_of(call, request).code() == grpc.StatusCode.NOT_FOUND


def test_oversized_message_is_resource_exhausted(client):
    big = raw_request(MODEL, np.zeros((MAX_MESSAGE // 256 + 1, 1, 8, 8), np.float32))
    assert error_of(client.ModelInfer, big).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_and_reflection(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", INFERENCE_SERVICE):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    channel.close()


def test_health_watch_streams_the_status(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE), timeout=10
    )
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    channel.close()


def test_metrics_endpoint(client, server):
    client.ModelInfer(raw_request(MODEL, images(1)))
    with pytest.raises(grpc.RpcError):
        client.ModelInfer(raw_request("nope", images(1)))
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value(f'inference_requests_total{{code="OK",method="ModelInfer",model="{MODEL}"}}') >= 1
    assert (
        value('inference_requests_total{code="NOT_FOUND",method="ModelInfer",model="_unknown"}')
        >= 1
    )
    assert value('inference_errors_total{code="NOT_FOUND",model="_unknown"}') >= 1
    assert value(f'inference_request_duration_seconds_count{{model="{MODEL}"}}') >= 1
    assert value(f'inference_queue_length_max{{model="{MODEL}"}}') >= 1
    for name in (
        "inference_in_flight_requests",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert any(line.startswith(name) for line in lines), name


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("batching, inline", [(False, False), (True, False), (False, True)])
def test_execution_modes_give_the_same_answers(artifacts, batching, inline, frontend):
    config = ServerConfig(
        frontend=frontend,
        model_dirs=(str(artifacts["digits"]),),
        port=0,
        insecure=True,
        batching=batching,
        inline=inline,
    )
    inputs = [images(1 + i % 4, seed=200 + i) for i in range(16)]
    with running_server(config) as server:
        client, channel = stub(server.port)
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda x: client.ModelInfer(raw_request(MODEL, x)), inputs))
        channel.close()
    for x, response in zip(inputs, responses):
        want = expected(artifacts, "digits", x)
        np.testing.assert_array_equal(
            decode_outputs(response)["predicted_class"], want["predicted_class"]
        )


def test_a_failing_model_call_is_internal_and_counted(artifacts, monkeypatch):
    config = ServerConfig(model_dirs=(str(artifacts["digits"]),), port=0, insecure=True)
    with running_server(config) as server:
        runner = server._runners[MODEL]

        def boom(inputs):
            raise RuntimeError("boom")

        monkeypatch.setattr(runner, "run_sync", boom)
        client, channel = stub(server.port)
        error = error_of(client.ModelInfer, raw_request(MODEL, images(2)))
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "inference failed: boom" in error.details()
        labels = {"model": MODEL, "code": "INTERNAL"}
        assert server.metrics.registry.get_sample_value("inference_errors_total", labels) == 1
        monkeypatch.undo()
        assert decode_outputs(client.ModelInfer(raw_request(MODEL, images(2))))
        channel.close()
