"""The generated messages carry the Open Inference Protocol's names and field numbers: a changed
number would still round-trip with our own stubs but break every standard client."""

from __future__ import annotations

from serving.proto import open_inference_grpc_pb2 as pb
from serving.proto import open_inference_grpc_pb2_grpc as pb_grpc

# message -> {field: number}, from the protocol specification.
SPEC = {
    "ServerLiveResponse": {"live": 1},
    "ServerReadyResponse": {"ready": 1},
    "ModelReadyRequest": {"name": 1, "version": 2},
    "ModelReadyResponse": {"ready": 1},
    "ServerMetadataResponse": {"name": 1, "version": 2, "extensions": 3},
    "ModelMetadataRequest": {"name": 1, "version": 2},
    "ModelMetadataResponse": {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5},
    "ModelMetadataResponse.TensorMetadata": {"name": 1, "datatype": 2, "shape": 3},
    "ModelInferRequest": {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    },
    "ModelInferRequest.InferInputTensor": {
        "name": 1,
        "datatype": 2,
        "shape": 3,
        "parameters": 4,
        "contents": 5,
    },
    "ModelInferRequest.InferRequestedOutputTensor": {"name": 1, "parameters": 2},
    "ModelInferResponse": {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "outputs": 5,
        "raw_output_contents": 6,
    },
    "ModelInferResponse.InferOutputTensor": {
        "name": 1,
        "datatype": 2,
        "shape": 3,
        "parameters": 4,
        "contents": 5,
    },
    "InferParameter": {
        "bool_param": 1,
        "int64_param": 2,
        "string_param": 3,
        "double_param": 4,
        "uint64_param": 5,
    },
    "InferTensorContents": {
        "bool_contents": 1,
        "int_contents": 2,
        "int64_contents": 3,
        "uint_contents": 4,
        "uint64_contents": 5,
        "fp32_contents": 6,
        "fp64_contents": 7,
        "bytes_contents": 8,
    },
}


def test_package_service_and_methods() -> None:
    assert pb.DESCRIPTOR.package == "inference"
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        name: (f"{name}Request", f"{name}Response")
        for name in (
            "ServerLive",
            "ServerReady",
            "ModelReady",
            "ServerMetadata",
            "ModelMetadata",
            "ModelInfer",
        )
    }
    assert hasattr(pb_grpc, "GRPCInferenceServiceStub")


def test_field_names_and_numbers_follow_the_specification() -> None:
    for message, fields in SPEC.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message.split(".")[0]]
        for nested in message.split(".")[1:]:
            descriptor = descriptor.nested_types_by_name[nested]
        actual = {f.name: f.number for f in descriptor.fields}
        assert actual == fields, message
