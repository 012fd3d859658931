"""The file behind an `ml_dataset`: committed to the repository, or fetched from the artifact store.

A fetched dataset is downloaded by Pants's engine (`NativeDownloadFile`), which checks the length
and sha256 while streaming and keeps the file in the local store by digest: one machine downloads
an unchanged dataset once. The credentials become an `Authorization` header, which the engine
keeps out of every cache key; only the URL and the digest identify the file.
"""

from __future__ import annotations

import base64
import netrc
import os
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    AddPrefix,
    Digest,
    DigestEntries,
    FileDigest,
    FileEntry,
    NativeDownloadFile,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from mlbuild.target_types import (
    DatasetSha256Field,
    DatasetSizeField,
    DatasetSourceField,
    DatasetUrlField,
)

# Where the credentials for the store come from: a netrc-style file named by DATASTORE_NETRC
# (default ~/.netrc), or DATASTORE_USERNAME with DATASTORE_PASSWORD.
CREDENTIAL_ENV_VARS = ("DATASTORE_NETRC", "DATASTORE_USERNAME", "DATASTORE_PASSWORD", "HOME")


class DatasetFetchError(Exception):
    """A dataset could not be fetched from the artifact store, or is not the declared file."""


class DatasetDigestMismatch(Exception):
    """The dataset file is not the one its `ml_dataset` target declares."""


def dataset_file_path(target: Target) -> str:
    """Where the dataset's file is in every sandbox: its `source`, or for a dataset in the store
    the URL's file name in the target's directory (as for an `http_source`)."""
    return target[DatasetSourceField].file_path


@dataclass(frozen=True)
class DatasetFileRequest:
    address: Address


@dataclass(frozen=True)
class DatasetFile:
    """The dataset's file, verified, in a digest of its own at `path`."""

    address: Address
    path: str
    sha256: str
    url: str | None
    size: int
    digest: Digest


def _credentials(url: str, env: EnvironmentVars) -> tuple[dict[str, str], str]:
    """The Authorization header for url's host, and where it came from (for error messages)."""
    host = urlparse(url).hostname or ""
    if env.get("DATASTORE_USERNAME") and env.get("DATASTORE_PASSWORD"):
        user, password = env["DATASTORE_USERNAME"], env["DATASTORE_PASSWORD"]
        origin = "DATASTORE_USERNAME/DATASTORE_PASSWORD"
    else:
        path = env.get("DATASTORE_NETRC") or os.path.join(env.get("HOME") or "~", ".netrc")
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            return {}, f"no credentials (DATASTORE_NETRC or ~/.netrc: {path} is not a file)"
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (netrc.NetrcParseError, OSError) as e:
            raise DatasetFetchError(f"the credentials file {path} cannot be read: {e}") from e
        if entry is None:
            return {}, f"no credentials for {host} in {path}"
        user, _, password = entry
        origin = f"the credentials for {host} in {path}"
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}, origin


_WRONG_DIGEST = re.compile(
    r"want Digest \{ hash: Fingerprint<(?P<want>[0-9a-f]{64})>, size_bytes: (?P<want_size>\d+) \}"
    r" got Digest \{ hash: Fingerprint<(?P<got>[0-9a-f]{64})>, size_bytes: (?P<got_size>\d+) \}"
)
_HTTP_STATUS = re.compile(r"(?:Client|Server) error \((\d{3})\)")


def describe_fetch_failure(engine_message: str, credentials_origin: str) -> str:
    """What went wrong, in words, from the engine's message for a failed download."""
    wrong = _WRONG_DIGEST.search(engine_message)
    if wrong:
        want_size, got_size = int(wrong["want_size"]), int(wrong["got_size"])
        if got_size < want_size:
            return (
                f"the download was truncated: {got_size} of the declared {want_size} bytes arrived"
            )
        return (
            f"the downloaded file has sha256 {wrong['got']} but the target declares "
            f"{wrong['want']}: the store's file is not the declared dataset"
        )
    if "larger than expected digest" in engine_message:
        return "the store sent more bytes than the declared `size`: it is not the declared dataset"
    status = _HTTP_STATUS.search(engine_message)
    if status:
        code = int(status.group(1))
        if code in (401, 403):
            return f"the store refused access (HTTP {code}); credentials used: {credentials_origin}"
        if code == 404:
            return "the store has no file at this URL (HTTP 404): was it uploaded?"
        return f"the store answered HTTP {code}"
    if re.search(r"certificate|dnsname|tls|handshake", engine_message, re.IGNORECASE):
        return (
            "the store's TLS certificate was not accepted (is its CA in the file named by "
            "`[GLOBAL].ca_certs_path`? infra/datastore/start prints DATASTORE_CA_BUNDLE)"
        )
    if "error sending request" in engine_message or "Error downloading file" in engine_message:
        return "the store is unreachable (no connection could be made)"
    return "the download failed"


@rule(desc="Fetch an ml_dataset's file", level=LogLevel.DEBUG)
async def dataset_file(request: DatasetFileRequest) -> DatasetFile:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an ml_model's dataset"),
    )
    target = wrapped.target
    address = target.address
    declared = target[DatasetSha256Field].value
    path = dataset_file_path(target)
    url = target[DatasetUrlField].value

    if url is None:
        sources = await Get(SourceFiles, SourceFilesRequest([target[DatasetSourceField]]))
        files = [
            e
            for e in await Get(DigestEntries, Digest, sources.snapshot.digest)
            if isinstance(e, FileEntry)
        ]
        if not files:
            raise DatasetDigestMismatch(f"{address}: dataset file {path} is missing")
        actual = files[0].file_digest.fingerprint
        if actual != declared:
            raise DatasetDigestMismatch(
                f"{address}: dataset {path} does not match its declared sha256: declared "
                f"{declared}, actual {actual}. If the change is intended, update the `sha256` "
                "field of the `ml_dataset` target."
            )
        return DatasetFile(
            address,
            path,
            declared,
            None,
            files[0].file_digest.serialized_bytes_length,
            sources.snapshot.digest,
        )

    size = target[DatasetSizeField].value
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(CREDENTIAL_ENV_VARS))
    try:
        headers, origin = _credentials(url, env)
    except DatasetFetchError as e:
        raise DatasetFetchError(f"Cannot fetch dataset {address} from {url}: {e}") from e
    try:
        downloaded = await Get(Digest, NativeDownloadFile(url, FileDigest(declared, size), headers))
    except Exception as e:  # the engine raises a plain exception carrying its message
        raise DatasetFetchError(
            f"Cannot fetch dataset {address} from {url}: "
            f"{describe_fetch_failure(str(e), origin)}.\n(Pants: {str(e).strip()})"
        ) from e
    digest = await Get(Digest, AddPrefix(downloaded, address.spec_path))
    return DatasetFile(address, path, declared, url, size, digest)


def rules():
    return collect_rules()
