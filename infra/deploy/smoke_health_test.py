from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from infra.deploy.smoke_health import main, status


@pytest.fixture
def server():
    servicer = health.HealthServicer()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", servicer
    srv.stop(None)


def test_serving_server_passes(server) -> None:
    address, servicer = server
    servicer.set("inference", health_pb2.HealthCheckResponse.SERVING)
    assert main([address, "--service", "inference", "--timeout", "2"]) == 0
    assert status(address, "", 2) == "SERVING"  # the server as a whole


def test_not_serving_or_unknown_service_fails(server) -> None:
    address, servicer = server
    servicer.set("inference", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert status(address, "inference", 0.5) == "NOT_SERVING"
    assert status(address, "other", 0.5) == "NOT_FOUND"
    assert main([address, "--service", "inference", "--timeout", "0.5"]) == 1


def test_no_server_fails() -> None:
    assert status("127.0.0.1:1", "", 0.5) == "UNAVAILABLE"
