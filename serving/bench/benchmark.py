"""Load benchmark of the model server over loopback: requests/s, latency percentiles, and the CPU
time both the server and the load generator spend per request.

Run by hand (not a test: it loads the machine):

    ./pants run serving/bench:benchmark -- --model-dir DIR [--workers 1,2] [--rounds 3]
        [--compare-pythonpath /tmp/main-copy]

Each configuration starts the server as a subprocess on 127.0.0.1 (a fixture model unless
--model-dir is given) and drives it with single-image and 32-image requests for a fixed time.
The load generator is one asyncio process per `--client-processes`, sending pre-serialized request
bytes over `--channels` connections (one HTTP/2 connection reaches one worker, so several are
needed to spread load over workers) and comparing each answer byte for byte with the first one,
so a wrong answer counts as an error. Its own CPU use is printed: near 100 % of a core per client
process, the run is client-bound. `--compare-pythonpath` adds the same runs against another copy
of the `serving` package (e.g. main's), interleaved round by round so both see the same load from
other users of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from serving.fixtures import write_artifact
from serving.testsupport import raw_request, server_process, wait_for_ports

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and all its descendants alive now, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat_fields(int(entry))[1])
            except (OSError, IndexError):
                continue  # exited meanwhile
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for pid in tree:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


async def _drive(port: int, payload: bytes, concurrency: int, channels: int, duration: float):
    """`concurrency` coroutines sending `payload` back to back, spread over `channels` separate
    connections; an answer that differs from the first one is an error."""
    identity = lambda b: b  # noqa: E731 -- bytes in, bytes out: no protobuf work in the client
    opened = [
        # A local subchannel pool: each channel opens its own connection instead of sharing one.
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(channels)
    ]
    calls = [ch.unary_unary(MODEL_INFER, identity, identity) for ch in opened]
    expected = await calls[0](payload, timeout=10)
    await asyncio.gather(*(call(payload, timeout=10) for call in calls))  # connect every channel
    latencies: list[float] = []
    errors = 0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.perf_counter() + duration

    async def sender(call) -> None:
        nonlocal errors
        while (start := time.perf_counter()) < deadline:
            try:
                answer = await call(payload, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if answer == expected:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    await asyncio.gather(*(sender(calls[i % channels]) for i in range(concurrency)))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for ch in opened:
        await ch.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"latencies": latencies, "errors": errors, "client_cpu": cpu}


def _client_process(args: tuple) -> dict:
    return asyncio.run(_drive(*args))


@dataclass
class Result:
    requests: int
    errors: int
    elapsed: float
    server_cpu: float
    client_cpu: float
    percentiles: tuple[float, float, float]
    load_average: float


def load(server_pid: int, port: int, payload: bytes, args: argparse.Namespace) -> Result:
    """Splits the concurrency and the channels over the client processes."""
    n = args.client_processes
    share = lambda total, i: total // n + (i < total % n)  # noqa: E731
    jobs = [
        (port, payload, share(args.concurrency, i), max(1, share(args.channels, i)), args.duration)
        for i in range(n)
    ]
    load_average = os.getloadavg()[0]
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        warm = pool.map_async(_client_process, [(*job[:4], 0.2) for job in jobs])
        warm.get()  # imports and first connections, outside the measurement
        cpu_before = tree_cpu_seconds(server_pid)
        started = time.perf_counter()
        parts = pool.map(_client_process, jobs)
        elapsed = time.perf_counter() - started
        server_cpu = tree_cpu_seconds(server_pid) - cpu_before
    latencies = [lat for part in parts for lat in part["latencies"]]
    return Result(
        requests=len(latencies),
        errors=sum(p["errors"] for p in parts),
        elapsed=min(elapsed, args.duration),
        server_cpu=server_cpu,
        client_cpu=sum(p["client_cpu"] for p in parts),
        percentiles=percentiles(latencies),
        load_average=load_average,
    )


HEADER = (
    "| code | workers | batch | conc | req/s | images/s | p50 ms | p95 ms | p99 ms | errors "
    "| server CPU | server ms/req | client CPU | load avg |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row(code: str, workers: str, batch: int, concurrency: int, r: Result) -> str:
    rps = r.requests / r.elapsed
    p50, p95, p99 = r.percentiles
    return (
        f"| {code} | {workers} | {batch} | {concurrency} | {rps:.0f} | {rps * batch:.0f} "
        f"| {p50:.2f} | {p95:.2f} | {p99:.2f} | {r.errors} "
        f"| {100 * r.server_cpu / r.elapsed:.0f} % | {1000 * r.server_cpu / max(r.requests, 1):.3f} "
        f"| {100 * r.client_cpu / r.elapsed:.0f} % | {r.load_average:.1f} |"
    )


def run_configuration(
    code: str,
    pythonpath: str | None,
    workers: str,
    model_dir: Path,
    args,
    bare: bool = False,
    command: list[str] | None = None,
):
    meta = json.loads((model_dir / "model.json").read_text())
    name, input_shape = meta["name"], meta["signature"]["inputs"][0]["shape"]
    flags = ["--workers", workers] if workers != "-" else []
    if command:
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    elif bare:
        process = server_process(module="serving.bench.bare_server")
    else:
        process = server_process(
            *("--model-dir", str(model_dir), "--insecure", "--port", "0", *flags),
            *args.server_arg,
            first_path=pythonpath,
        )
    try:
        port, _ = wait_for_ports(process)
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(1).random((batch, *input_shape[1:]), dtype=np.float32)
            payload = raw_request(name, x).SerializeToString()
            result = load(process.pid, port, payload, args)
            print(row(code, workers, batch, args.concurrency, result), flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="Artifact to serve (default: a generated fixture).")
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per measurement.")
    parser.add_argument("--concurrency", type=int, default=32, help="Requests in flight.")
    parser.add_argument("--channels", type=int, default=8, help="Client connections in all.")
    parser.add_argument("--batches", default="1,32", help="Images per request, comma-separated.")
    parser.add_argument("--workers", default="1,2", help="Server --workers values to run.")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="Repeat every configuration.")
    parser.add_argument(
        "--compare-pythonpath",
        help="Also run the `serving` package found in this directory (one worker, no --workers "
        "flag), interleaved with ours.",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="Also run bare_server.py (grpc.aio answering fixed bytes): the floor.",
    )
    parser.add_argument(
        "--bare-command",
        help="Also run this command as a floor server: it must answer ModelInfer with fixed bytes "
        "and print `serving bare on HOST:PORT` to stderr (e.g. `node serving/bench/bare_server.js`).",
    )
    parser.add_argument(
        "--server-arg", action="append", default=[], help="Extra server flag (repeatable)."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else write_artifact(Path(tmp) / "m")
        print(
            f"{os.cpu_count()} CPUs; {args.duration:g} s per row; {args.concurrency} in flight over "
            f"{args.channels} connections from {args.client_processes} client process(es); "
            f"server flags {args.server_arg or '(defaults)'}; load average = 1-minute, at row start"
        )
        print(HEADER)
        for _ in range(args.rounds):
            if args.bare:
                run_configuration("bare grpc.aio", None, "-", model_dir, args, bare=True)
            if args.bare_command:
                command = shlex.split(args.bare_command)
                label = f"bare {Path(command[-1]).name}"
                run_configuration(label, None, "-", model_dir, args, command=command)
            if args.compare_pythonpath:
                run_configuration("before", args.compare_pythonpath, "-", model_dir, args)
            for workers in args.workers.split(","):
                run_configuration("after", None, workers, model_dir, args)


if __name__ == "__main__":
    main()
