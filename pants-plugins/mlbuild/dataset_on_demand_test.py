"""A dataset from the store in a process's input by digest only (real nginx store, real local
processes): referencing it downloads nothing; a process that must run gets it fetched first; a
refused fetch keeps its message."""

# ruff: noqa: F811 (the `store` fixture, imported below, is a parameter of the tests)

from __future__ import annotations

import hashlib

import pytest
from pants.core.util_rules import source_files
from pants.engine.fs import Digest, DigestEntries, FileDigest, FileEntry
from pants.engine.internals import platform_rules
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.process import FallibleProcessResult, Process
from pants.testutil.rule_runner import QueryRule, RuleRunner

from infra.datastore.testing import RunningDatastore
from mlbuild import dataset_fetch, dataset_on_demand

# `store`: dataset_fetch_test's fixture (its store, with the file it uploads), used by name here.
from mlbuild.dataset_fetch_test import ADDRESS, fresh_build, fresh_file, store  # noqa: F401
from mlbuild.dataset_on_demand import DatasetInput, DatasetInputRequest, ProcessWithDataset
from mlbuild.target_types import MlDatasetTarget


def make_rule_runner(store: RunningDatastore, netrc: str | None = None) -> RuleRunner:
    rule_runner = RuleRunner(
        ca_certs_path=store.env["DATASTORE_CA_BUNDLE"],
        rules=[
            *dataset_fetch.rules(),
            *dataset_on_demand.rules(),
            *source_files.rules(),
            *platform_rules.rules(),
            QueryRule(DatasetInput, [DatasetInputRequest]),
            QueryRule(FallibleProcessResult, [ProcessWithDataset]),
            QueryRule(DigestEntries, [Digest]),
        ],
        target_types=[MlDatasetTarget],
    )
    rule_runner.set_options([], env={"DATASTORE_NETRC": netrc or store.env["DATASTORE_NETRC"]})
    return rule_runner


def reference(rule_runner: RuleRunner, url: str, content: bytes) -> DatasetInput:
    rule_runner.write_files({"data/BUILD": fresh_build(url, content)})
    return rule_runner.request(DatasetInput, [DatasetInputRequest(ADDRESS)])


def byte_count(dataset: DatasetInput) -> Process:
    return Process(
        argv=("/bin/sh", "-c", "/usr/bin/wc -c < data/d.npz"),
        input_digest=dataset.digest,
        description="Count the dataset's bytes",
    )


def test_a_reference_names_the_file_by_digest_and_downloads_nothing(store: RunningDatastore):
    url, content = fresh_file(store, "d.npz")
    before = store.downloads("d.npz")
    rule_runner = make_rule_runner(store)
    dataset = reference(rule_runner, url, content)
    assert dataset.url == url
    assert dataset.sha256 == hashlib.sha256(content).hexdigest()
    entries = rule_runner.request(DigestEntries, [dataset.digest])
    assert list(entries) == [FileEntry("data/d.npz", FileDigest(dataset.sha256, len(content)))]
    assert store.downloads("d.npz") == before


def test_a_process_that_must_run_gets_the_file_fetched_once(store: RunningDatastore):
    url, content = fresh_file(store, "d.npz")
    before = store.downloads("d.npz")
    rule_runner = make_rule_runner(store)
    dataset = reference(rule_runner, url, content)
    result = rule_runner.request(
        FallibleProcessResult, [ProcessWithDataset(byte_count(dataset), dataset)]
    )
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout.decode()) == len(content)
    assert store.downloads("d.npz") == before + 1


def test_a_refused_fetch_keeps_its_message(store: RunningDatastore, tmp_path):
    url, content = fresh_file(store, "d.npz")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login ci password not-the-password\n")
    rule_runner = make_rule_runner(store, netrc=str(netrc))
    dataset = reference(rule_runner, url, content)
    with pytest.raises(ExecutionError) as caught:
        rule_runner.request(
            FallibleProcessResult, [ProcessWithDataset(byte_count(dataset), dataset)]
        )
    message = str(caught.value)
    assert f"Cannot fetch dataset {ADDRESS} from {url}" in message
    assert "refused access (HTTP 401)" in message
