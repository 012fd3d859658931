"""The cache's key material: a TLS CA and server certificate, the token signing key, and tokens.

    python credentials.py tls DIR [--host NAME_OR_IP ...]   # DIR/{ca.pem,server.pem,server.key}
    python credentials.py signing-key PRIVATE PUBLIC         # RS256 pair (rotation: a new pair)
    python credentials.py token --key PRIVATE --role ci|developer --name NAME
        --days N|--seconds S [--out FILE]

Runs with the BuildGrid venv's Python (it has `cryptography` and PyJWT). Tokens are RS256 JWTs:
the server holds only the public key, so a copy of the server's files cannot mint tokens. A
token's `sub` is `ROLE:NAME`; the ACL (server_config.py) grants writes to `ci:` subjects only.
Every private file is written with mode 0600, atomically (nothing half-written).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
import uuid
from pathlib import Path

import jwt  # pants: no-infer-dep
from cryptography import x509  # pants: no-infer-dep
from cryptography.hazmat.primitives import hashes, serialization  # pants: no-infer-dep
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # pants: no-infer-dep
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # pants: no-infer-dep
from server_config import AUDIENCE  # pants: no-infer-dep

ROLES = ("ci", "developer")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
ISSUER = "ml-monorepo remote cache"


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Writes `path` atomically with `mode` (the temporary file never has wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_tls(directory: Path, hosts: list[str], days: int = 825) -> None:
    """A CA (its key is thrown away: it signs only this one server certificate) and the server's
    certificate and key, valid for `hosts`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{ISSUER} local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_private(directory / "server.key", _pem_key(server_key))
    write_private(directory / "server.pem", server.public_bytes(pem), mode=0o644)
    # Last: its presence says the set is complete.
    write_private(directory / "ca.pem", ca.public_bytes(pem), mode=0o644)


def make_signing_key(private: Path, public: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_private(public, public_pem, mode=0o644)
    write_private(private, _pem_key(key))


def mint_token(private_key: Path, role: str, name: str, seconds: float) -> str:
    """A token for `ROLE:NAME`, expiring after `seconds` (negative: already expired, for tests)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME.match(name):
        raise ValueError(f"name must match {NAME.pattern} (letters, digits, . _ @ -), not {name!r}")
    try:
        key = private_key.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the signing key {private_key}: {e.strerror}") from e
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {
        "iss": ISSUER,
        "sub": f"{role}:{name}",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + datetime.timedelta(seconds=seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="RS256")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="credentials.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tls = commands.add_parser("tls", help="a CA and a server certificate for --host names")
    tls.add_argument("directory", type=Path)
    tls.add_argument("--host", action="append", default=[])
    key = commands.add_parser("signing-key", help="a new RS256 key pair for tokens")
    key.add_argument("private", type=Path)
    key.add_argument("public", type=Path)
    token = commands.add_parser("token", help="mint a token")
    token.add_argument("--key", type=Path, required=True, help="the private signing key")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--name", required=True)
    lifetime = token.add_mutually_exclusive_group(required=True)
    lifetime.add_argument("--days", type=float, help="valid for this many days (at most 366)")
    lifetime.add_argument(
        "--seconds", type=float, help="valid for this many seconds; negative: expired (tests)"
    )
    token.add_argument("--out", type=Path, help="write here (mode 0600) instead of stdout")
    args = parser.parse_args(argv)

    if args.command == "tls":
        make_tls(args.directory, args.host or ["127.0.0.1", "localhost"])
    elif args.command == "signing-key":
        make_signing_key(args.private, args.public)
    else:
        if args.days is not None and not 0 < args.days <= 366:
            parser.error(f"--days must be above 0 and at most 366, not {args.days}")
        seconds = args.seconds if args.days is None else args.days * 86400
        try:
            value = mint_token(args.key, args.role, args.name, seconds)
        except ValueError as e:
            parser.error(str(e))
        if args.out:
            write_private(args.out, value.encode() + b"\n")
        else:
            print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
