"""`--workers N`: N server processes on one port, supervised by a parent process.

Python handles one request at a time per process, so one process uses about one core whatever the
node has. Each worker is a full `ModelServer` (its own models, event loop and gRPC server) bound to
the same port with SO_REUSEPORT: the kernel spreads incoming connections over the workers (a
connection, and so a gRPC channel, stays with the worker that accepted it).

The parent loads no model and serves no request. It
- reserves the port (so `--port 0` gives all workers the same free port, and a fixed port that
  another process holds is an error instead of silently shared),
- starts the workers (spawned: fresh interpreters, no state forked from a process using gRPC),
- tells them to report ready only once all of them listen, and not ready while one is missing,
- serves `/metrics` for all of them (see serving.metrics),
- forwards SIGTERM/SIGINT, so every worker drains as a single server would, and exits 0 once all
  have exited 0,
- restarts a worker that dies: its clients' connections fail (UNAVAILABLE, a retryable status) and
  reconnect to the other workers; the others' requests are not disturbed, and the replacement
  joins the port once its models are loaded. A worker that dies on start-up, or more than
  `MAX_RESTARTS` times in `RESTART_WINDOW_SECONDS`, stops the server with status 1 instead, so a
  crash loop reaches Kubernetes (which restarts the pod) rather than being hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path

from prometheus_client import multiprocess

from serving.artifact import ArtifactError
from serving.metrics import WorkersCollector, serve_workers_http
from serving.server import ConfigError, ModelServer, ServerConfig, check_config

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening, so it takes no connections) to the port all workers share.
    A port already in use by anything else is refused, even by a process that also set
    SO_REUSEPORT (a stale server of the same user would otherwise get part of the traffic)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    if port:
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use") from None
            raise
        finally:
            probe.close()
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserved.bind((host, port))
    return reserved


async def _worker(config: ServerConfig, conn: Connection) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before loading: no default death on SIGTERM
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        server = ModelServer(config)
    except (ArtifactError, ConfigError) as e:
        conn.send(("error", str(e)))
        return 2
    await server.start(ready=False)
    models = ", ".join(f"{a.name}@{a.version[:12]}" for a in server.artifacts.values())
    conn.send(("started", models))

    def on_message() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: do not serve on unsupervised
            loop.remove_reader(conn.fileno())
            stop_requested.set()
            return
        loop.create_task(server.set_ready(message == "ready"))

    loop.add_reader(conn.fileno(), on_message)
    await stop_requested.wait()
    await server.stop()
    return 0


def worker_main(config: ServerConfig, conn: Connection) -> None:
    """A worker process's entry point (spawned by the parent)."""
    sys.exit(asyncio.run(_worker(config, conn)))


@dataclasses.dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    started: bool = False


