"""`--workers 2` as a real process tree: answers, load spreading, metrics summed over workers,
readiness, a worker killed under load, start-up errors (a bad artifact: lifecycle_test)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import FRONTENDS
from serving.testsupport import (
    decode_outputs,
    raw_request,
    server_process,
    stub,
    wait_for_ports,
)

MODEL = "fixture_digits"
FRONTEND = pytest.mark.parametrize("frontend", FRONTENDS)
# In a worker's command line: Python's are started by multiprocessing, Node's carry a mark.
WORKER_MARKS = (b"spawn_main", b"--serving-node-worker")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_artifact(tmp_path_factory.mktemp("models") / "digits", MODEL)


@contextlib.contextmanager
def two_workers(model_dir, frontend: str, *extra: str):
    process = server_process(
        *("--model-dir", str(model_dir), "--insecure", "--port", "0", "--metrics-port", "0"),
        *("--workers", "2", "--frontend", frontend, *extra),
    )
    try:
        port, metrics_port = wait_for_ports(process)
        yield process, port, metrics_port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def connections(port: int, count: int):
    """`count` clients on separate connections (by default gRPC shares one between channels to
    the same address, and one connection reaches one worker)."""
    return [stub(port, **{"grpc.use_local_subchannel_pool": 1}) for _ in range(count)]


def scrape(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes (children with one of WORKER_MARKS in their command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat[1]) == server_pid and any(mark in cmdline for mark in WORKER_MARKS):
            pids.append(int(entry))
    return pids


def expected(model_dir, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_dir / "model.onnx"))
    probabilities, predicted = session.run(None, {"input": x})
    return {"probabilities": probabilities, "predicted_class": predicted}


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


@FRONTEND
def test_two_workers_answer_as_onnxruntime_does_and_share_the_load(model_dir, frontend):
    with two_workers(model_dir, frontend) as (process, port, metrics_port):
        assert len(worker_pids(process.pid)) == 2
        clients = connections(port, 16)
        before = scrape(metrics_port)
        inputs = [images(1 + i % 5, seed=i) for i in range(32)]
        failures: list[BaseException] = []

        def send(client) -> None:
            try:
                for _ in range(3):
                    for x in inputs:
                        got = decode_outputs(client.ModelInfer(raw_request(MODEL, x)))
                        want = expected_cache[id(x)]
                        # Same onnxruntime, same inputs: the same bits.
                        np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
                        np.testing.assert_array_equal(
                            got["predicted_class"], want["predicted_class"]
                        )
            except BaseException as e:  # noqa: BLE001 -- reported below
                failures.append(e)

        expected_cache = {id(x): expected(model_dir, x) for x in inputs}
        threads = [threading.Thread(target=send, args=(c,)) for c, _ in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
        after = scrape(metrics_port)
        # Both workers did part of the work (16 connections all on one: probability 2**-15).
        for worker in ("0", "1"):
            key = f'serving_worker_cpu_seconds_total{{worker="{worker}"}}'
            assert after[key] > before[key], key
        for _, channel in clients:
            channel.close()


@FRONTEND
def test_metrics_sum_exactly_across_workers(model_dir, frontend):
    with two_workers(model_dir, frontend) as (process, port, metrics_port):
        clients = connections(port, 12)
        ok = 0
        not_found = 0
        for i, (client, _) in enumerate(clients):
            for _ in range(5 + i):
                client.ModelInfer(raw_request(MODEL, images(1, seed=i)))
                ok += 1
            with pytest.raises(grpc.RpcError):
                client.ModelInfer(raw_request("nope", images(1, seed=i)))
            not_found += 1
        samples = scrape(metrics_port)
        model = f'model="{MODEL}"'
        assert samples[f'inference_requests_total{{code="OK",method="ModelInfer",{model}}}'] == ok
        unknown = 'model="_unknown"'
        assert (
            samples[f'inference_requests_total{{code="NOT_FOUND",method="ModelInfer",{unknown}}}']
            == not_found
        )
        assert samples[f'inference_errors_total{{code="NOT_FOUND",{unknown}}}'] == not_found
        assert samples[f"inference_request_duration_seconds_count{{{model}}}"] == ok
        assert samples[f"inference_batch_rows_sum{{{model}}}"] == ok  # one image each
        assert samples["inference_in_flight_requests"] == 0
        assert samples["serving_workers_alive"] == 2
        # The whole server's CPU: at least the two workers' own.
        workers_cpu = sum(v for k, v in samples.items() if k.startswith("serving_worker_cpu"))
        assert samples["process_cpu_seconds_total"] >= workers_cpu > 0
        for _, channel in clients:
            channel.close()


def wait_for_replacement(server_pid: int, known: list[int], timeout: float = 30.0) -> int:
    """The pid of a worker that is not one of `known` (the one spawned after a kill)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [pid for pid in worker_pids(server_pid) if pid not in known]
        if fresh:
            return fresh[0]
        time.sleep(0.005)
    raise AssertionError(f"no replacement worker within {timeout:.0f} s")


