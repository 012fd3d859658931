"""Load benchmark of the model server over loopback, next to a plain in-process onnxruntime loop.

Run by hand (not a test):

    ./pants run serving/bench:benchmark -- [--model-dir DIR] [--duration 5] [--server-arg=--no-batching]

It starts the server as a subprocess on 127.0.0.1 (a fixture model unless --model-dir is given),
drives it at each concurrency (1, 8, 32) with single-image and batch-32 requests for a fixed time,
and prints throughput, latency percentiles and errors. Load goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.testsupport import raw_request, server_process, wait_for_ports


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


async def _drive(port: int, payload: bytes, concurrency: int, duration: float) -> dict:
    """`concurrency` coroutines sending the pre-serialized request back to back on one channel."""
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        await call(payload, timeout=10)  # warm the connection
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                start = time.perf_counter()
                if start >= deadline:
                    return
                try:
                    await call(payload, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "errors": errors}


def _client_process(args: tuple) -> dict:
    port, payload, concurrency, duration = args
    return asyncio.run(_drive(port, payload, concurrency, duration))


def load(port: int, payload: bytes, concurrency: int, duration: float, processes: int) -> dict:
    """Splits the concurrency over `processes` client processes (one Python client saturates a core)."""
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    shares = [s for s in shares if s]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(shares)) as pool:
        parts = pool.map(_client_process, [(port, payload, s, duration) for s in shares])
    elapsed = time.perf_counter() - started
    latencies = [lat for part in parts for lat in part["latencies"]]
    return {
        "requests": len(latencies),
        "errors": sum(p["errors"] for p in parts),
        "elapsed": min(elapsed, duration + 0.5),
        "percentiles": percentiles(latencies),
    }


def in_process(model_dir: Path, batch: int, duration: float, input_shape) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options)
    x = np.random.default_rng(0).random((batch, *input_shape[1:]), dtype=np.float32)
    latencies = []
    deadline = time.perf_counter() + duration
    while (start := time.perf_counter()) < deadline:
        session.run(None, {"input": x})
        latencies.append(time.perf_counter() - start)
    return {
        "requests": len(latencies),
        "errors": 0,
        "elapsed": duration,
        "percentiles": percentiles(latencies),
    }


def row(label: str, concurrency: int, batch: int, result: dict) -> str:
    rps = result["requests"] / result["elapsed"]
    p50, p95, p99 = result["percentiles"]
    cpu = result.get("server_cpu")
    cpu_text = (
        f"{100 * cpu / result['elapsed']:>7.0f}% {1000 * cpu / max(result['requests'], 1):>7.3f}"
        if cpu is not None
        else f"{'-':>8} {'-':>7}"
    )
    return (
        f"{label:<10} {concurrency:>4} {batch:>5} {rps:>10.0f} {rps * batch:>12.0f} "
        f"{p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {result['errors']:>6} {cpu_text}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="Artifact to serve (default: a generated fixture).")
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per measurement.")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument(
        "--server-arg", action="append", default=[], help="Extra server flag (repeatable)."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else write_artifact(Path(tmp) / "m")
        meta = json.loads((model_dir / "model.json").read_text())
        name = meta["name"]
        input_shape = meta["signature"]["inputs"][0]["shape"]
        process = server_process(
            "--model-dir", str(model_dir), "--insecure", "--port", "0", *args.server_arg
        )
        try:
            port, _ = wait_for_ports(process)
            print(
                f"server pid {process.pid}, flags {args.server_arg or '(defaults)'}; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
                f"{args.duration:.0f} s per row"
            )
            print(
                f"{'mode':<10} {'conc':>4} {'batch':>5} {'req/s':>10} {'images/s':>12} "
                f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'srv CPU':>8} {'ms/req':>7}"
            )
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(1).random((batch, *input_shape[1:]), dtype=np.float32)
                payload = raw_request(name, x).SerializeToString()
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    cpu_before = cpu_seconds(process.pid)
                    result = load(port, payload, concurrency, args.duration, args.client_processes)
                    result["server_cpu"] = cpu_seconds(process.pid) - cpu_before
                    print(row("grpc", concurrency, batch, result), flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        for batch in (int(b) for b in args.batches.split(",")):
            print(
                row(
                    "in-process", 1, batch, in_process(model_dir, batch, args.duration, input_shape)
                )
            )
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (the CPUs are shared)")


if __name__ == "__main__":
    main()
