"""A model trained on a dataset kept in the artifact store (real nginx, real `./pants`, a real
authenticated BuildGrid as the team cache): fetched once, verified, never downloaded again by the
same machine, named in the artifact; and a second machine on the warm team cache downloads
nothing from the store and trains nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from infra.datastore.testing import RunningDatastore, running_datastore
from tests.e2e.machines import Machine
from tests.e2e.scratch_repo import PantsRun, ScratchRepo
from tests.support.remote_cache import running_cache

MODEL = "models/tiny_remote:tiny_remote"
ONNX = "dist/models/tiny_remote/model.onnx"


def digits_with_nonce(repo: ScratchRepo) -> bytes:
    """The digits dataset with an extra array of new random bytes: a file no cache holds yet
    (the loader reads only the arrays it knows)."""
    with np.load(repo.root / "models/datasets/digits.npz") as npz:
        arrays = dict(npz)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, nonce=np.frombuffer(os.urandom(32), dtype=np.uint8))
    return buffer.getvalue()


def store_env(store: RunningDatastore) -> dict[str, str]:
    return {
        "DATASTORE_NETRC": store.env["DATASTORE_NETRC"],
        "PANTS_CA_CERTS_PATH": store.env["DATASTORE_CA_BUNDLE"],
    }


def package(machine: Machine, options: list[str], env: dict[str, str]) -> PantsRun:
    # --no-pantsd: each run is a new Pants process, as on a developer's next day.
    return machine.run(["./pants", "--no-pantsd", *options, "package", "models/tiny_remote:"], env)


def store_requests(store: RunningDatastore) -> int:
    """Every request the store answered (any method, any status)."""
    return len((store.directory / "access.log").read_text().splitlines())


def test_a_model_on_a_dataset_in_the_store(tmp_path: Path) -> None:
    repo = ScratchRepo(tmp_path / "A" / "repo")
    dataset = tmp_path / "remote_digits.npz"
    dataset.write_bytes(digits_with_nonce(repo))
    with running_datastore(tmp_path / "store") as store, running_cache(tmp_path / "cache") as cache:
        stanza = store.upload(dataset)
        url = stanza.split('url="')[1].split('"')[0]
        repo.write("models/datasets/BUILD", repo.read("models/datasets/BUILD") + "\n" + stanza)
        repo.add_tiny_model("tiny_remote", uses_shared=False)
        build = repo.read("models/tiny_remote/BUILD")
        repo.write(
            "models/tiny_remote/BUILD",
            build.replace("//models/datasets:digits", "//models/datasets:remote_digits"),
        )
        repo_b = repo.clone(tmp_path / "B" / "x" / "y" / "checkout")
        # A is CI (writes the team cache) on this computer; B a developer's computer: its own
        # HOME, caches, checkout path, interpreters, PATH, LANG and toolchain root.
        a = Machine("A", tmp_path / "A", repo.root, depth=0, own_interpreters=False, isolated=False)
        b = Machine(
            "B", tmp_path / "B", repo_b.root, depth=3, reverse_path=True, lang="de_DE.UTF-8"
        )
        ci = ["--pants-config-files=pants.ci.toml", *cache.pants_options("ci")]

        first = package(a, ci, store_env(store))
        assert first.returncode == 0, first.output
        assert first.trained == [MODEL]
        assert store.downloads("remote_digits.npz") == 1

        description = json.loads(repo.read("dist/models/tiny_remote/model.json"))
        assert description["dataset"] == {
            "address": "models/datasets:remote_digits",
            "file": "models/datasets/remote_digits.npz",
            "sha256": stanza.split('sha256="')[1].split('"')[0],
            "url": url,
        }
        report = repo.read("dist/models/tiny_remote/report.html")
        assert url in report

        # A new Pants session on this machine: nothing trains and nothing is downloaded.
        second = package(a, ci, store_env(store))
        assert second.returncode == 0, second.output
        assert second.trained == []
        assert store.downloads("remote_digits.npz") == 1

        # B has no credentials for the store, nor its CA: a request would fail. It needs none.
        requests_before = store_requests(store)
        on_b = package(b, cache.pants_options("developer"), {})
        assert on_b.returncode == 0, on_b.output
        assert on_b.trained == [], on_b.output
        assert store_requests(store) == requests_before, "B must not ask the store for anything"
        assert b.toolchain_installed(), "B must run its own Pants install, not A's"
        model_a, model_b = ((r.root / ONNX).read_bytes() for r in (repo, repo_b))
        assert hashlib.sha256(model_b).digest() == hashlib.sha256(model_a).digest()
        assert (
            json.loads(repo_b.read("dist/models/tiny_remote/model.json"))["dataset"]
            == (description["dataset"])
        )
