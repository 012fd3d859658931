"""DSSE envelopes signed and verified with real ed25519 keys (openssl)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from mlbuild.oci import dsse


def make_key(tmp_path: Path, name: str) -> tuple[str, str]:
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    return str(private), str(public)


def test_pae_is_the_specs_encoding() -> None:
    # The example of the DSSE protocol specification.
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_signs_and_verifies(tmp_path: Path) -> None:
    private, public = make_key(tmp_path, "ci")
    envelope = dsse.sign(b'{"_type": "x"}', private)
    assert envelope["signatures"][0]["keyid"] == dsse.key_id(Path(public).read_bytes())
    assert dsse.statement_of(envelope, public) == {"_type": "x"}


def test_refuses_another_key_a_changed_payload_and_no_signature(tmp_path: Path) -> None:
    private, public = make_key(tmp_path, "ci")
    other, _ = make_key(tmp_path, "other")
    with pytest.raises(dsse.SignatureError, match="no valid signature by the trusted key"):
        dsse.verify(dsse.sign(b"{}", other), public)
    envelope = dsse.sign(b'{"a": 1}', private)
    envelope["payload"] = base64.b64encode(b'{"a": 2}').decode()
    with pytest.raises(dsse.SignatureError, match="altered"):
        dsse.verify(envelope, public)
    envelope["payloadType"] = "text/plain"  # the type is signed too
    with pytest.raises(dsse.SignatureError, match="no valid signature"):
        dsse.verify(dict(dsse.sign(b"{}", private), payloadType="text/plain"), public)
    with pytest.raises(dsse.SignatureError, match="unsigned"):
        dsse.verify({"payloadType": "x", "payload": "", "signatures": []}, public)
    with pytest.raises(dsse.SignatureError, match="not a DSSE envelope"):
        dsse.verify({"payload": "!!"}, public)


def test_refuses_to_sign_with_what_is_not_a_private_key(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("not a key")
    with pytest.raises(dsse.SignatureError, match="not a readable private key"):
        dsse.sign(b"{}", str(tmp_path / "key"))
