"""Fetching an `ml_dataset` from a real artifact store (nginx over HTTPS with basic auth, started
by infra/datastore/start on a free port): success, no second download, and each failure mode."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pants.core.util_rules import source_files
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents
from pants.engine.internals import platform_rules
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import QueryRule, RuleRunner

from infra.datastore.testing import RunningDatastore, running_datastore
from mlbuild import dataset_fetch
from mlbuild.dataset_fetch import DatasetFile, DatasetFileRequest
from mlbuild.target_types import MlDatasetTarget

# New bytes on every run: Pants fetches nothing whose digest its local store already holds (from
# any URL), and the store outlives a test run.
CONTENT = os.urandom(1 << 20)
SHA = hashlib.sha256(CONTENT).hexdigest()
ADDRESS = Address("data", target_name="d")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDatastore]:
    directory = tmp_path_factory.mktemp("store")
    with running_datastore(directory) as store:
        dataset = directory / "upload" / "d.npz"
        dataset.parent.mkdir()
        dataset.write_bytes(CONTENT)
        store.upload(dataset)
        yield store


def make_rule_runner(store: RunningDatastore | None, **env: str) -> RuleRunner:
    rule_runner = RuleRunner(
        # Pants's downloads trust the store's CA through `ca_certs_path` (the system's CAs plus it).
        ca_certs_path=store.env["DATASTORE_CA_BUNDLE"] if store else None,
        rules=[
            *dataset_fetch.rules(),
            *source_files.rules(),
            *platform_rules.rules(),
            QueryRule(DatasetFile, [DatasetFileRequest]),
            QueryRule(DigestContents, [Digest]),
        ],
        target_types=[MlDatasetTarget],
    )
    if store:
        env = {"DATASTORE_NETRC": store.env["DATASTORE_NETRC"], **env}
    rule_runner.set_options([], env=env)
    return rule_runner


def dataset_build(url: str, *, size: int = len(CONTENT), sha256: str = SHA) -> str:
    return f'ml_dataset(name="d", url="{url}", size={size}, sha256="{sha256}")\n'


def stored_url(store: RunningDatastore, name: str = "d.npz") -> str:
    return f"{store.url}/datasets/{SHA}/{name}"


def fetch(rule_runner: RuleRunner, build: str) -> DatasetFile:
    rule_runner.write_files({"data/BUILD": build})
    return rule_runner.request(DatasetFile, [DatasetFileRequest(ADDRESS)])


def fetch_error(rule_runner: RuleRunner, build: str) -> str:
    with pytest.raises(ExecutionError) as caught:
        fetch(rule_runner, build)
    return str(caught.value)


def test_fetches_verifies_and_places_the_file_in_the_targets_directory(store: RunningDatastore):
    before = store.downloads("d.npz")
    rule_runner = make_rule_runner(store)
    fetched = fetch(rule_runner, dataset_build(stored_url(store)))
    assert fetched.path == "data/d.npz"
    assert fetched.url == stored_url(store)
    (content,) = rule_runner.request(DigestContents, [fetched.digest])
    assert content.path == "data/d.npz"
    assert content.content == CONTENT
    assert store.downloads("d.npz") == before + 1


def test_an_unchanged_dataset_is_not_downloaded_again_by_a_new_session(store: RunningDatastore):
    rule_runner = make_rule_runner(store)
    fetch(rule_runner, dataset_build(stored_url(store)))
    after_first = store.downloads("d.npz")
    # A new session over the same local store (as a later `./pants` run on this machine).
    rule_runner.new_session("second run")
    rule_runner.set_options([], env={"DATASTORE_NETRC": store.env["DATASTORE_NETRC"]})
    fetched = fetch(rule_runner, dataset_build(stored_url(store)))
    assert fetched.sha256 == SHA
    assert store.downloads("d.npz") == after_first


def test_a_wrong_digest_is_refused(store: RunningDatastore):
    wrong = "0" * 64
    message = fetch_error(make_rule_runner(store), dataset_build(stored_url(store), sha256=wrong))
    assert f"Cannot fetch dataset {ADDRESS} from {stored_url(store)}" in message
    assert f"the downloaded file has sha256 {SHA} but the target declares {wrong}" in message


def fresh_file(store: RunningDatastore, name: str) -> tuple[str, bytes]:
    """New random bytes put straight into the store's directory; their URL and content."""
    content = os.urandom(1 << 16)
    sha256 = hashlib.sha256(content).hexdigest()
    path = store.data / "datasets" / sha256 / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return f"{store.url}/datasets/{sha256}/{name}", content


