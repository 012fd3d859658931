"""Writes the cache server's BuildGrid configuration and its access-control list: the one place
both are defined (`infra/remote-cache/start` and the tests' server, tests/support/remote_cache.py,
use it through `start`).

    python server_config.py --dir CONFIG_DIR --host HOST --port PORT --redis-port PORT
        --cas DIR --tls-dir DIR --public-key FILE --redis-password-file FILE

One TLS endpoint (no plaintext port), BuildGrid's JWT authorization (RS256, the token's `aud`
must be AUDIENCE), instance INSTANCE_NAME, and an ACL giving subjects `ci:NAME` read and write
and `developer:NAME` read only; any other token, and every instance not named, is refused.
BuildGrid logs in to Redis (the action cache) with a password read from a file: whoever could
write to Redis directly could store any action result, bypassing the ACL.
Plain Python (any python3): no BuildGrid import.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

INSTANCE_NAME = "main"
AUDIENCE = "ml-monorepo-remote-cache"
# Token subjects are ROLE:NAME (credentials.py); `re.match` anchors at the start only.
_NAME = "[A-Za-z0-9._@-]+$"
# RPC names (BuildGrid authorizes by the servicer method's name).
READS = [
    "GetCapabilities",
    "GetActionResult",
    "FindMissingBlobs",
    "BatchReadBlobs",
    "GetTree",
    "Read",
]
WRITES = ["UpdateActionResult", "BatchUpdateBlobs", "Write", "QueryWriteStatus"]


def acl() -> str:
    """BuildGrid's ACL file (YAML; JSON is YAML)."""
    rules = {
        INSTANCE_NAME: {
            "allow": [
                {"subject": f"^ci:{_NAME}", "requests": READS + WRITES},
                {"subject": f"^developer:{_NAME}", "requests": READS},
            ]
        }
    }
    return json.dumps(rules, indent=2) + "\n"


def _q(value: object) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(str(value))


def buildgrid_config(
    *,
    host: str,
    port: int,
    redis_port: int,
    cas: Path,
    tls_dir: Path,
    public_key: Path,
    acl_file: Path,
    redis_password_file: Path,
) -> str:
    return f"""\
# Written by infra/remote-cache/server_config.py; edit that, not this file.
server:
  - !channel
    address: {_q(f"{host}:{port}")}
    insecure-mode: false
    credentials:
      tls-server-key: {_q(tls_dir / "server.key")}
      tls-server-cert: {_q(tls_dir / "server.pem")}
authorization:
  method: jwt
  algorithm: rs256
  secret: {_q(public_key)}
  audience: {_q(AUDIENCE)}
  acl-config: {_q(acl_file)}
connections:
  - !redis-connection &redis
    host: {_q(host)}
    port: {int(redis_port)}
    password: !read-file {_q(redis_password_file)}
storages:
  - !disk-storage &cas-storage
    path: {_q(cas)}
caches:
  - !redis-action-cache &ac
    storage: *cas-storage
    redis: *redis
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: {_q(INSTANCE_NAME)}
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas-storage
      - !bytestream
        storage: *cas-storage
thread-pool-size: 20
# BuildGrid refuses RPCs beyond this (default: thread-pool-size) with RESOURCE_EXHAUSTED; Pants
# uploads a big output (a loose torch PEX) with up to 128 concurrent RPCs per client, and refused
# writes are lost cache entries. Above the pool size, RPCs wait for a thread instead.
maximum-concurrent-rpcs: 2000
"""


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="server_config.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="writes bgd.yml and acl.yml here")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--cas", type=Path, required=True)
    parser.add_argument("--tls-dir", type=Path, required=True, help="holds server.pem, server.key")
    parser.add_argument("--public-key", type=Path, required=True, help="verifies tokens")
    parser.add_argument("--redis-password-file", type=Path, required=True)
    args = parser.parse_args(argv)
    needed_files = (
        args.tls_dir / "server.pem",
        args.tls_dir / "server.key",
        args.public_key,
        args.redis_password_file,
    )
    for needed in needed_files:
        if not needed.is_file():
            parser.error(f"{needed} does not exist")
    args.dir.mkdir(parents=True, exist_ok=True)
    acl_file = (args.dir / "acl.yml").resolve()
    _write(acl_file, acl())
    config = buildgrid_config(
        host=args.host,
        port=args.port,
        redis_port=args.redis_port,
        cas=args.cas.resolve(),
        tls_dir=args.tls_dir.resolve(),
        public_key=args.public_key.resolve(),
        acl_file=acl_file,
        redis_password_file=args.redis_password_file.resolve(),
    )
    _write(args.dir / "bgd.yml", config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
