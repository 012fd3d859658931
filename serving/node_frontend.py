"""`--frontend node`: the server's flags and artifacts are checked here, as for the Python front
end, then this process becomes `node serving/node/main.js` (exec: the same pid, so signals,
exit status and a container's PID 1 stay as they were), which serves what it is handed.

Node.js is found as $SERVING_NODE, else `node` on PATH; the front end's code (main.js) as
$SERVING_NODE_DIR, else `node/` beside this file; its npm packages as $SERVING_NODE_MODULES, else
`node_modules/` beside main.js (given to Node as NODE_PATH).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import ConfigError, ServerConfig, check_config, load_artifacts

MIN_NODE_MAJOR = 18
SPEC_ENV = "SERVING_NODE_SPEC"


def descriptor_set() -> bytes:
    """The inference and health services' descriptors, for protobufjs and server reflection (the
    .proto files themselves are not shipped with the Python package)."""
    files = descriptor_pb2.FileDescriptorSet()
    for module in (pb, health_pb2):
        module.DESCRIPTOR.CopyToProto(files.file.add())
    return files.SerializeToString()


def find_node() -> str:
    node = os.environ.get("SERVING_NODE") or shutil.which("node")
    if not node:
        raise ConfigError(
            f"--frontend node needs Node.js {MIN_NODE_MAJOR} or newer: none on PATH "
            "(install it, or set SERVING_NODE to its path)"
        )
    try:
        # Without NODE_OPTIONS: some of its flags (--cpu-prof) make `--version` fail.
        env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True, env=env
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise ConfigError(f"--frontend node: cannot run {node} --version: {e}") from None
    if major < MIN_NODE_MAJOR:
        raise ConfigError(
            f"--frontend node needs Node.js {MIN_NODE_MAJOR} or newer; {node} is {version}"
        )
    return node


def frontend_dir() -> Path:
    directory = Path(os.environ.get("SERVING_NODE_DIR") or Path(__file__).parent / "node")
    if not (directory / "main.js").is_file():
        raise ConfigError(f"--frontend node: {directory / 'main.js'} is missing")
    return directory


def node_modules(directory: Path) -> Path:
    """Where the npm packages are: $SERVING_NODE_MODULES, else node_modules/ beside main.js."""
    modules = Path(os.environ.get("SERVING_NODE_MODULES") or directory / "node_modules")
    if not (modules / "@grpc" / "grpc-js").is_dir():
        raise ConfigError(
            f"--frontend node: its npm packages are missing from {modules} (Pants builds them "
            "from serving/node/npm-pins.json: depend on //serving/node:node_modules, or run "
            "`./pants export-codegen serving/node:node_modules` and set SERVING_NODE_MODULES="
            "dist/codegen/serving/node/node_modules)"
        )
    return modules.resolve()


def node_spec(config: ServerConfig) -> dict:
    """What main.js serves: the flags and every verified artifact's signature and digest."""
    artifacts = load_artifacts(config)
    tensors = lambda specs: [  # noqa: E731
        {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs
    ]
    models = []
    for artifact in artifacts.values():
        meta = json.loads((artifact.directory / "model.json").read_text())["artifact"]
        models.append(
            {
                "name": artifact.name,
                "version": artifact.version,
                "directory": str(artifact.directory.resolve()),
                "file": meta["file"],
                "sha256": meta["sha256"],
                "size": meta["size"],
                "inputs": tensors(artifact.inputs),
                "outputs": tensors(artifact.outputs),
            }
        )
    return {
        "host": config.host,
        "port": config.port,
        "metrics_host": config.metrics_host,
        "metrics_port": config.metrics_port,
        "max_batch_size": config.max_batch_size,
        "batching": config.batching,
        "max_message_bytes": config.max_message_bytes,
        "tls_cert": config.tls_cert,
        "tls_key": config.tls_key,
        "grace_seconds": config.grace_seconds,
        "drain_seconds": config.drain_seconds,
        "workers": config.workers,
        "ort_threads": config.ort_threads,
        # Threads per model running onnxruntime off the event loop; 0: inline on it.
        "execution_threads": 0 if config.inline else config.batch_workers,
        "descriptors": base64.b64encode(descriptor_set()).decode(),
        "models": models,
    }


def exec_node(config: ServerConfig) -> None:
    """Replaces this process with the Node front end; raises ConfigError/ArtifactError first."""
    check_config(config)
    node = find_node()
    directory = frontend_dir()
    modules = node_modules(directory)
    spec = json.dumps(node_spec(config))
    # onnxruntime-node's library sends usage telemetry over HTTPS unless told not to: a server
    # does not phone home (an operator who wants it sets ORT_DISABLE_TELEMETRY=0).
    env = {"ORT_DISABLE_TELEMETRY": "1", **os.environ, SPEC_ENV: spec, "NODE_PATH": str(modules)}
    os.execve(node, [node, str(directory / "main.js")], env)
