"""The model server: the Open Inference Protocol v2 over gRPC (grpc.aio), plus gRPC health and
server reflection, and Prometheus metrics over HTTP.

Run it with `./pants run serving:server -- --model-dir DIR --insecure` (see README.md, "Serving").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from serving.artifact import Artifact, ArtifactError, load_artifact
from serving.batcher import ModelRunner
from serving.codec import ModelCodec, RequestError
from serving.cpu_limit import CgroupError, default_workers
from serving.metrics import ServerMetrics
from serving.proto import open_inference_grpc_pb2 as pb
from serving.proto import open_inference_grpc_pb2_grpc as pb_grpc

SERVER_NAME = "ml-monorepo-serving"
SERVER_VERSION = "1"
PLATFORM = "onnxruntime_onnx"
SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
INFERENCE_SERVICE = SERVICE_DESCRIPTOR.full_name
UNKNOWN_MODEL = "_unknown"  # metrics label for names that are not served (bounded cardinality)
FRONTENDS = ("python", "node")


@dataclass(frozen=True)
class ServerConfig:
    model_dirs: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8001
    metrics_host: str | None = None
    metrics_port: int | None = None
    max_batch_size: int = 64
    max_message_bytes: int = 4 * 1024 * 1024
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False
    grace_seconds: float = 10.0
    drain_seconds: float = 0.0
    batching: bool = True
    inline: bool = True
    batch_workers: int = 1
    ort_threads: int = 1
    workers: int = 1
    # Set in each process of a server with several workers: the port is shared (SO_REUSEPORT)
    # and the metrics go to the parent (see serving.workers).
    shared_port: bool = False
    # "python" (this module) or "node" (serving/node: the same service on grpc-js and
    # onnxruntime-node, about a third of the CPU per request; see serving.node_frontend).
    frontend: str = "python"


class ConfigError(Exception):
    pass


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runners: dict[str, ModelRunner], metrics: ServerMetrics, max_batch: int):
        self._runners = runners
        self._metrics = metrics
        self._codecs = {name: ModelCodec(r.artifact, max_batch) for name, r in runners.items()}
        # The per-request metric series, looked up once instead of by labels on every request.
        self._ok = {name: metrics.requests.labels(name, "ModelInfer", "OK") for name in runners}
        self._latency = {name: metrics.latency.labels(name) for name in runners}
        self._in_flight = metrics.in_flight
        self.ready = False

    def _find(self, name: str, version: str) -> ModelRunner:
        runner = self._runners.get(name)
        if runner is None:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} is not served; served models: {sorted(self._runners)}",
            )
        if version and version != runner.artifact.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} has no version {version!r}; served version: "
                f"{runner.artifact.version}",
            )
        return runner

    def _label(self, name: str) -> str:
        return name if name in self._runners else UNKNOWN_MODEL

    async def _fail(self, context, model: str, method: str, error: RequestError):
        self._metrics.requests.labels(model, method, error.code.name).inc()
        self._metrics.errors.labels(model, error.code.name).inc()
        await context.abort(error.code, error.message)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.ready)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])

    async def ModelReady(self, request, context):
        label = self._label(request.name)
        try:
            self._find(request.name, request.version)
        except RequestError as e:
            await self._fail(context, label, "ModelReady", e)
        self._metrics.requests.labels(label, "ModelReady", "OK").inc()
        return pb.ModelReadyResponse(ready=self.ready)

    async def ModelMetadata(self, request, context):
        label = self._label(request.name)
        try:
            artifact = self._find(request.name, request.version).artifact
        except RequestError as e:
            await self._fail(context, label, "ModelMetadata", e)
        self._metrics.requests.labels(label, "ModelMetadata", "OK").inc()
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=artifact.name,
            versions=[artifact.version],
            platform=PLATFORM,
            inputs=[
                tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in artifact.inputs
            ],
            outputs=[
                tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in artifact.outputs
            ],
        )

    async def ModelInfer(self, data: bytes, context):
        """The hot path: parses the request itself (see `_parse`), one dict lookup per metric."""
        start = time.perf_counter()
        request = await _parse(pb.ModelInferRequest, data, context)
        name = request.model_name
        self._in_flight.inc()
        try:
            runner = self._find(name, request.model_version)
            codec = self._codecs[name]
            inputs = codec.decode_inputs(request)
            specs = codec.requested_outputs(request)
            outputs = await runner.infer(inputs)
            response = codec.encode_response(request.id, specs, outputs)
        except RequestError as e:
            await self._fail(context, self._label(name), "ModelInfer", e)
        except Exception as e:  # onnxruntime failing on input that passed validation
            error = RequestError(grpc.StatusCode.INTERNAL, f"inference failed: {e}")
            await self._fail(context, self._label(name), "ModelInfer", error)
        finally:
            self._in_flight.dec()
            latency = self._latency.get(name) or self._metrics.latency.labels(UNKNOWN_MODEL)
            latency.observe(time.perf_counter() - start)
        self._ok[name].inc()
        return response


async def _parse(request_type, data: bytes, context):
    """Parses a request: grpc would answer an undecodable message with UNKNOWN (and log a
    traceback); the protocol's answer is INVALID_ARGUMENT."""
    try:
        return request_type.FromString(data)
    except DecodeError as e:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {request_type.DESCRIPTOR.full_name}: {e}",
        )


