"""Property test: random and malformed requests get a clean, expected status code, and the server
answers a valid request correctly afterwards."""

from __future__ import annotations

import math

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import FRONTENDS, ServerConfig
from serving.testsupport import decode_outputs, raw_request, running_server, stub

MODEL = "fixture_digits"
MAX_BATCH = 16
MAX_MESSAGE = 64 * 1024
CLEAN_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module", params=FRONTENDS)
def served(tmp_path_factory, request):
    model = write_artifact(tmp_path_factory.mktemp("fuzz") / "m", MODEL)
    config = ServerConfig(
        frontend=request.param,
        model_dirs=(str(model),),
        port=0,
        insecure=True,
        max_batch_size=MAX_BATCH,
        max_message_bytes=MAX_MESSAGE,
    )
    with running_server(config) as server:
        client, channel = stub(server.port)
        yield server, client, channel, model
        channel.close()


dims = st.one_of(st.sampled_from([-1, 0, 1, 8, 64]), st.integers(-(2**40), 2**40))
shapes = st.one_of(
    st.builds(lambda n: [n, 1, 8, 8], st.integers(-2, MAX_BATCH + 2)),
    st.lists(dims, max_size=5),
)


@st.composite
def tensors(draw):
    shape = draw(shapes)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=draw(st.sampled_from(["input", "input", "", "x"])),
        datatype=draw(st.sampled_from(["FP32", "FP32", "FP64", "INT64", "BYTES", "fp32", ""])),
        shape=shape,
    )
    if draw(st.booleans()):
        count = math.prod(shape) if all(0 <= d <= 1024 for d in shape) else 3
        count = draw(st.sampled_from([count, max(count - 1, 0), count + 1]))
        if count <= 4096:
            tensor.contents.fp32_contents.extend(
                draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
            )
        if draw(st.booleans()):
            tensor.contents.int64_contents.append(draw(st.integers(-(2**63), 2**63 - 1)))
    return tensor


@st.composite
def requests(draw):
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from([MODEL, MODEL, MODEL, "other", ""])),
        model_version=draw(st.sampled_from(["", "", "1", "x" * 64])),
        id=draw(st.text(max_size=8)),
        inputs=draw(st.lists(tensors(), max_size=3)),
    )
    if draw(st.booleans()):
        for tensor in request.inputs:
            n = math.prod(tensor.shape) * 4 if all(0 <= d <= 64 for d in tensor.shape) else 4
            n = draw(st.sampled_from([n, max(n - 1, 0), n + 4, 0]))
            request.raw_input_contents.append(draw(st.binary(min_size=n, max_size=n)))
        if draw(st.booleans()):
            request.raw_input_contents.append(b"\0" * 4)
    for name in draw(
        st.lists(st.sampled_from(["probabilities", "predicted_class", "nope"]), max_size=2)
    ):
        request.outputs.add(name=name)
    return request


def check_valid_answer(client, model) -> None:
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    got = decode_outputs(client.ModelInfer(raw_request(MODEL, x), timeout=10))
    session = ort.InferenceSession(str(model / "model.onnx"))
    probabilities, predicted = session.run(None, {"input": x})
    np.testing.assert_allclose(got["probabilities"], probabilities, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got["predicted_class"], predicted)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_random_requests_get_clean_answers(served, request):
    _, client, _, _ = served
    try:
        response = client.ModelInfer(request, timeout=10)
    except grpc.RpcError as e:
        assert e.code() in CLEAN_ERRORS, (e.code(), e.details())
        assert e.details()
        return
    # Accepted: it must have been a well-formed request for the model.
    assert response.model_name == MODEL
    batch = request.inputs[0].shape[0]
    for out, raw in zip(response.outputs, response.raw_output_contents):
        assert out.shape[0] == batch
        assert len(raw) == math.prod(out.shape) * (4 if out.datatype == "FP32" else 8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes_do_not_break_the_server(served, payload):
    _, _, channel, _ = served
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    try:
        call(payload, timeout=10)
    except grpc.RpcError as e:
        assert e.code() in CLEAN_ERRORS, (e.code(), e.details())
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in e.details():
            assert "inference.ModelInferRequest" in e.details()


def test_server_answers_correctly_after_fuzzing(served):
    _, client, _, model = served
    check_valid_answer(client, model)
