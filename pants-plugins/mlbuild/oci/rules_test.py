"""The plugin's rules in a RuleRunner: field validation, apt sources, and the base layer built
from pinned .deb files (served from a file:// mirror, checked by sha256)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml  # pants: no-infer-dep
from pants.core.util_rules import adhoc_binaries, source_files
from pants.engine.addresses import Address
from pants.engine.fs import DigestContents
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import InvalidFieldException
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mlbuild.npm import rules as npm_rules
from mlbuild.npm.npm_tool_test import make_tgz
from mlbuild.npm.rules_test import pin as npm_pin
from mlbuild.npm.target_types import NpmPackagesTarget
from mlbuild.oci import rules as oci_rules
from mlbuild.oci.oci_tool_test import make_deb
from mlbuild.oci.rules import (
    BaseLayerRequest,
    ImageLayer,
    NodePackagesLayer,
    NodePackagesLayerRequest,
    apt_source_urls,
    frontend_arg,
)
from mlbuild.oci.target_types import (
    DebianPackagesTarget,
    ModelImageModelField,
    ModelImagePortField,
    ModelImageRepositoryField,
    ModelImageTarget,
)


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            oci_rules.setup_oci_tool,
            oci_rules.run_oci_tool,
            oci_rules.build_base_layer,
            oci_rules.build_node_packages_layer,
            *npm_rules.rules(),
            *oci_rules.OciSubsystem.rules(),
            *adhoc_binaries.rules(),
            *source_files.rules(),
            QueryRule(ImageLayer, [BaseLayerRequest]),
            QueryRule(NodePackagesLayer, [NodePackagesLayerRequest]),
            QueryRule(DigestContents, [oci_rules.Digest]),
        ],
        target_types=[DebianPackagesTarget, ModelImageTarget, NpmPackagesTarget],
    )


def pins(debs: dict[str, bytes]) -> str:
    packages = [
        {
            "name": name,
            "version": "1.0",
            "archive": "debian",
            "filename": f"pool/main/{name}_1.0_amd64.deb",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, data in debs.items()
    ]
    return json.dumps({"packages": packages})


def build_base(
    rule_runner: RuleRunner, tmp_path: Path, pins_json: str
) -> dict[str, tarfile.TarInfo]:
    rule_runner.write_files(
        {
            "base/BUILD": 'debian_packages(name="base", source="pins.json")',
            "base/pins.json": pins_json,
        }
    )
    rule_runner.set_options([f'--oci-debian-mirrors={{"debian": "file://{tmp_path}"}}'])
    layer = rule_runner.request(ImageLayer, [BaseLayerRequest(Address("base", target_name="base"))])
    files = {f.path: f.content for f in rule_runner.request(DigestContents, [layer.digest])}
    meta = json.loads(files["layer/layer.json"])
    blob = files["layer/layer.tar.gz"]
    assert meta["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_base_layer_from_pinned_debs(rule_runner: RuleRunner, tmp_path: Path) -> None:
    (tmp_path / "pool" / "main").mkdir(parents=True)
    deb = tmp_path / "pool" / "main" / "python_1.0_amd64.deb"
    make_deb(deb, {"usr/bin/python3.11": b"ELF"})
    members = build_base(rule_runner, tmp_path, pins({"python": deb.read_bytes()}))
    assert members["usr/bin/python3.11"].size == 3
    assert members["usr/bin/python3"].linkname == "python3.11"
    assert "etc/passwd" in members


def test_base_layer_refuses_a_deb_whose_sha256_differs(
    rule_runner: RuleRunner, tmp_path: Path
) -> None:
    (tmp_path / "pool" / "main").mkdir(parents=True)
    deb = tmp_path / "pool" / "main" / "python_1.0_amd64.deb"
    make_deb(deb, {"usr/bin/python3.11": b"ELF"})
    pinned = pins({"python": deb.read_bytes()})
    make_deb(deb, {"usr/bin/python3.11": b"EVIL"})
    with pytest.raises(ExecutionError, match="[Dd]igest"):
        build_base(rule_runner, tmp_path, pinned)


def test_apt_source_urls_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "deb http://mirror.example/debian-security bookworm-security main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert apt_source_urls(str(tmp_path)) == {
        "debian": "http://mirror.example/debian",
        "debian-security": "http://mirror.example/debian-security",
    }


def test_model_image_fields_are_checked(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "img/BUILD": 'model_image(name="ok", model="//m:model", server="//s:server", base="//b:base")',
        }
    )
    target = rule_runner.get_target(Address("img", target_name="ok"))
    assert target[ModelImagePortField].value == 8500
    assert target[ModelImageRepositoryField].value is None
    with pytest.raises(InvalidFieldException, match="lowercase repository"):
        ModelImageRepositoryField("ML/Digits", Address("img"))
    with pytest.raises(InvalidFieldException, match="TCP port"):
        ModelImagePortField(70000, Address("img"))
    with pytest.raises(InvalidFieldException, match="one address"):
        ModelImageModelField(["//a", "//b"], Address("img"))


def test_deployment_manifest_pins_the_image_digest_under_the_registry() -> None:
    digest = "sha256:" + "cd" * 32
    summary = {"model": "digits_cnn_torch", "repository": "ml/digits_cnn_torch", "digest": digest}
    manifest = oci_rules.deployment_manifest(summary, 8500, "registry.example.com/")
    assert manifest.path == "deploy/digits_cnn_torch.yaml"
    deployment, service = yaml.safe_load_all(manifest.content)
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "digits-cnn-torch"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example.com/ml/digits_cnn_torch@{digest}"
    assert container["readinessProbe"]["grpc"]["port"] == 8500
    assert service["spec"]["ports"][0]["port"] == 8500
    # No registry: the repository alone.
    bare = oci_rules.deployment_manifest(summary, 8500, "")
    assert f"image: ml/digits_cnn_torch@{digest}" in bare.content.decode()


def test_deployment_manifest_refuses_an_unpinnable_registry() -> None:
    summary = {"model": "m", "repository": "ml/m", "digest": "sha256:" + "00" * 32}
    with pytest.raises(ValueError, match="pinned by digest"):
        oci_rules.deployment_manifest(summary, 8500, "Registry With Spaces")


def test_node_packages_layer_puts_node_modules_beside_the_front_end_code(
    rule_runner: RuleRunner, tmp_path: Path
) -> None:
    tarball = make_tgz(tmp_path / "a-1.0.0.tgz", {"package.json": b"{}", "index.js": b"x"})
    rule_runner.write_files(
        {
            "serving/node/BUILD": 'npm_packages(name="node_modules", source="pins.json")',
            "serving/node/pins.json": json.dumps(
                {"packages": [npm_pin("node_modules/a", tarball)]}
            ),
            "other/BUILD": 'debian_packages(name="base", source="pins.json")',
            "other/pins.json": pins({}),
        }
    )
    address = Address("serving/node", target_name="node_modules")
    node = rule_runner.request(NodePackagesLayer, [NodePackagesLayerRequest(address)])
    assert node.pins_file == "serving/node/pins.json"
    files = {f.path: f.content for f in rule_runner.request(DigestContents, [node.layer.digest])}
    with tarfile.open(fileobj=io.BytesIO(files["layer/layer.tar.gz"])) as tar:
        names = set(tar.getnames())
    assert {
        "app/serving/node/node_modules/a/index.js",
        "app/serving/node/node_modules/a/package.json",
    } <= names
    with pytest.raises(ExecutionError, match="must be an `npm_packages` target"):
        rule_runner.request(
            NodePackagesLayer, [NodePackagesLayerRequest(Address("other", target_name="base"))]
        )


def test_frontend_arg_reads_both_spellings() -> None:
    assert frontend_arg(["--insecure", "--frontend", "node"]) == "node"
    assert frontend_arg(["--frontend=python"]) == "python"
    assert frontend_arg(["--frontend"]) is None
    assert frontend_arg(["--port", "8500"]) is None