def _decoding(method, request_type):
    """Wraps a servicer method to parse its request with `_parse`."""

    async def handler(data: bytes, context):
        return await method(await _parse(request_type, data, context), context)

    return handler


def inference_service_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The GRPCInferenceService's method handlers (the generated servicer's methods), parsing
    requests with `_parse` (ModelInfer does it itself, one coroutine fewer on the hot path)."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            servicer.ModelInfer
            if method.name == "ModelInfer"
            else _decoding(getattr(servicer, method.name), getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in SERVICE_DESCRIPTOR.methods
    }
    return grpc.method_handlers_generic_handler(INFERENCE_SERVICE, handlers)


def check_config(config: ServerConfig) -> None:
    """Raises ConfigError for flags that cannot work together (before any model is loaded)."""
    if not config.insecure and not (config.tls_cert and config.tls_key):
        raise ConfigError("give --tls-cert and --tls-key, or --insecure to serve plaintext gRPC")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if config.max_batch_size < 1:
        raise ConfigError("--max-batch-size must be at least 1")
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not config.model_dirs:
        raise ConfigError("give at least one --model-dir")
    if config.frontend not in FRONTENDS:
        raise ConfigError(f"--frontend {config.frontend!r} is not one of {', '.join(FRONTENDS)}")
    if config.frontend == "node" and config.inline and config.batch_workers != 1:
        raise ConfigError(
            "--batch-workers needs --execution thread with the Node front end (inline, the event "
            "loop makes one onnxruntime call at a time)"
        )


def load_artifacts(config: ServerConfig) -> dict[str, Artifact]:
    """Every artifact of the config, verified; two with one name are an error."""
    artifacts: dict[str, Artifact] = {}
    for directory in config.model_dirs:
        artifact = load_artifact(directory, intra_op_threads=config.ort_threads)
        if artifact.name in artifacts:
            raise ArtifactError(
                Path(directory) / "model.json",
                f"model name {artifact.name!r} is also served from "
                f"{artifacts[artifact.name].directory}",
            )
        artifacts[artifact.name] = artifact
    return artifacts


