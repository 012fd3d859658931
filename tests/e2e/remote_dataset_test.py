"""A model trained on a dataset kept in the artifact store (real nginx, real `./pants`): fetched
once, verified, never downloaded again by the same machine, and named in the artifact."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from infra.datastore.testing import RunningDatastore, running_datastore
from tests.e2e.scratch_repo import ScratchRepo

MODEL = "models/tiny_remote:tiny_remote"


def digits_with_nonce(repo: ScratchRepo) -> bytes:
    """The digits dataset with an extra array of new random bytes: a file no cache holds yet
    (the loader reads only the arrays it knows)."""
    with np.load(repo.root / "models/datasets/digits.npz") as npz:
        arrays = dict(npz)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, nonce=np.frombuffer(os.urandom(32), dtype=np.uint8))
    return buffer.getvalue()


def pants_env(store: RunningDatastore) -> dict[str, str]:
    return {
        "DATASTORE_NETRC": store.env["DATASTORE_NETRC"],
        "PANTS_CA_CERTS_PATH": store.env["DATASTORE_CA_BUNDLE"],
    }


def test_a_model_on_a_dataset_in_the_store(tmp_path: Path) -> None:
    repo = ScratchRepo(tmp_path / "repo")
    dataset = tmp_path / "remote_digits.npz"
    dataset.write_bytes(digits_with_nonce(repo))
    with running_datastore(tmp_path / "store") as store:
        stanza = store.upload(dataset)
        url = stanza.split('url="')[1].split('"')[0]
        repo.write("models/datasets/BUILD", repo.read("models/datasets/BUILD") + "\n" + stanza)
        repo.add_tiny_model("tiny_remote", uses_shared=False)
        build = repo.read("models/tiny_remote/BUILD")
        repo.write(
            "models/tiny_remote/BUILD",
            build.replace("//models/datasets:digits", "//models/datasets:remote_digits"),
        )
        # --no-pantsd: each run is a new Pants process, as on a developer's next day.
        try:
            first = repo.pants("package", "models/tiny_remote:", env=pants_env(store), pantsd=False)
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
            second = repo.pants(
                "package", "models/tiny_remote:", env=pants_env(store), pantsd=False
            )
            assert second.returncode == 0, second.output
            assert second.trained == []
            assert store.downloads("remote_digits.npz") == 1
        finally:
            repo.stop_pantsd()
