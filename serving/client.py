"""A minimal KServe v2 gRPC client: sends held-out digits to a server and checks the answers.

    ./pants run serving:client -- --port 8001 --model digits_cnn_torch

Exits non-zero if the server is not ready or gets fewer than `--min-accuracy` right, so it also
serves as a deployment smoke test (infra/deploy: SMOKE_INFER_CMD).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
import numpy as np

from models.common.datasets import load_dataset, split_dataset
from serving.proto import open_inference_grpc_pb2 as pb
from serving.proto import open_inference_grpc_pb2_grpc as pb_grpc


def infer(stub: pb_grpc.GRPCInferenceServiceStub, model: str, images: np.ndarray) -> np.ndarray:
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    spec = metadata.inputs[0]
    # The model's declared layout: NCHW [-1, 1, 8, 8] (torch) or NHWC [-1, 8, 8, 1] (Keras).
    shape = [len(images) if d == -1 else d for d in spec.shape]
    batch = images.reshape(shape).astype("<f4")
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=spec.name, datatype="FP32", shape=shape)
        ],
        raw_input_contents=[batch.tobytes()],
    )
    response = stub.ModelInfer(request, timeout=30)
    index = [o.name for o in response.outputs].index("predicted_class")
    return np.frombuffer(response.raw_output_contents[index], dtype="<i8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="digits_cnn_torch")
    parser.add_argument("--dataset", type=Path, default=Path("models/datasets/digits.npz"))
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--min-accuracy", type=float, default=0.9)
    args = parser.parse_args(argv)

    test = split_dataset(load_dataset(args.dataset), seed=0).test
    images, labels = test.features[: args.count], test.labels[: args.count]
    with grpc.insecure_channel(f"{args.host}:{args.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        if not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready:
            print("server is not ready", file=sys.stderr)
            return 1
        predicted = infer(stub, args.model, images)
    accuracy = float(np.mean(predicted == labels))
    print(
        f"{args.model}: {int(np.sum(predicted == labels))}/{len(labels)} correct ({accuracy:.3f})"
    )
    print("predicted:", " ".join(map(str, predicted)))
    print("labels:   ", " ".join(map(str, labels)))
    return 0 if accuracy >= args.min_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
