"""The floor for `benchmark.py`: a grpc.aio server whose ModelInfer returns fixed bytes, with no
parsing, model or metrics, so the difference to the real server is our own per-request work.

    python -m serving.bench.bare_server   # prints `serving bare on 127.0.0.1:PORT` like the server
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc

ANSWER = b"\n\x04bare"  # a valid ModelInferResponse (model_name="bare")


async def main() -> None:
    async def model_infer(data: bytes, context) -> bytes:
        return ANSWER

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(model_infer)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving bare on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(main())