def fresh_build(url: str, content: bytes) -> str:
    return dataset_build(url, size=len(content), sha256=hashlib.sha256(content).hexdigest())


def test_a_truncated_download_is_refused(store: RunningDatastore):
    url, content = fresh_file(store, "short.npz")
    # The store holds only the first half of the file the target declares.
    Path(store.data, urlparse(url).path.lstrip("/")).write_bytes(content[: len(content) // 2])
    message = fetch_error(make_rule_runner(store), fresh_build(url, content))
    assert f"Cannot fetch dataset {ADDRESS} from {url}" in message
    assert f"truncated: {len(content) // 2} of the declared {len(content)} bytes" in message


def test_wrong_credentials_are_refused_with_where_they_came_from(store: RunningDatastore, tmp_path):
    url, content = fresh_file(store, "d.npz")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login ci password not-the-password\n")
    rule_runner = make_rule_runner(store, DATASTORE_NETRC=str(netrc))
    message = fetch_error(rule_runner, fresh_build(url, content))
    assert f"Cannot fetch dataset {ADDRESS} from {url}" in message
    assert "refused access (HTTP 401)" in message
    assert f"credentials for localhost in {netrc}" in message
    assert "not-the-password" not in message


def test_missing_credentials_are_named(store: RunningDatastore, tmp_path):
    url, content = fresh_file(store, "d.npz")
    rule_runner = make_rule_runner(store, DATASTORE_NETRC=str(tmp_path / "none"))
    message = fetch_error(rule_runner, fresh_build(url, content))
    assert "refused access (HTTP 401)" in message
    assert f"{tmp_path / 'none'} is not a file" in message


def test_a_file_missing_from_the_store_is_a_404(store: RunningDatastore):
    url = stored_url(store, "never-uploaded.npz")
    message = fetch_error(make_rule_runner(store), dataset_build(url, sha256="1" * 64))
    assert f"Cannot fetch dataset {ADDRESS} from {url}" in message
    assert "no file at this URL (HTTP 404)" in message


def test_an_unreachable_store_is_named(store: RunningDatastore):
    with socket.socket() as s:  # a port nobody listens on: bind one, and close it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://localhost:{port}/datasets/{SHA}/d.npz"
    message = fetch_error(make_rule_runner(store), dataset_build(url, sha256="2" * 64))
    assert f"Cannot fetch dataset {ADDRESS} from {url}" in message
    assert "unreachable" in message


def test_a_committed_file_is_checked_against_its_sha256() -> None:
    rule_runner = make_rule_runner(None)
    rule_runner.write_files({"data/d.npz": CONTENT})
    fetched = fetch(rule_runner, f'ml_dataset(name="d", source="d.npz", sha256="{SHA}")')
    assert (fetched.path, fetched.url, fetched.size) == ("data/d.npz", None, len(CONTENT))
    message = fetch_error(rule_runner, f'ml_dataset(name="d", source="d.npz", sha256="{"3" * 64}")')
    assert f"{ADDRESS}: dataset data/d.npz does not match its declared sha256" in message
    assert f"actual {SHA}" in message


def test_credentials_from_the_environment(store: RunningDatastore, tmp_path) -> None:
    url, content = fresh_file(store, "d.npz")
    password = Path(store.env["DATASTORE_PASSWORD_FILE"]).read_text().strip()
    rule_runner = make_rule_runner(
        store,
        DATASTORE_NETRC=str(tmp_path / "none"),
        DATASTORE_USERNAME="ci",
        DATASTORE_PASSWORD=password,
    )
    fetched = fetch(rule_runner, fresh_build(url, content))
    (fetched_content,) = rule_runner.request(DigestContents, [fetched.digest])
    assert fetched_content.content == content
