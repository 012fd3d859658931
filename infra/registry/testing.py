"""For tests: a private registry of their own (infra/registry/start on a free port, in a temporary
directory), and small OCI images to push to it.

Without docker-registry and skopeo installed the tests skip, saying so; CI installs them
(infra/registry/install) and sets REGISTRY_REQUIRED=1, so there a missing registry fails.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.service_testing import SYSTEM_PATH as SYSTEM_PATH
from infra.service_testing import require_tools, started_service

SCRIPTS = Path("infra/registry")
TOOLS = ("docker-registry", "htpasswd", "skopeo", "openssl", "curl")


@dataclass(frozen=True)
class TestRegistry:
    host: str  # 127.0.0.1:<port>
    env: dict[str, str]  # REGISTRY_* variables for clients (CA, credentials)
    directory: Path

    def uploads(self) -> list[str]:
        """Digests of the blobs uploaded so far (completed uploads in the registry's log)."""
        log = (self.directory / "registry.log").read_text()
        return re.findall(r'"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256%3A([0-9a-f]{64})', log)


@contextmanager
def running_registry(directory: Path) -> Iterator[TestRegistry]:
    """A registry with TLS and basic auth on a free port, its files in directory; stopped after."""
    require_tools(TOOLS, "REGISTRY_REQUIRED", "infra/registry/install")
    settings = {"REGISTRY_DIR": str(directory), "REGISTRY_INSTALL": "0"}
    with started_service(SCRIPTS, settings) as exported:
        yield TestRegistry(exported["REGISTRY"], exported, directory)


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tiny_image(layout: Path, content: bytes, tag: str = "latest") -> str:
    """Writes an OCI image layout holding one image (one file, /hello, of content) at tag;
    returns its manifest digest."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = blob(gzip.compress(raw.getvalue(), mtime=0))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = blob(
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        )
    )
    manifest = blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
            }
        )
    )
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(
        canonical_json(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **manifest,
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return manifest["digest"]


def make_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway ed25519 key pair (private, public PEM files) in directory."""
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    return private, public


def provenance(subject_digest: str, commit: str) -> dict:
    """The smallest statement deploy verification accepts: SLSA provenance of one image digest,
    built from commit."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": subject_digest.split(":", 1)[1]}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "test",
                "resolvedDependencies": [{"uri": "git+test", "digest": {"gitCommit": commit}}],
            },
            "runDetails": {"builder": {"id": "test"}},
        },
    }


def push_tiny_image(registry: TestRegistry, workdir: Path, repository: str, content: bytes) -> str:
    """Pushes a tiny image to registry; returns `<host>/<repository>@<digest>`."""
    from mlbuild.oci.registry_client import Registry

    layout = workdir / f"layout-{hashlib.sha256(content).hexdigest()[:12]}"
    digest = tiny_image(layout, content)
    with Registry(registry.host, registry.env) as client:
        client.push(f"oci:{layout}:latest", repository, "latest")
    return f"{registry.host}/{repository}@{digest}"


def attach_envelope(registry: TestRegistry, image: str, envelope: dict) -> None:
    """Attaches a DSSE envelope to image (`host/repository@digest`) as its provenance."""
    from mlbuild.oci import referrers
    from mlbuild.oci.registry_client import Registry

    name, digest = image.split("@")
    repository = name.split("/", 1)[1]
    with Registry(registry.host, registry.env) as client:
        manifest = client.manifest(repository, digest)
        assert manifest is not None
        subject = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": len(manifest),
        }
        content = canonical_json(envelope)
        referrers.attach(
            client,
            repository,
            subject,
            [referrers.Artifact(referrers.PROVENANCE_TYPE, content, {})],
        )
