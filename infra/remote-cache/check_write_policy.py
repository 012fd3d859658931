"""Only CI can write: checks the two endpoints of infra/remote-cache/start over REAPI.

    $(BuildGrid venv)/bin/python infra/remote-cache/check_write_policy.py CI_ADDRESS DEV_ADDRESS

Uploads a small blob and an action result to each endpoint, under the instance name "main":
the CI endpoint must accept both, the developers' endpoint must refuse both; both must serve
what CI wrote. Runs with the BuildGrid venv's Python (it has grpcio and the REAPI stubs).
"""

from __future__ import annotations

import hashlib
import sys
import uuid

# BuildGrid is not in any of our resolves: it lives in its own venv (see `start`).
import buildgrid._protos.build.bazel.remote.execution.v2.remote_execution_pb2 as re_pb2  # pants: no-infer-dep
import buildgrid._protos.build.bazel.remote.execution.v2.remote_execution_pb2_grpc as re_grpc  # pants: no-infer-dep
import grpc

INSTANCE = "main"


def digest(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def try_writes(address: str, blob: bytes, action: re_pb2.Digest) -> tuple[bool, bool]:
    """(blob upload accepted, action result accepted) at `address`."""
    with grpc.insecure_channel(address) as channel:
        cas = re_grpc.ContentAddressableStorageStub(channel)
        request = re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(blob), data=blob)
        try:
            response = cas.BatchUpdateBlobs(
                re_pb2.BatchUpdateBlobsRequest(instance_name=INSTANCE, requests=[request]),
                timeout=10,
            )
            blob_ok = all(r.status.code == 0 for r in response.responses)
        except grpc.RpcError:
            blob_ok = False
        result = re_pb2.ActionResult(exit_code=0, stdout_digest=digest(blob))
        try:
            re_grpc.ActionCacheStub(channel).UpdateActionResult(
                re_pb2.UpdateActionResultRequest(
                    instance_name=INSTANCE, action_digest=action, action_result=result
                ),
                timeout=10,
            )
            result_ok = True
        except grpc.RpcError:
            result_ok = False
    return blob_ok, result_ok


def can_read(address: str, action: re_pb2.Digest) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            re_grpc.ActionCacheStub(channel).GetActionResult(
                re_pb2.GetActionResultRequest(instance_name=INSTANCE, action_digest=action),
                timeout=10,
            )
            return True
        except grpc.RpcError:
            return False


def main(ci: str, dev: str) -> int:
    nonce = uuid.uuid4().bytes
    checks = {
        "CI endpoint accepts a blob and an action result": try_writes(
            ci, b"ci " + nonce, digest(b"ci-action " + nonce)
        )
        == (True, True),
        "developers' endpoint refuses a blob and an action result": try_writes(
            dev, b"dev " + nonce, digest(b"dev-action " + nonce)
        )
        == (False, False),
        "developers' endpoint serves what CI wrote": can_read(dev, digest(b"ci-action " + nonce)),
        "nothing the developers' endpoint refused is served": not can_read(
            ci, digest(b"dev-action " + nonce)
        ),
    }
    for name, ok in checks.items():
        print(f"  {'ok' if ok else 'FAILED'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
