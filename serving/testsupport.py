"""Helpers shared by the server's tests and the benchmark: a running server (the Python front end
in-process on its own event loop thread, the Node front end as a process), a client stub, and
request builders."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np

from serving.artifact import Artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.proto import open_inference_grpc_pb2_grpc as pb_grpc
from serving.server import ModelServer, ServerConfig, load_artifacts


@dataclasses.dataclass
class ServerProcess:
    """A server run as `python -m serving.server` (what `running_server` gives for Node)."""

    process: subprocess.Popen
    port: int
    metrics_port: int | None
    artifacts: dict[str, Artifact]


def config_args(config: ServerConfig) -> list[str]:
    """The command-line flags that give `config`."""
    args = [arg for directory in config.model_dirs for arg in ("--model-dir", directory)]
    args += ["--host", config.host, "--port", str(config.port), "--frontend", config.frontend]
    args += ["--max-batch-size", str(config.max_batch_size)]
    args += ["--max-message-bytes", str(config.max_message_bytes)]
    args += ["--grace-seconds", str(config.grace_seconds)]
    args += ["--drain-seconds", str(config.drain_seconds)]
    args += ["--ort-threads", str(config.ort_threads), "--workers", str(config.workers)]
    if config.metrics_port is not None:
        args += ["--metrics-port", str(config.metrics_port)]
    if config.metrics_host is not None:
        args += ["--metrics-host", config.metrics_host]
    if config.tls_cert and config.tls_key:
        args += ["--tls-cert", config.tls_cert, "--tls-key", config.tls_key]
    if config.insecure:
        args.append("--insecure")
    if not config.batching:
        args.append("--no-batching")
    if not config.inline:
        args += ["--execution", "thread"]
    if config.batch_workers != 1:
        args += ["--batch-workers", str(config.batch_workers)]
    return args


@contextlib.contextmanager
def running_server(config: ServerConfig) -> Iterator[ModelServer | ServerProcess]:
    """A started server (port 0 picks a free port: read `server.port`), stopped on exit."""
    config = dataclasses.replace(config, host="127.0.0.1")
    if config.frontend != "python":
        with serving_process(config) as server:
            yield server
        return
    server = ModelServer(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="server-loop", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def stub(port: int, credentials: grpc.ChannelCredentials | None = None, **options):
    target = f"127.0.0.1:{port}"
    opts = list(options.items())
    if credentials is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        channel = grpc.secure_channel(target, credentials, options=opts)
    return pb_grpc.GRPCInferenceServiceStub(channel), channel


def raw_request(
    model: str, x: np.ndarray, *, name: str = "input", datatype: str = "FP32", **fields
) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=x.shape)],
        raw_input_contents=[np.ascontiguousarray(x, dtype="<f4").tobytes()],
        **fields,
    )


def typed_request(model: str, x: np.ndarray) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    return {
        out.name: np.frombuffer(raw, dtype=dtypes[out.datatype]).reshape(out.shape)
        for out, raw in zip(response.outputs, response.raw_output_contents)
    }


def server_process(
    *args: str,
    first_path: str | None = None,
    module: str = "serving.server",
    env: dict[str, str] | None = None,
    **popen,
) -> subprocess.Popen:
    """`python -m serving.server ARGS` (or another `module`) with this process's import path
    (after `first_path`, to run another copy of `serving`) and `env` (default: this process's);
    stderr is piped.

    `-P`: the working directory (e.g. the repository, without generated stubs, under
    `pants run`) must not come before that path.
    """
    path = [first_path] if first_path else []
    pythonpath = os.pathsep.join([*path, *(p for p in sys.path if p)])
    env = {**(os.environ if env is None else env), "PYTHONPATH": pythonpath}
    return subprocess.Popen(
        [sys.executable, "-P", "-m", module, *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_ports(process: subprocess.Popen) -> tuple[int, int | None]:
    """Reads the server's stderr until its `serving ... on HOST:PORT[, metrics on port N]` line;
    returns the gRPC and metrics ports."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        if line.startswith("serving "):
            address, _, metrics = line.strip().split(" on ", 1)[1].partition(", metrics on port ")
            return int(address.rsplit(":", 1)[1]), int(metrics) if metrics else None
        seen.append(line)
    raise AssertionError(f"server exited ({process.wait()}) before serving:\n{''.join(seen)}")


@contextlib.contextmanager
def serving_process(config: ServerConfig) -> Iterator[ServerProcess]:
    process = server_process(*config_args(config))
    try:
        port, metrics_port = wait_for_ports(process)
        yield ServerProcess(process, port, metrics_port, load_artifacts(config))
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def metric_value(metrics_port: int, name: str) -> float:
    """The value of an unlabelled sample on the server's /metrics page."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    raise KeyError(name)
