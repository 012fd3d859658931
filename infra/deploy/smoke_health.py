"""Smoke check of a deployed model server: the standard gRPC health service must say SERVING.

    ./pants run infra/deploy/smoke_health.py -- 127.0.0.1:18081 [--service NAME] [--timeout 30]

Retries until the deadline (a port-forward or a pod may take a moment); exit 0 when SERVING,
1 otherwise. The same check Kubernetes's gRPC probes make, but from outside the pod, through
the Service.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def status(address: str, service: str = "", timeout: float = 30.0) -> str:
    """The last health status seen at `address` before SERVING or the deadline ('UNAVAILABLE'
    if the server never answered)."""
    deadline = time.monotonic() + timeout
    seen = "UNAVAILABLE"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            left = deadline - time.monotonic()
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=max(left, 0.1)
                )
                seen = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as e:
                seen = e.code().name
            if seen == "SERVING" or time.monotonic() + 0.2 >= deadline:
                return seen
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="host:port of the server (or of a port-forward to it)")
    parser.add_argument("--service", default="", help="health service name ('' = the server)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for SERVING")
    args = parser.parse_args(argv)
    seen = status(args.address, args.service, args.timeout)
    print(f"health of {args.address} ({args.service or 'server'}): {seen}")
    return 0 if seen == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
