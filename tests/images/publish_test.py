"""`pants publish`'s tool (mlbuild.oci.publish_tool) on the packaged fixture images, against a real
registry of the test's own: push by digest, only missing blobs, nothing twice, SBOM and signed
provenance attached, and what infra/deploy/verify then accepts or refuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import pytest

from infra.ci.git_testing import git
from infra.deploy import verify
from infra.registry import testing
from mlbuild.oci import dsse, publish_tool, referrers
from mlbuild.oci.registry_client import Registry
from tests.images.conftest import DIST, Image, load


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry, CI's key pair, and a clean git worktree on main (the build root)."""
    tmp = tmp_path_factory.mktemp("publish")
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "f").write_text("1")
    git(repo, "add", "f")
    git(repo, "commit", "-qm", "one")
    key, public_key = testing.make_key(tmp, "ci")
    with testing.running_registry(tmp / "registry") as registry:
        yield registry, key, public_key, repo


def publish(
    world, name: str, repository: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    registry, key, _, repo = world
    image = load(name)
    argv = [sys.executable, publish_tool.__file__, f"--registry={registry.host}"]
    argv += [f"--repository={repository or image.summary['repository']}"]
    argv += [f"--tag={image.summary['tag']}"]
    argv += [f"--image={DIST / name}.tar", f"--digest-file={DIST / name}.digest"]
    argv += [f"--sbom={DIST / name}.sbom.cdx.json", f"--statement={DIST / name}.provenance.json"]
    argv += [f"--buildroot={repo}"]
    variables = {"PROVENANCE_SIGNING_KEY": str(key), "CI_PIPELINE_ID": "4242", **env}
    return subprocess.run(
        argv,
        env={
            "PATH": testing.SYSTEM_PATH,
            "PYTHONPATH": ":".join(sys.path),
            **registry.env,
            **variables,
        },
        capture_output=True,
        text=True,
    )


def attached(world, image: Image, artifact_type: str) -> bytes:
    registry = world[0]
    with Registry(registry.host, registry.env) as client:
        repository, digest = image.summary["repository"], image.summary["digest"]
        [descriptor] = referrers.referrers(client, repository, digest, artifact_type)
        return referrers.fetch(client, repository, digest, descriptor)


def test_refuses_without_a_signing_key_and_pushes_nothing(world) -> None:
    result = publish(world, "image_a", PROVENANCE_SIGNING_KEY="")
    assert result.returncode == 1
    assert "PROVENANCE_SIGNING_KEY must name the ed25519 private key" in result.stderr
    assert world[0].uploads() == []


def test_pushes_the_image_by_digest_with_sbom_and_signed_provenance(world) -> None:
    registry, _, public_key, repo = world
    image = load("image_a")
    digest = image.summary["digest"]
    result = publish(world, "image_a")
    assert result.returncode == 0, result.stderr
    assert f"{registry.host}/ml/fixture_a@{digest}: pushed" in result.stdout
    with Registry(registry.host, registry.env) as client:
        manifest = client.manifest("ml/fixture_a", image.summary["tag"])
    assert referrers.digest_of(manifest) == digest  # the registry's digest is image.digest
    layer_digests = {layer["digest"][7:] for layer in image.summary["layers"]}
    assert layer_digests <= set(registry.uploads())

    statement = dsse.statement_of(
        json.loads(attached(world, image, referrers.PROVENANCE_TYPE)), str(public_key)
    )
    assert statement["subject"][0]["digest"]["sha256"] == digest[7:]
    dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies[0]["digest"] == {"gitCommit": git(repo, "rev-parse", "HEAD")}
    [inputs] = [d for d in dependencies if d.get("name", "").startswith("model inputs")]
    labels = image.config["config"]["Labels"]
    assert inputs["digest"]["sha256"] == labels["org.opencontainers.image.revision"]
    assert statement["predicate"]["runDetails"]["metadata"]["invocationId"] == "4242"

    sbom = json.loads(attached(world, image, referrers.SBOM_TYPE))
    assert sbom == json.loads((DIST / "image_a.sbom.cdx.json").read_text())
    # And deploy's verification accepts it.
    verified = verify.verify(
        f"{registry.host}/ml/fixture_a@{digest}", public_key, "main", repo, registry.env
    )
    assert verified.commit == git(repo, "rev-parse", "HEAD")


def test_publishing_again_pushes_nothing(world) -> None:
    before = world[0].uploads()
    result = publish(world, "image_a")
    assert result.returncode == 0, result.stderr
    assert "already in the registry, nothing pushed" in result.stdout
    assert "already attested" in result.stdout
    assert world[0].uploads() == before


def test_a_second_image_uploads_only_its_own_blobs(world) -> None:
    a, b = load("image_a"), load("image_b")
    before = set(world[0].uploads())
    result = publish(world, "image_b")
    assert result.returncode == 0, result.stderr
    uploaded = set(world[0].uploads()) - before
    layers_a, layers_b = ({x["digest"][7:] for x in i.summary["layers"]} for i in (a, b))
    shared = layers_a & layers_b
    assert len(shared) == 3  # base, requirements, code: the models differ
    assert not uploaded & shared
    assert b.summary["layers"][-1]["digest"][7:] in uploaded


def test_refuses_to_sign_a_worktree_with_uncommitted_changes(world) -> None:
    registry, repo = world[0], world[3]
    before = registry.uploads()
    (repo / "f").write_text("changed")
    try:
        result = publish(world, "image_a", repository="ml/dirty")
    finally:
        git(repo, "checkout", "f")
    assert result.returncode == 1
    assert "has uncommitted changes" in result.stderr
    assert registry.uploads() == before
    with Registry(registry.host, registry.env) as client:
        assert client.manifest("ml/dirty", load("image_a").summary["digest"]) is None


def test_the_sbom_lists_every_deb_and_wheel_with_version_and_hash_and_the_model() -> None:
    image = load("image_a")
    sbom = json.loads((DIST / "image_a.sbom.cdx.json").read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.5")
    assert sbom["metadata"]["component"]["version"] == image.summary["digest"]
    components = sbom["components"]
    assert all(c["version"] and c["hashes"][0]["content"] for c in components)
    debs = {c["name"]: c["version"] for c in components if c.get("purl", "").startswith("pkg:deb/")}
    # The base layer records the .deb files it was unpacked from: name_version_arch.deb (the
    # version without its epoch).
    unpacked = image.summary["layers"][0]["created_by"].split(": ", 1)[1].split()
    assert {name: version.split(":")[-1] for name, version in debs.items()} == {
        deb.split("_")[0]: deb.split("_")[1] for deb in unpacked
    }
    # Every wheel installed in the requirements layer (its .dist-info directories).
    with tarfile.open(image.tar) as outer:
        blob = outer.extractfile(image.docker_manifest["Layers"][1])
        with tarfile.open(fileobj=blob, mode="r:gz") as layer:
            installed = {
                m.group(1).lower().replace("_", "-"): m.group(2)
                for name in layer.getnames()
                if (
                    m := re.fullmatch(r"opt/python/site-packages/([^/]+)-([^-/]+)\.dist-info", name)
                )
            }
    wheels = {
        c["name"]: c["version"] for c in components if c.get("purl", "").startswith("pkg:pypi/")
    }
    assert wheels == installed and len(wheels) > 5
    [model] = [c for c in components if c["type"] == "machine-learning-model"]
    labels = image.config["config"]["Labels"]
    assert (model["name"], model["version"]) == (
        "fixture_a",
        labels["org.opencontainers.image.version"],
    )
