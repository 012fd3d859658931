"""A dataset from the artifact store in a process's input by digest only: its bytes are fetched
only when the process really runs.

A process's cache key needs only the digest of its input root, and a dataset's digest is known
from its `ml_dataset` target (sha256 and size), so the input can name the file without holding
it. On a warm team cache (a hit) nothing is downloaded: a second machine needs no credentials for
the store and no bandwidth. When the process must run, Pants looks for the bytes in the local
store, then in the team cache's CAS; if neither holds them, materializing the sandbox fails with
the missing digest. This rule then fetches the dataset (`DatasetFile`: verified, with its clear
errors) and runs the same process again: same cache key, so its result is shared as usual. The
first try is logged at DEBUG (a try that fails for want of the bytes trains nothing); a try that
really ran is logged as `Ran: <description>`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileDigest, FileEntry
from pants.engine.internals.session import RunId
from pants.engine.process import FallibleProcessResult, Process, ProcessResultMetadata
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from mlbuild.dataset_fetch import DatasetFile, DatasetFileRequest, dataset_file_path
from mlbuild.target_types import DatasetSha256Field, DatasetSizeField, DatasetUrlField

logger = logging.getLogger(__name__)

# How long a process whose dataset is referenced by digest waits for the team cache's answer
# before it may start locally: as long as one cache call may take (`remote_store_rpc_timeout_millis`).
CACHE_LOOKUP_FIRST_MILLIS = 30_000


@dataclass(frozen=True)
class DatasetInputRequest:
    address: Address


@dataclass(frozen=True)
class DatasetInput:
    """The dataset's file for a process's input: by digest only if it lives in the store (then
    `url` is set), else the verified committed file."""

    address: Address
    sha256: str
    url: str | None
    digest: Digest


@rule(desc="Reference an ml_dataset's file by digest", level=LogLevel.DEBUG)
async def dataset_input(request: DatasetInputRequest) -> DatasetInput:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an ml_model's dataset"),
    )
    target = wrapped.target
    url = target[DatasetUrlField].value
    if url is None:
        committed = await Get(DatasetFile, DatasetFileRequest(request.address))
        return DatasetInput(request.address, committed.sha256, None, committed.digest)
    sha256 = target[DatasetSha256Field].value
    size = target[DatasetSizeField].value
    digest = await Get(
        Digest,
        CreateDigest([FileEntry(dataset_file_path(target), FileDigest(sha256, size))]),
    )
    return DatasetInput(request.address, sha256, url, digest)


@dataclass(frozen=True)
class ProcessWithDataset:
    """A process whose input holds `dataset` (perhaps by digest only)."""

    process: Process
    dataset: DatasetInput


@rule(desc="Run a process that reads a dataset", level=LogLevel.DEBUG)
async def run_process_with_dataset(
    request: ProcessWithDataset, run_id: RunId
) -> FallibleProcessResult:
    process, dataset = request.process, request.dataset
    if dataset.url is None:
        return await Get(FallibleProcessResult, Process, process)
    # First try without the bytes, quietly: a cache hit, or a run with the file from the local
    # store or the team cache's CAS. Pants 2.17 races a local run against the cache lookup; here
    # the local run would fail at once for want of the bytes and win, so it waits for the lookup
    # (a miss or an error ends the wait). Neither the level nor the delay is in the cache key.
    first_try = dataclasses.replace(
        process,
        level=LogLevel.DEBUG,
        remote_cache_speculation_delay_millis=CACHE_LOOKUP_FIRST_MILLIS,
    )
    try:
        result = await Get(FallibleProcessResult, Process, first_try)
    except Exception as e:  # the engine raises a plain exception naming the missing digest
        if dataset.sha256 not in str(e):
            raise
    else:
        if result.metadata.source(run_id) == ProcessResultMetadata.Source.RAN:
            logger.info(f"Ran: {process.description} (its dataset's file was already at hand)")
        return result
    # The file is in neither store: fetch it (verified, into the local store), then run the
    # process as given. A missing-digest failure is not memoized by the engine (measured).
    await Get(DatasetFile, DatasetFileRequest(dataset.address))
    return await Get(FallibleProcessResult, Process, process)


def rules():
    return collect_rules()
