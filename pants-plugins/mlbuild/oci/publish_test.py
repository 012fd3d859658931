"""The `publish` rule of `model_image` in a RuleRunner: the interactive process it hands Pants's
publish goal (registry from `[oci].registry`, only the allowed environment), and the skip without
a registry. The process itself (publish_tool.py) runs against a real registry in
tests/images/publish_test.py."""

from __future__ import annotations

import json

import pytest
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.core.goals.publish import PublishProcesses
from pants.core.util_rules import adhoc_binaries, distdir
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mlbuild.oci import publish
from mlbuild.oci import rules as oci_rules
from mlbuild.oci.publish import PublishModelImageFieldSet, PublishModelImageRequest
from mlbuild.oci.target_types import ModelImageTarget

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *publish.rules(),
            *oci_rules.OciSubsystem.rules(),
            *adhoc_binaries.rules(),
            *distdir.rules(),
            QueryRule(PublishProcesses, [PublishModelImageRequest]),
            QueryRule(Digest, [CreateDigest]),
        ],
        target_types=[ModelImageTarget],
    )
    runner.write_files(
        {"img/BUILD": 'model_image(name="image", model="//m:m", server="//s:s", base="//b:b")'}
    )
    return runner


def publish_processes(rule_runner: RuleRunner, args: list[str], env: dict[str, str]):
    rule_runner.set_options(args, env=env, env_inherit={"PATH"})
    summary = {"repository": "ml/m", "tag": "abababababab", "digest": DIGEST, "reference": "ml/m:x"}
    files = {
        "img/image.tar": b"tar",
        "img/image.digest": DIGEST.encode(),
        "img/image.json": json.dumps(summary).encode(),
        "deploy/m.yaml": b"",
        "img/image.sbom.cdx.json": b"{}",
        "img/image.provenance.json": b"{}",
    }
    digest = rule_runner.request(
        Digest, [CreateDigest([FileContent(path, data) for path, data in files.items()])]
    )
    package = BuiltPackage(digest, tuple(BuiltPackageArtifact(path) for path in files))
    target = rule_runner.get_target(Address("img", target_name="image"))
    request = PublishModelImageRequest(PublishModelImageFieldSet.create(target), (package,))
    return rule_runner.request(PublishProcesses, [request])


def test_publishes_to_the_configured_registry_with_only_the_allowed_environment(
    rule_runner: RuleRunner,
) -> None:
    env = {"PROVENANCE_SIGNING_KEY": "/secrets/key", "REGISTRY_AUTH_FILE": "/secrets/auth.json"}
    env["UNRELATED_SECRET"] = "x"
    [job] = publish_processes(rule_runner, ["--oci-registry=reg.example:5000"], env)
    assert job.names == (f"reg.example:5000/ml/m@{DIGEST}",)
    argv = job.process.process.argv
    assert argv[1:3] == ("-m", "mlbuild.oci.publish_tool")
    assert "--registry=reg.example:5000" in argv and "--repository=ml/m" in argv
    assert "--image=img/image.tar" in argv and "--statement=img/image.provenance.json" in argv
    process_env = job.process.process.env
    assert process_env["PROVENANCE_SIGNING_KEY"] == "/secrets/key"
    assert process_env["REGISTRY_AUTH_FILE"] == "/secrets/auth.json"
    assert "UNRELATED_SECRET" not in process_env
    assert process_env["PYTHONPATH"] == "__mlbuild"


def test_skips_without_a_registry(rule_runner: RuleRunner) -> None:
    [job] = publish_processes(rule_runner, ["--oci-registry="], {})
    assert job.process is None
    assert job.description == "(no `[oci].registry`)"