def poll_ready(port: int, want: bool, timeout: float) -> list[bool]:
    """ServerReady answers on a new connection until one is `want`; all answers seen."""
    client, channel = stub(port, **{"grpc.use_local_subchannel_pool": 1})
    seen: list[bool] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                seen.append(client.ServerReady(pb.ServerReadyRequest(), timeout=5).ready)
                if seen[-1] == want:
                    return seen
            time.sleep(0.02)
    finally:
        channel.close()
    raise AssertionError(f"ServerReady never answered {want} in {timeout:.0f} s; answers: {seen}")


@FRONTEND
def test_a_worker_killed_under_load_is_restarted_and_no_answer_is_wrong(model_dir, frontend):
    with two_workers(model_dir, frontend) as (process, port, metrics_port):
        x = images(3, seed=7)
        want = expected(model_dir, x)
        stop = threading.Event()
        answers = {"ok": 0, "after_restart": 0}
        errors: list[grpc.StatusCode] = []
        wrong: list[str] = []
        restarted = threading.Event()

        def load() -> None:
            client, channel = stub(port, **{"grpc.use_local_subchannel_pool": 1})
            while not stop.is_set():
                try:
                    got = decode_outputs(client.ModelInfer(raw_request(MODEL, x), timeout=10))
                except grpc.RpcError as e:
                    errors.append(e.code())
                    continue
                if not (
                    np.array_equal(got["probabilities"], want["probabilities"])
                    and np.array_equal(got["predicted_class"], want["predicted_class"])
                ):
                    wrong.append(repr(got))
                answers["ok"] += 1
                if restarted.is_set():
                    answers["after_restart"] += 1
            channel.close()

        # Daemon threads, stopped in `finally`: a failed assertion must not leave the test
        # process waiting on them forever.
        threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
        replacement = None
        try:
            for t in threads:
                t.start()
            time.sleep(1.0)
            before = worker_pids(process.pid)
            victim = before[0]
            os.kill(victim, signal.SIGKILL)
            # Hold the replacement while it starts (it imports for a second or more), so the
            # window with a worker missing lasts as long as the test needs, however loaded the
            # machine: the survivor must say not ready, then ready once the replacement runs.
            replacement = wait_for_replacement(process.pid, before)
            os.kill(replacement, signal.SIGSTOP)
            assert poll_ready(port, want=False, timeout=30)[-1] is False
            os.kill(replacement, signal.SIGCONT)
            replacement = None
            poll_ready(port, want=True, timeout=60)
            restarted.set()
            time.sleep(1.0)
        finally:
            if replacement is not None:
                os.kill(replacement, signal.SIGCONT)
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert not wrong, wrong[:3]
        # The killed worker's connections fail with UNAVAILABLE (retryable); nothing else.
        assert set(errors) <= {grpc.StatusCode.UNAVAILABLE}, set(errors)
        assert answers["after_restart"] > 0
        pids = worker_pids(process.pid)
        assert len(pids) == 2 and victim not in pids
        samples = scrape(metrics_port)
        assert samples["serving_worker_restarts_total"] == 1
        assert samples["serving_workers_alive"] == 2
    err = process.stderr.read()
    assert process.returncode == 0, err
    assert re.search(r"worker \d exited \(-9\); restarting it", err)


@FRONTEND
def test_a_port_in_use_is_refused_even_with_so_reuseport(model_dir, frontend):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        process = server_process(
            *("--model-dir", str(model_dir), "--insecure", "--port", str(port), "--workers", "2"),
            *("--frontend", frontend),
        )
        _, err = process.communicate(timeout=60)
    finally:
        holder.close()
    assert process.returncode == 2
    assert f"error: port {port} on 127.0.0.1 is already in use" in err


def test_workers_must_be_positive(model_dir):
    process = server_process("--model-dir", str(model_dir), "--insecure", "--workers", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--workers must be at least 1" in err


@FRONTEND
def test_no_worker_outlives_the_parent_even_with_its_stderr_closed(model_dir, frontend):
    # The reader of the server's stderr went away (a log shipper restarting): the SIGTERM
    # message cannot be written, and the workers must stop all the same.
    with two_workers(model_dir, frontend) as (process, port, metrics_port):
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        process.stderr.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{pid}") for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived the server"
            time.sleep(0.1)