class Supervisor:
    """The parent process: starts, watches, restarts and stops the workers."""

    def __init__(self, config: ServerConfig, count: int, metrics_dir: Path) -> None:
        self.config = config  # each worker's
        self.count = count
        self.metrics_dir = metrics_dir
        self.workers: dict[int, _Worker] = {}
        self.restarts: list[float] = []  # times of the restarts in the last window
        self.restart_count = 0
        self.ready = False
        self._context = multiprocessing.get_context("spawn")
        self._signal_read, self._signal_write = socket.socketpair()
        self._signal_read.setblocking(False)
        self._signal_write.setblocking(False)
        self._signals: list[int] = []

    def kill_all(self) -> None:
        """The last resort, if the supervisor itself fails: no worker outlives it."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def live_pids(self) -> dict[int, int]:
        return {i: w.process.pid for i, w in self.workers.items() if w.process.is_alive()}

    def _spawn(self, index: int) -> None:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(self.config, child_end), name=f"serving-worker-{index}"
        )
        process.start()
        child_end.close()
        self.workers[index] = _Worker(index, process, parent_end)

    def _broadcast(self, message: str) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                worker.conn.send(message)

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self._broadcast("ready" if ready else "unready")

    def _on_signal(self, signum: int, frame) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._signal_write.send(b"\0")

    def run(self, on_serving) -> int:
        """Runs until the workers have stopped; returns the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for index in range(self.count):
            self._spawn(index)
        announced = False
        while True:
            if self._signals:
                return self._stop(f"received signal {self._signals[0]}; shutting down", 0)
            sentinels = {w.process.sentinel: w for w in self.workers.values()}
            conns = {w.conn: w for w in self.workers.values()}
            for ready in wait([*sentinels, *conns, self._signal_read], timeout=None):
                if self._signals:
                    break  # a worker that exited on the same Ctrl-C is not a crash
                if ready is self._signal_read:
                    with contextlib.suppress(BlockingIOError):
                        self._signal_read.recv(64)
                elif ready in conns:
                    worker = conns[ready]
                    try:
                        kind, detail = worker.conn.recv()
                    except (EOFError, OSError):
                        continue  # it exited; its sentinel says so
                    if kind == "error":
                        return self._stop(f"error: {detail}", 2)
                    worker.started = True
                    if all(w.started for w in self.workers.values()):
                        self._set_ready(True)
                        if not announced:
                            announced = True
                            on_serving(detail)
                elif ready in sentinels:
                    status = self._replace(sentinels[ready])
                    if status is not None:
                        return status

    def _replace(self, worker: _Worker) -> int | None:
        """A worker exited without being asked to: restart it, or give up (an exit status)."""
        worker.process.join()
        code = worker.process.exitcode
        multiprocess.mark_process_dead(worker.process.pid, str(self.metrics_dir))
        worker.conn.close()
        del self.workers[worker.index]
        self._set_ready(False)
        if not worker.started:
            return self._stop(f"worker {worker.index} exited ({code}) while starting", 1)
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            return self._stop(
                f"worker {worker.index} exited ({code}); more than {MAX_RESTARTS} restarts in "
                f"{RESTART_WINDOW_SECONDS:.0f} s, stopping",
                1,
            )
        self.restart_count += 1
        print(f"worker {worker.index} exited ({code}); restarting it", file=sys.stderr, flush=True)
        self._spawn(worker.index)
        return None

    def _stop(self, message: str, status: int) -> int:
        """Forwards SIGTERM to every worker (each drains like a single server) and waits."""
        with contextlib.suppress(OSError):  # stderr may be a closed pipe; stop the workers anyway
            print(message, file=sys.stderr, flush=True)
        for worker in self.workers.values():
            if worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = self.config.drain_seconds + self.config.grace_seconds + 30
        failed = False
        for worker in self.workers.values():
            worker.process.join(timeout=deadline)
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
            failed |= worker.process.exitcode != 0
        return 1 if failed and status == 0 else status


def serve_workers(config: ServerConfig) -> int:
    """Runs `config.workers` worker processes on one port until SIGTERM; the exit status."""
    check_config(config)
    reserved = reserve_port(config.host, config.port)
    port = reserved.getsockname()[1]
    try:
        metrics_dir = Path(tempfile.mkdtemp(prefix="serving-metrics-"))
    except OSError as e:
        reserved.close()
        raise ConfigError(
            f"--workers {config.workers} needs a writable temporary directory for the workers' "
            f"metrics (TMPDIR, else /tmp; mount one on a read-only root filesystem): {e}"
        ) from None
    os.environ[METRICS_DIR_ENV] = str(metrics_dir)  # inherited by the spawned workers
    worker_config = dataclasses.replace(
        config, port=port, metrics_port=None, workers=1, shared_port=True
    )
    supervisor = Supervisor(worker_config, config.workers, metrics_dir)
    httpd = None
    try:

        def on_serving(models: str) -> None:
            nonlocal httpd
            metrics = ""
            if config.metrics_port is not None:
                collector = WorkersCollector(supervisor.live_pids, lambda: supervisor.restart_count)
                httpd = serve_workers_http(
                    config.metrics_host or config.host, config.metrics_port, metrics_dir, collector
                )
                metrics = f", metrics on port {httpd.server_address[1]}"
            print(
                f"serving {models} with {config.workers} workers on {config.host}:{port}{metrics}",
                file=sys.stderr,
                flush=True,
            )

        status = supervisor.run(on_serving)
    finally:
        supervisor.kill_all()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    print("stopped", file=sys.stderr, flush=True)
    return status
