"""Prometheus metrics of the model server, in a registry of their own (one per server)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        )
        self.queue_length = Gauge(
            "inference_queue_length",
            "Requests waiting for an onnxruntime call, by model.",
            ["model"],
            registry=self.registry,
        )
        self.queue_length_max = Gauge(
            "inference_queue_length_max",
            "The largest queue length seen since the server started, by model.",
            ["model"],
            registry=self.registry,
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
