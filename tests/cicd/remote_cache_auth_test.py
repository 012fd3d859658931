"""Who may read and write the team cache, asserted over REAPI against a real BuildGrid.

Each test module's server is private (tests/support/remote_cache.py: TLS, JWT, free ports). The
REAPI calls are made by infra/remote-cache/reapi_probe.py, one client per call, with the token and
channel under test; each RPC's gRPC status is compared with what the ACL promises.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.remote_cache import RemoteCache, running_cache

WRITES = ("BatchUpdateBlobs", "Write", "UpdateActionResult")
READS = ("GetCapabilities", "FindMissingBlobs", "BatchReadBlobs", "Read", "GetActionResult")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteCache]:
    with running_cache(tmp_path_factory.mktemp("cache")) as running:
        yield running


@pytest.fixture(scope="module")
def ci_wrote(cache: RemoteCache) -> dict:
    """What CI wrote: a blob (BatchUpdateBlobs), another (ByteStream) and an action result."""
    return cache.probe("write", cache.ci_token_path)


def statuses(answer: dict, rpcs: tuple[str, ...]) -> dict[str, str]:
    return {rpc: answer[rpc] for rpc in rpcs}


def test_ci_writes_blobs_and_action_results(ci_wrote: dict) -> None:
    assert statuses(ci_wrote, WRITES) == dict.fromkeys(WRITES, "OK")


def test_a_developer_reads_what_ci_wrote(cache: RemoteCache, ci_wrote: dict) -> None:
    for blob in (ci_wrote["blob"], ci_wrote["stream_blob"]):
        answer = cache.probe(
            "read", cache.developer_token_path, blob=blob, action_digest=ci_wrote["action"]
        )
        assert statuses(answer, READS) == dict.fromkeys(READS, "OK"), answer
        assert answer["missing"] == [] and answer["content_ok"] is True
    assert answer["action_outputs"] == [ci_wrote["blob"]]


def test_a_developer_cannot_write_and_is_told_permission_denied(cache: RemoteCache) -> None:
    answer = cache.probe("write", cache.developer_token_path)
    assert statuses(answer, WRITES) == dict.fromkeys(WRITES, "PERMISSION_DENIED")
    # Nothing of it was stored: CI itself finds neither the blobs nor the action result.
    for blob in (answer["blob"], answer["stream_blob"]):
        seen = cache.probe("read", cache.ci_token_path, blob=blob, action_digest=answer["action"])
        assert seen["missing"] == [blob]
        assert seen["Read"] == "NOT_FOUND" and seen["GetActionResult"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "client",
    ["no token", "expired ci token", "ci token signed with another key", "garbage token"],
)
def test_clients_without_a_valid_token_can_do_nothing(
    cache: RemoteCache, ci_wrote: dict, client: str
) -> None:
    token: Path | None = {
        "no token": None,
        "expired ci token": cache.mint_token("ci", "expired", seconds=-60),
        "ci token signed with another key": cache.mint_token("ci", "forged", other_key=True),
        "garbage token": _write(cache.directory / "tokens" / "garbage", "not.a.jwt"),
    }[client]
    writes = cache.probe("write", token)
    assert statuses(writes, WRITES) == dict.fromkeys(WRITES, "UNAUTHENTICATED")
    reads = cache.probe("read", token, blob=ci_wrote["blob"], action_digest=ci_wrote["action"])
    assert statuses(reads, READS) == dict.fromkeys(READS, "UNAUTHENTICATED")


def test_a_developer_token_that_expired_cannot_read(cache: RemoteCache, ci_wrote: dict) -> None:
    token = cache.mint_token("developer", "former", seconds=-1)
    reads = cache.probe("read", token, blob=ci_wrote["blob"], action_digest=ci_wrote["action"])
    assert statuses(reads, READS) == dict.fromkeys(READS, "UNAUTHENTICATED")


def test_plaintext_is_refused_even_with_ci_s_token(cache: RemoteCache, ci_wrote: dict) -> None:
    # The endpoint speaks only TLS: a plaintext client never gets an answer, so no token leaks.
    writes = cache.probe("write", cache.ci_token_path, plaintext=True)
    assert statuses(writes, WRITES) == dict.fromkeys(WRITES, "UNAVAILABLE")
    reads = cache.probe(
        "read",
        cache.ci_token_path,
        plaintext=True,
        blob=ci_wrote["blob"],
        action_digest=ci_wrote["action"],
    )
    assert statuses(reads, READS) == dict.fromkeys(READS, "UNAVAILABLE")


def test_ci_cannot_store_bytes_under_a_digest_they_do_not_have(cache: RemoteCache) -> None:
    answer = cache.probe("mismatch", cache.ci_token_path)
    assert answer["BatchUpdateBlobs"] == "INVALID_ARGUMENT"
    assert answer["Write"] == "INVALID_ARGUMENT"
    seen = cache.probe(
        "read", cache.ci_token_path, blob=answer["claimed"], action_digest=answer["claimed"]
    )
    assert seen["missing"] == [answer["claimed"]]


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


def test_the_action_result_store_wants_its_password(cache: RemoteCache, ci_wrote: dict) -> None:
    """Redis holds the action results: writing there directly would bypass the ACL."""
    assert "NOAUTH" in cache.redis_cli("set", "poison", "x", password=False)
    assert "NOAUTH" in cache.redis_cli("keys", "*", password=False)
    assert int(cache.redis_cli("dbsize")) > 0  # BuildGrid's own login works (CI wrote)
    assert cache.redis_password_path.stat().st_mode & 0o077 == 0


def test_a_blob_that_does_not_match_its_digest_is_never_served(cache: RemoteCache) -> None:
    """Bytes changed on the server's disk (corruption, or a write behind BuildGrid's back): no
    client gets them, the action result that needs them stops being a hit, and CI's next upload
    of the right bytes repairs the entry."""
    nonce = uuid.uuid4().hex
    wrote = cache.probe("write", cache.ci_token_path, nonce=nonce)
    assert statuses(wrote, WRITES) == dict.fromkeys(WRITES, "OK")
    blob, action = wrote["blob"], wrote["action"]
    path = cache.blob_path(blob)
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, other hash

    seen = cache.probe("read", cache.developer_token_path, blob=blob, action_digest=action)
    assert seen["content_ok"] is False
    assert seen["Read"] == "NOT_FOUND" and seen["GetActionResult"] == "NOT_FOUND", seen
    assert (cache.quarantine_dir / blob.partition("/")[0]).exists()
    # From then on the server says it does not have the blob, so CI's next upload stores it.
    again = cache.probe("read", cache.ci_token_path, blob=blob, action_digest=action)
    assert again["missing"] == [blob] and again["GetActionResult"] == "NOT_FOUND"

    rewrote = cache.probe("write", cache.ci_token_path, nonce=nonce)
    assert (rewrote["blob"], rewrote["action"]) == (blob, action)
    assert statuses(rewrote, WRITES) == dict.fromkeys(WRITES, "OK")
    healed = cache.probe("read", cache.developer_token_path, blob=blob, action_digest=action)
    assert statuses(healed, READS) == dict.fromkeys(READS, "OK"), healed
    assert healed["content_ok"] is True
    assert path.read_bytes() == good


def test_after_key_rotation_old_tokens_are_refused_and_new_ones_work(tmp_path: Path) -> None:
    """infra/remote-cache/rotate-signing-key on a server of its own; what CI wrote before the
    rotation survives it (the server restarts; results are in Redis and on disk)."""
    with running_cache(tmp_path / "cache") as cache:
        before = cache.probe("write", cache.ci_token_path)
        assert statuses(before, WRITES) == dict.fromkeys(WRITES, "OK")
        old_ci = shutil.copy(cache.ci_token_path, tmp_path / "old-ci.token")
        old_dev = shutil.copy(cache.developer_token_path, tmp_path / "old-dev.token")

        cache.rotate_signing_key()

        refused = cache.probe("write", Path(old_ci))
        assert statuses(refused, WRITES) == dict.fromkeys(WRITES, "UNAUTHENTICATED")
        blob, action = before["blob"], before["action"]
        stale = cache.probe("read", Path(old_dev), blob=blob, action_digest=action)
        assert statuses(stale, READS) == dict.fromkeys(READS, "UNAUTHENTICATED")

        after = cache.probe("write", cache.ci_token_path)
        assert statuses(after, WRITES) == dict.fromkeys(WRITES, "OK")
        read = cache.probe("read", cache.developer_token_path, blob=blob, action_digest=action)
        assert statuses(read, READS) == dict.fromkeys(READS, "OK"), read
        assert read["content_ok"] is True