class ModelServer:
    """Loads and verifies every artifact, then serves them; `start()`/`stop()` run in one loop."""

    def __init__(self, config: ServerConfig) -> None:
        check_config(config)
        self.config = config
        self.metrics = ServerMetrics(worker=config.shared_port)
        self.artifacts = load_artifacts(config)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._httpd = None
        self._runners: dict[str, ModelRunner] = {}
        self._servicer: InferenceServicer | None = None
        self._stopped = asyncio.Event()
        self._stopping = False

    def _runner(self, artifact: Artifact) -> ModelRunner:
        batch_major = all(s.shape[0] == -1 for s in (*artifact.inputs, *artifact.outputs))
        return ModelRunner(
            artifact,
            max_batch_size=self.config.max_batch_size,
            batching=self.config.batching and batch_major,
            inline=self.config.inline,
            workers=self.config.batch_workers,
            on_queue_length=lambda n, name=artifact.name: self.metrics.observe_queue(name, n),
            on_batch=self.metrics.batch_size.labels(artifact.name).observe,
        )

    async def start(self, ready: bool = True) -> None:
        """Listens; `ready=False` answers requests but reports not ready until `set_ready`."""
        config = self.config
        self._runners = {name: self._runner(a) for name, a in self.artifacts.items()}
        for runner in self._runners.values():
            runner.start()
        self._servicer = InferenceServicer(self._runners, self.metrics, config.max_batch_size)
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # Several worker processes share the port; a single server must not share it
                # with a stale server left on the same port.
                ("grpc.so_reuseport", 1 if config.shared_port else 0),
            ]
        )
        self._server.add_generic_rpc_handlers((inference_service_handler(self._servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        address = f"{config.host}:{config.port}"
        if config.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())]
            )
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        if config.metrics_port is not None:
            self._httpd = self.metrics.serve_http(
                config.metrics_host or config.host, config.metrics_port
            )
            self.metrics_port = self._httpd.server_address[1]
        await self._server.start()
        await self.set_ready(ready)

    async def set_ready(self, ready: bool) -> None:
        """ServerReady, ModelReady and the health service's answer."""
        assert self._servicer is not None, "start() the server first"
        if self._stopping:
            return  # stopping is final
        self._servicer.ready = ready
        status = health_pb2.HealthCheckResponse
        for service in ("", INFERENCE_SERVICE):
            await self._health.set(service, status.SERVING if ready else status.NOT_SERVING)

    async def stop(self) -> None:
        """Graceful stop: report not ready, drain, let in-flight requests finish, then close."""
        self._stopping = True
        if self._servicer is not None:
            self._servicer.ready = False
        await self._health.enter_graceful_shutdown()  # every service NOT_SERVING
        if self.config.drain_seconds > 0:
            await asyncio.sleep(self.config.drain_seconds)
        if self._server is not None:
            await self._server.stop(self.config.grace_seconds)
        for runner in self._runners.values():
            await runner.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def parse_args(argv: Sequence[str]) -> ServerConfig:
    parser = argparse.ArgumentParser(
        prog="serving", description="Open Inference Protocol v2 gRPC server for ONNX artifacts."
    )
    parser.add_argument(
        "--model-dir",
        action="append",
        required=True,
        help="An artifact directory (model.onnx + model.json); repeat to serve several models.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on (default %(default)s)."
    )
    parser.add_argument("--port", type=int, default=8001, help="gRPC port; 0 picks a free one.")
    parser.add_argument("--metrics-host", default=None, help="Metrics address (default: --host).")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus /metrics HTTP port (off if unset).",
    )
    parser.add_argument("--max-batch-size", type=int, default=64, help="Most rows per request.")
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="Largest request/response; larger ones get RESOURCE_EXHAUSTED.",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain for TLS.")
    parser.add_argument("--tls-key", help="PEM private key for TLS.")
    parser.add_argument(
        "--insecure", action="store_true", help="Serve plaintext gRPC (required without TLS)."
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="On SIGTERM/SIGINT, how long in-flight requests may take to finish.",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="On SIGTERM, keep serving this long while reporting NOT_SERVING (for load balancers).",
    )
    parser.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="Run every request on its own instead of batching concurrent requests.",
    )
    parser.add_argument(
        "--execution",
        choices=["thread", "inline"],
        default="inline",
        help="Run onnxruntime inline on the event loop (default: the least CPU per request; "
        "one process uses one core, --workers adds cores) or in a worker thread (the loop keeps "
        "receiving requests during long calls).",
    )
    parser.add_argument(
        "--batch-workers", type=int, default=1, help="Concurrent onnxruntime calls per model."
    )
    parser.add_argument(
        "--ort-threads", type=int, default=1, help="onnxruntime intra-op threads per call."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Server processes sharing the port, each loading the models once (default: the "
        "whole CPUs of the container's cgroup CPU limit, else the CPUs available).",
    )
    parser.add_argument(
        "--frontend",
        choices=FRONTENDS,
        default="python",
        help="The process that serves: this Python one, or serving/node (grpc-js and "
        "onnxruntime-node: the same service for about a third of the CPU per request; needs "
        "Node.js 18 or newer and its npm packages: see the README's Serving section).",
    )
    args = parser.parse_args(argv)
    return ServerConfig(
        model_dirs=tuple(args.model_dir),
        host=args.host,
        port=args.port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        max_batch_size=args.max_batch_size,
        max_message_bytes=args.max_message_bytes,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        insecure=args.insecure,
        grace_seconds=args.grace_seconds,
        drain_seconds=args.drain_seconds,
        batching=args.batching,
        inline=args.execution == "inline",
        batch_workers=args.batch_workers,
        ort_threads=args.ort_threads,
        workers=default_workers() if args.workers is None else args.workers,
        frontend=args.frontend,
    )


async def serve(server: ModelServer) -> None:
    await server.start()
    models = ", ".join(f"{a.name}@{a.version[:12]}" for a in server.artifacts.values())
    metrics = f", metrics on port {server.metrics_port}" if server.metrics_port else ""
    print(
        f"serving {models} on {server.config.host}:{server.port}{metrics}",
        file=sys.stderr,
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task] = []

    def on_signal(signum: int) -> None:
        if not stopping:
            print(f"received signal {signum}; shutting down", file=sys.stderr, flush=True)
            stopping.append(loop.create_task(server.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await server.wait_stopped()
    print("stopped", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
        if config.frontend == "node":
            from serving.node_frontend import exec_node

            exec_node(config)  # returns only on an error
        if config.workers > 1:
            from serving.workers import serve_workers  # the supervisor imports this module

            return serve_workers(config)
        server = ModelServer(config)
    except (ArtifactError, ConfigError, CgroupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(server))
    return 0


if __name__ == "__main__":
    # `python -m serving.server`: run the importable module's main, so that its classes are the
    # ones serving.workers imports (as __main__, this file would be a second copy of them).
    from serving import server

    sys.exit(server.main())
