"""attestation_tool.py on small inputs: what the SBOM and the unsigned statement hold, that they
are reproducible and free of anything that changes per commit, and its refusals."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mlbuild.oci import attestation_tool

DIGEST = "sha256:" + "12" * 32
WHEEL = "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def write_inputs(tmp_path: Path, wheels: list[str]) -> list[str]:
    summary = {"digest": DIGEST, "repository": "ml/m", "tag": "aaaa"}
    model = {
        "name": "m",
        "version": "aa" * 32,
        "address": "models/m:m",
        "inputs_digest": "bb" * 32,
        "framework": "torch",
        "artifact": {"file": "model.onnx", "sha256": "aa" * 32},
        "dataset": {"address": "models/datasets:d", "file": "d.npz", "sha256": "cc" * 32},
    }
    pins = {
        "distribution": "bookworm",
        "architecture": "amd64",
        "packages": [
            {
                "name": "libc6",
                "version": "2.36-9",
                "archive": "debian",
                "filename": "pool/main/g/glibc/libc6_2.36-9_amd64.deb",
                "size": 1,
                "sha256": "dd" * 32,
            }
        ],
    }
    lock = {
        "locked_resolves": [
            {
                "locked_requirements": [
                    {
                        "artifacts": [
                            {
                                "url": f"https://files.example/{WHEEL}",
                                "algorithm": "sha256",
                                "hash": "ee" * 32,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (tmp_path / "image.json").write_text(json.dumps(summary))
    (tmp_path / "layer.json").write_text(json.dumps({"model": model}))
    (tmp_path / "pins.json").write_text(json.dumps(pins))
    (tmp_path / "default.lock").write_text("// header\n// more\n" + json.dumps(lock))
    for wheel in wheels:
        (tmp_path / "requirements.pex" / ".deps" / wheel).mkdir(parents=True)
    return [
        f"--summary={tmp_path / 'image.json'}",
        f"--model-layer={tmp_path / 'layer.json'}",
        f"--pins={tmp_path / 'pins.json'}",
        f"--requirements={tmp_path / 'requirements.pex'}",
        f"--lockfile=python-default={tmp_path / 'default.lock'}",
        "--pants-version=2.17.1",
        "--address=models/m:image",
        f"--sbom={tmp_path / 'out' / 'sbom.json'}",
        f"--statement={tmp_path / 'out' / 'statement.json'}",
    ]


def test_sbom_and_statement(tmp_path: Path) -> None:
    args = write_inputs(tmp_path, [WHEEL])
    attestation_tool.main(args)
    sbom = json.loads((tmp_path / "out" / "sbom.json").read_text())
    deb, wheel, model = sbom["components"]
    assert (deb["purl"], deb["hashes"]) == (
        "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-bookworm",
        [{"alg": "SHA-256", "content": "dd" * 32}],
    )
    assert (wheel["name"], wheel["version"], wheel["hashes"][0]["content"]) == (
        "numpy",
        "2.4.6",
        "ee" * 32,
    )
    assert model["type"] == "machine-learning-model" and model["version"] == "aa" * 32
    statement_text = (tmp_path / "out" / "statement.json").read_text()
    statement = json.loads(statement_text)
    assert statement["subject"] == [{"name": "ml/m", "digest": {"sha256": "12" * 32}}]
    digests = [
        d["digest"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    ]
    for expected in ("bb" * 32, "cc" * 32, "dd" * 32):  # model inputs, dataset, the .deb
        assert {"sha256": expected} in digests
    assert statement["predicate"]["runDetails"]["builder"]["version"] == {"pants": "2.17.1"}
    # Nothing that changes per commit or pipeline: the cached statement outlives commits.
    assert (
        "gitCommit" not in statement_text and statement["predicate"]["runDetails"]["metadata"] == {}
    )
    # Reproducible: the same inputs give the same bytes.
    sbom_bytes = (tmp_path / "out" / "sbom.json").read_bytes()
    attestation_tool.main(args)
    assert (tmp_path / "out" / "sbom.json").read_bytes() == sbom_bytes
    assert (tmp_path / "out" / "statement.json").read_text() == statement_text


def test_refuses_a_wheel_that_no_lockfile_hashes(tmp_path: Path) -> None:
    args = write_inputs(tmp_path, [WHEEL, "evil-1.0-py3-none-any.whl"])
    with pytest.raises(SystemExit, match="evil-1.0-py3-none-any.whl is installed in the image"):
        attestation_tool.main(args)


def test_a_dataset_from_the_artifact_store_is_named_by_its_url(tmp_path: Path) -> None:
    args = write_inputs(tmp_path, [WHEEL])
    layer = json.loads((tmp_path / "layer.json").read_text())
    url = "https://store.example/datasets/cc/d.npz"
    layer["model"]["dataset"]["url"] = url
    (tmp_path / "layer.json").write_text(json.dumps(layer))
    attestation_tool.main(args)
    statement = json.loads((tmp_path / "out" / "statement.json").read_text())
    dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    (dataset,) = (d for d in dependencies if d.get("name", "").startswith("dataset "))
    assert dataset == {
        "name": "dataset models/datasets:d",
        "uri": url,
        "digest": {"sha256": "cc" * 32},
    }
    sbom = json.loads((tmp_path / "out" / "sbom.json").read_text())
    properties = {p["name"]: p["value"] for p in sbom["components"][-1]["properties"]}
    assert properties["ml:dataset:url"] == url


def test_npm_packages_of_the_node_front_end_are_components_and_dependencies(
    tmp_path: Path,
) -> None:
    args = write_inputs(tmp_path, [WHEEL])
    sha512 = bytes(range(64))
    npm_pins = {
        "packages": [
            {
                "path": "node_modules/@grpc/grpc-js",
                "name": "@grpc/grpc-js",
                "version": "1.14.7",
                "url": "https://registry.npmjs.org/@grpc/grpc-js/-/grpc-js-1.14.7.tgz",
                "size": 1,
                "sha256": "ff" * 32,
                "integrity": "sha512-" + base64.b64encode(sha512).decode(),
            }
        ]
    }
    (tmp_path / "npm-pins.json").write_text(json.dumps(npm_pins))
    attestation_tool.main([*args, f"--npm-pins={tmp_path / 'npm-pins.json'}"])
    sbom = json.loads((tmp_path / "out" / "sbom.json").read_text())
    (npm,) = (c for c in sbom["components"] if c.get("purl", "").startswith("pkg:npm/"))
    assert npm["purl"] == "pkg:npm/%40grpc/grpc-js@1.14.7"
    assert npm["hashes"] == [
        {"alg": "SHA-256", "content": "ff" * 32},
        {"alg": "SHA-512", "content": sha512.hex()},
    ]
    statement = json.loads((tmp_path / "out" / "statement.json").read_text())
    dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {
        "uri": "pkg:npm/%40grpc/grpc-js@1.14.7",
        "digest": {"sha256": "ff" * 32},
    } in dependencies
