"""Prometheus metrics of the model server, in a registry of their own (one per server).

With `--workers N` above 1 each worker process writes its metrics to files in a directory shared
with the parent (prometheus_client's multiprocess mode), and the parent's `/metrics` sums them:
one scrape shows the whole server. Counters of a worker that died stay in its files, so the sums
never go backwards when a worker is replaced (a parent summing live workers' registries would see
them drop, which Prometheus takes for a counter reset). The gauges say how they combine
(`multiprocess_mode`); outside multiprocess mode that argument is ignored.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self, *, worker: bool = False) -> None:
        """`worker=True`: a worker of several; the parent reports the process metrics."""
        self.registry = CollectorRegistry()
        if not worker:
            ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
            PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "inference_requests",
            "gRPC inference-service requests by model, method and final gRPC status code.",
            ["model", "method", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "inference_errors",
            "Requests answered with a status other than OK, by model and code.",
            ["model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time from receiving a ModelInfer request to its answer, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_batch_rows",
            "Rows per onnxruntime call, by model (several requests may share a call).",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "inference_in_flight_requests",
            "ModelInfer requests being processed now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_length = Gauge(
            "inference_queue_length",
            "Requests waiting for an onnxruntime call, by model.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_length_max = Gauge(
            "inference_queue_length_max",
            "The largest queue length seen since the server started, by model.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self._max: dict[str, int] = {}

    def observe_queue(self, model: str, length: int) -> None:
        self.queue_length.labels(model).set(length)
        if length > self._max.get(model, -1):
            self._max[model] = length
            self.queue_length_max.labels(model).set(length)

    def serve_http(self, host: str, port: int):
        """Starts the `/metrics` HTTP endpoint in a thread; returns the HTTP server."""
        httpd, _thread = start_http_server(port, addr=host, registry=self.registry)
        return httpd


def _proc_cpu_and_rss(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system) and resident bytes of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


class WorkersCollector:
    """The whole server's process metrics (parent + workers, including workers that have exited:
    their CPU time comes from the kernel's account of reaped children), and per-worker CPU."""

    def __init__(self, workers: Callable[[], dict[int, int]], restarts: Callable[[], int]):
        self._workers = workers  # worker index -> pid, for the live ones
        self._restarts = restarts

    def collect(self):
        own = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
        rss = own.ru_maxrss * 1024  # the parent's peak; it stays small
        per_worker = CounterMetricFamily(
            "serving_worker_cpu_seconds",
            "CPU time of each live worker process (shows whether load is spread).",
            labels=["worker"],
        )
        workers = self._workers()
        for index, pid in sorted(workers.items()):
            usage = _proc_cpu_and_rss(pid)
            if usage is not None:
                cpu += usage[0]
                rss += usage[1]
                per_worker.add_metric([str(index)], usage[0])
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "User and system CPU time of the server: parent and all workers, past and present.",
            value=cpu,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of the server's live processes, summed.",
            value=rss,
        )
        yield per_worker
        yield GaugeMetricFamily("serving_workers_alive", "Worker processes alive.", len(workers))
        yield CounterMetricFamily(
            "serving_worker_restarts", "Workers restarted after dying.", value=self._restarts()
        )


def serve_workers_http(host: str, port: int, directory: Path, collector: WorkersCollector):
    """`/metrics` of a server with several workers: the sum of the workers' metric files plus
    the parent's `WorkersCollector`. Starts in a thread; returns the HTTP server."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    registry.register(collector)
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return httpd
