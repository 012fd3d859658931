"""DSSE envelopes (the in-toto attestation signature format) signed and verified with ed25519.

The signing itself is OpenSSL's (`openssl pkeyutl -rawin`, OpenSSL >= 3.0 on every Debian and
CI runner): no Python dependency, and the private key stays in the file a CI secret names. Used
by `pants publish` (signing) and `infra/deploy/deploy` (verifying); standard library only, so it
runs in Pants's Python and in python-default.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from typing import Optional

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SignatureError(Exception):
    """A signature that is missing, malformed or not made by the trusted key."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers (type and body)."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True)


def public_key_pem(private_key_path: str) -> bytes:
    result = _openssl("pkey", "-in", private_key_path, "-pubout")
    if result.returncode != 0:
        raise SignatureError(
            f"{private_key_path} is not a readable private key: {result.stderr.decode().strip()}"
        )
    return result.stdout


def key_id(public_pem: bytes) -> str:
    """The sha256 of the public key's DER encoding: names the key in the envelope."""
    der = b"".join(
        base64.b64decode(line)
        for line in public_pem.decode().splitlines()
        if line and not line.startswith("-----")
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign(payload: bytes, private_key_path: str, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict:
    """A DSSE envelope of payload, signed with the ed25519 private key at private_key_path."""
    public = public_key_pem(private_key_path)
    with tempfile.TemporaryDirectory() as tmp:
        message = os.path.join(tmp, "message")
        with open(message, "wb") as f:
            f.write(pae(payload_type, payload))
        result = _openssl("pkeyutl", "-sign", "-rawin", "-inkey", private_key_path, "-in", message)
    if result.returncode != 0 or len(result.stdout) != 64:
        raise SignatureError(
            f"signing with {private_key_path} failed (an ed25519 key is needed): "
            f"{result.stderr.decode().strip()}"
        )
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(public), "sig": base64.b64encode(result.stdout).decode()}],
    }


def verify(envelope: dict, public_key_path: str) -> bytes:
    """The payload of envelope if one of its signatures is by the key at public_key_path;
    otherwise SignatureError saying what is wrong."""
    try:
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
    except (KeyError, TypeError, ValueError) as e:
        raise SignatureError(f"not a DSSE envelope ({e!r})") from None
    if not signatures:
        raise SignatureError("the envelope is unsigned")
    with open(public_key_path, "rb") as f:
        trusted = f.read()
    trusted_id = key_id(trusted)
    with tempfile.TemporaryDirectory() as tmp:
        message = os.path.join(tmp, "message")
        with open(message, "wb") as f:
            f.write(pae(payload_type, payload))
        for signature in signatures:
            sig_file = os.path.join(tmp, "sig")
            try:
                sig = base64.b64decode(signature["sig"], validate=True)
            except (KeyError, TypeError, ValueError):
                continue
            with open(sig_file, "wb") as f:
                f.write(sig)
            result = _openssl(
                "pkeyutl", "-verify", "-pubin", "-inkey", public_key_path, "-rawin",
                "-in", message, "-sigfile", sig_file,
            )  # fmt: skip
            if result.returncode == 0:
                return payload
    ids = ", ".join(str(s.get("keyid")) for s in signatures if isinstance(s, dict))
    raise SignatureError(
        f"no valid signature by the trusted key {trusted_id} ({public_key_path}); "
        f"signed by: {ids or 'nothing readable'}"
        + (" (the payload or signature was altered)" if trusted_id in ids else "")
    )


def statement_of(envelope: dict, public_key_path: str, payload_type: Optional[str] = None) -> dict:
    """The verified in-toto Statement inside envelope."""
    payload = verify(envelope, public_key_path)
    if envelope.get("payloadType") != (payload_type or IN_TOTO_PAYLOAD_TYPE):
        raise SignatureError(f"payloadType {envelope.get('payloadType')!r} is not in-toto")
    try:
        return json.loads(payload)
    except ValueError as e:
        raise SignatureError(f"the signed payload is not JSON: {e}") from None
