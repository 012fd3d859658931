"""Calls the cache's REAPI services as one client would, and prints what the server answered.

    $(BuildGrid venv)/bin/python reapi_probe.py ADDRESS ACTION [--ca PEM] [--token FILE] [...]

ADDRESS is host:port; the channel is TLS with --ca as the only trusted root, or plaintext with
--plaintext. --token FILE sends `authorization: Bearer <contents>` (no --token: none).
ACTIONs, each printing one JSON object of RPC name -> gRPC status name (OK, PERMISSION_DENIED,
UNAUTHENTICATED, UNAVAILABLE, ...):
  write       a fresh blob by BatchUpdateBlobs and another by ByteStream Write, then an action
              result pointing at the first (UpdateActionResult); adds "blob", "stream_blob" and
              "action" digests ("HASH/SIZE") to the output for a later `read`; --nonce N
              writes the same three again
  read        GetCapabilities, FindMissingBlobs, BatchReadBlobs and ByteStream Read of --blob,
              GetActionResult of --action; adds "content_ok" (the bytes read hash to --blob)
  mismatch    uploads bytes under a digest they do not have (BatchUpdateBlobs, ByteStream Write)
Used by the tests (tests/cicd/remote_cache_auth_test.py) and by hand. Runs with the BuildGrid
venv's Python: it has grpcio and the REAPI stubs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from pathlib import Path

# BuildGrid is not in any of our resolves: it lives in its own venv (see `install`).
import buildgrid._protos.build.bazel.remote.execution.v2.remote_execution_pb2 as re_pb2  # pants: no-infer-dep
import buildgrid._protos.build.bazel.remote.execution.v2.remote_execution_pb2_grpc as re_grpc  # pants: no-infer-dep
import buildgrid._protos.google.bytestream.bytestream_pb2 as bs_pb2  # pants: no-infer-dep
import buildgrid._protos.google.bytestream.bytestream_pb2_grpc as bs_grpc  # pants: no-infer-dep
import grpc  # pants: no-infer-dep
from server_config import INSTANCE_NAME  # pants: no-infer-dep

TIMEOUT = 20


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _text(d: re_pb2.Digest) -> str:
    return f"{d.hash}/{d.size_bytes}"


def _parse(text: str) -> re_pb2.Digest:
    hash_, _, size = text.partition("/")
    return re_pb2.Digest(hash=hash_, size_bytes=int(size))


def _code(call) -> tuple[str, object]:
    """(status name, response or None) of `call()`."""
    try:
        return "OK", call()
    except grpc.RpcError as e:
        return e.code().name, None


class Client:
    def __init__(self, channel: grpc.Channel, token: str | None) -> None:
        self.metadata = [("authorization", f"Bearer {token}")] if token is not None else []
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.ac = re_grpc.ActionCacheStub(channel)
        self.caps = re_grpc.CapabilitiesStub(channel)
        self.bytestream = bs_grpc.ByteStreamStub(channel)

    def batch_update(self, digest: re_pb2.Digest, data: bytes) -> str:
        request = re_pb2.BatchUpdateBlobsRequest(
            instance_name=INSTANCE_NAME,
            requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest, data=data)],
        )
        code, response = _code(
            lambda: self.cas.BatchUpdateBlobs(request, timeout=TIMEOUT, metadata=self.metadata)
        )
        if response is not None:  # the RPC passed; each blob has its own status
            (blob,) = response.responses
            code = next(c.name for c in grpc.StatusCode if c.value[0] == blob.status.code)
        return code

    def stream_write(self, digest: re_pb2.Digest, data: bytes) -> str:
        name = f"{INSTANCE_NAME}/uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
        request = bs_pb2.WriteRequest(
            resource_name=name, write_offset=0, finish_write=True, data=data
        )
        return _code(
            lambda: self.bytestream.Write(iter([request]), timeout=TIMEOUT, metadata=self.metadata)
        )[0]

    def update_action_result(self, action: re_pb2.Digest, output: re_pb2.Digest) -> str:
        result = re_pb2.ActionResult(
            exit_code=0,
            output_files=[re_pb2.OutputFile(path="out.txt", digest=output)],
        )
        request = re_pb2.UpdateActionResultRequest(
            instance_name=INSTANCE_NAME, action_digest=action, action_result=result
        )
        return _code(
            lambda: self.ac.UpdateActionResult(request, timeout=TIMEOUT, metadata=self.metadata)
        )[0]


def write(client: Client, nonce: bytes) -> dict[str, str]:
    blob, stream_blob = b"probe blob " + nonce, b"probe stream blob " + nonce
    blob_digest, stream_digest = digest_of(blob), digest_of(stream_blob)
    action = digest_of(b"probe action " + nonce)
    return {
        "BatchUpdateBlobs": client.batch_update(blob_digest, blob),
        "Write": client.stream_write(stream_digest, stream_blob),
        "UpdateActionResult": client.update_action_result(action, blob_digest),
        "blob": _text(blob_digest),
        "stream_blob": _text(stream_digest),
        "action": _text(action),
    }


def read(client: Client, blob: re_pb2.Digest, action: re_pb2.Digest) -> dict[str, object]:
    m, i = client.metadata, INSTANCE_NAME
    out: dict[str, object] = {}
    out["GetCapabilities"], _ = _code(
        lambda: client.caps.GetCapabilities(
            re_pb2.GetCapabilitiesRequest(instance_name=i), timeout=TIMEOUT, metadata=m
        )
    )
    out["FindMissingBlobs"], missing = _code(
        lambda: client.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(instance_name=i, blob_digests=[blob]),
            timeout=TIMEOUT,
            metadata=m,
        )
    )
    if missing is not None:
        out["missing"] = [_text(d) for d in missing.missing_blob_digests]
    out["BatchReadBlobs"], batch = _code(
        lambda: client.cas.BatchReadBlobs(
            re_pb2.BatchReadBlobsRequest(instance_name=i, digests=[blob]),
            timeout=TIMEOUT,
            metadata=m,
        )
    )
    resource = f"{i}/blobs/{blob.hash}/{blob.size_bytes}"
    out["Read"], chunks = _code(
        lambda: list(
            client.bytestream.Read(
                bs_pb2.ReadRequest(resource_name=resource), timeout=TIMEOUT, metadata=m
            )
        )
    )
    out["GetActionResult"], result = _code(
        lambda: client.ac.GetActionResult(
            re_pb2.GetActionResultRequest(instance_name=i, action_digest=action),
            timeout=TIMEOUT,
            metadata=m,
        )
    )
    if result is not None:
        out["action_outputs"] = [_text(f.digest) for f in result.output_files]
    contents = []
    if batch is not None:
        contents += [r.data for r in batch.responses if r.status.code == 0]
    if chunks is not None:
        contents.append(b"".join(c.data for c in chunks))
    out["content_ok"] = bool(contents) and all(digest_of(c).hash == blob.hash for c in contents)
    return out


def mismatch(client: Client) -> dict[str, str]:
    """Bytes uploaded under another blob's digest (same size, so only the hash is wrong)."""
    nonce = uuid.uuid4().hex.encode()
    claimed = digest_of(b"claimed " + nonce)
    data = b"poison! " + nonce
    return {
        "BatchUpdateBlobs": client.batch_update(claimed, data),
        "Write": client.stream_write(claimed, data),
        "claimed": _text(claimed),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reapi_probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("address", help="host:port")
    parser.add_argument("action", choices=["write", "read", "mismatch"])
    parser.add_argument("--ca", type=Path, help="the CA certificate to trust (TLS)")
    parser.add_argument("--plaintext", action="store_true", help="no TLS")
    parser.add_argument("--token", type=Path, help="file holding the bearer token")
    parser.add_argument("--blob", help="HASH/SIZE to read")
    parser.add_argument("--action-digest", help="HASH/SIZE of the action result to read")
    parser.add_argument(
        "--nonce", help="write: the same nonce writes the same blobs (default: new)"
    )
    args = parser.parse_args(argv)
    if args.plaintext == (args.ca is not None):
        parser.error("give exactly one of --ca PEM and --plaintext")
    if args.action == "read" and not (args.blob and args.action_digest):
        parser.error("read needs --blob and --action-digest")
    token = args.token.read_text().strip() if args.token else None
    if args.plaintext:
        channel = grpc.insecure_channel(args.address)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=args.ca.read_bytes())
        channel = grpc.secure_channel(args.address, credentials)
    with channel:
        client = Client(channel, token)
        if args.action == "write":
            nonce = (args.nonce or uuid.uuid4().hex).encode()
            out: dict[str, object] = dict(write(client, nonce))
        elif args.action == "read":
            out = read(client, _parse(args.blob), _parse(args.action_digest))
        else:
            out = dict(mismatch(client))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
