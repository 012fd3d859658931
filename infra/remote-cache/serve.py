"""Runs the BuildGrid server of a config written by server_config.py (instead of `bgd server start`).

    $(BuildGrid venv)/bin/python serve.py CONFIG --port-file FILE

Three differences from `bgd server start`, all for the cache's clients:
- A valid token whose identity the ACL does not allow gets PERMISSION_DENIED; BuildGrid 0.9.1's
  JWT manager answers UNAUTHENTICATED to both that and a missing or bad token, which tells a
  developer "your token is broken" when it is fine and only writing is not allowed.
- A blob on disk whose bytes do not hash to its digest (disk corruption, or someone writing into
  the store behind BuildGrid's back) is never served: BuildGrid 0.9.1 serves it as is. Each read
  hashes the object first; a bad one is moved to `quarantine/` next to the store and reported
  missing. Then the action results that need it are dropped (BuildGrid checks their blobs
  exist), and the next CI run uploads the right bytes (without this, BuildGrid keeps the bad
  object forever: an upload of an existing digest is a no-op).
- The port the server listens on is written to FILE once it serves (as one number), so the
  config can ask for port 0 (any free port: tests never use a fixed one).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import buildgrid.server.app.commands.cmd_server as cmd_server  # pants: no-infer-dep
import buildgrid.server.app.settings.parser as config_parser  # pants: no-infer-dep
import buildgrid.server.auth.manager as auth  # pants: no-infer-dep
import buildgrid.server.exceptions as errors  # pants: no-infer-dep
import grpc  # pants: no-infer-dep
from buildgrid.server.app.cli import setup_logging  # pants: no-infer-dep
from buildgrid.server.auth.exceptions import AuthError  # pants: no-infer-dep
from buildgrid.server.cas.storage.disk import DiskStorage  # pants: no-infer-dep
from buildgrid.server.logging import buildgrid_logger  # pants: no-infer-dep

LOGGER = buildgrid_logger(__name__)


class DenyingJWTAuthManager(auth.AuthManager):
    """BuildGrid's JWT manager, with PERMISSION_DENIED for authenticated callers the ACL refuses."""

    def __init__(self, jwt_manager: auth.JWTAuthManager) -> None:
        super().__init__()
        self._jwt = jwt_manager

    def authorize(
        self, context: grpc.ServicerContext, instance_name: str, request_name: str
    ) -> bool:
        if self._jwt.authorize(context, instance_name, request_name):
            return True
        try:
            token = auth._token_from_request_context(context, request_name)
            self._jwt._token_parser.identity_from_token(token)
        except AuthError:
            return False  # no valid token: BuildGrid answers UNAUTHENTICATED
        raise errors.PermissionDeniedError(auth.PERMISSION_DENIED_MESSAGE)


class VerifyingDiskStorage(DiskStorage):
    """BuildGrid's disk storage that serves a blob only if its bytes hash to its digest."""

    def _intact(self, digest) -> bool:  # noqa: ANN001 (a REAPI Digest)
        path = Path(self._get_object_path(digest))
        sha256 = hashlib.sha256()
        try:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    sha256.update(chunk)
        except FileNotFoundError:
            return True  # missing, not corrupt: BuildGrid says NOT_FOUND itself
        if sha256.hexdigest() == digest.hash and path.stat().st_size == digest.size_bytes:
            return True
        quarantine = Path(self.objects_path).parents[1] / "quarantine"
        quarantine.mkdir(exist_ok=True)
        try:
            os.replace(path, quarantine / digest.hash)
        except FileNotFoundError:
            pass  # a concurrent read moved it first
        LOGGER.error(
            "Blob does not match its digest; moved to quarantine, reported missing.",
            tags=dict(digest=f"{digest.hash}/{digest.size_bytes}", actual=sha256.hexdigest()),
        )
        return False

    def get_blob(self, digest):  # noqa: ANN001, ANN201 (BuildGrid's signature)
        return super().get_blob(digest) if self._intact(digest) else None

    def bulk_read_blobs(self, digests) -> dict[str, bytes]:  # noqa: ANN001
        return super().bulk_read_blobs([d for d in digests if self._intact(d)])

    def stream_read_blob(
        self, digest, chunk_size: int, offset: int = 0, limit: int = 0
    ) -> Iterator[bytes]:  # noqa: ANN001
        if not self._intact(digest):
            raise errors.NotFoundError(f"Blob not found: {digest.hash}/{digest.size_bytes}")
        yield from super().stream_read_blob(digest, chunk_size, offset, limit)


def main(config: str, port_file: Path) -> int:
    setup_logging(verbosity=1)
    # `!disk-storage` in the config makes a VerifyingDiskStorage.
    config_parser.DiskStorage = VerifyingDiskStorage
    server = cmd_server._create_server_from_config(config_parser.load_config(config))
    manager = auth.get_auth_manager()
    if not isinstance(manager, auth.JWTAuthManager):
        print(f"serve.py: {config} must use `authorization: {{method: jwt}}`", file=sys.stderr)
        return 2
    auth.set_auth_manager(DenyingJWTAuthManager(manager))

    def stop(sig: int, _: FrameType | None) -> None:
        raise errors.ShutdownSignal(f"Received signal {sig}")

    def record_port(port_map: dict[str, int]) -> None:
        (port,) = port_map.values()
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(port_file)
        print(f"serve.py: serving on port {port}", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port_file.unlink(missing_ok=True)
    try:
        server.start(port_assigned_callback=record_port)
    except (KeyboardInterrupt, errors.ShutdownSignal):
        pass
    finally:
        server.stop()
        port_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] != "--port-file":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], Path(sys.argv[3])))
