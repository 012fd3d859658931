"""Artifacts attached to an image in a registry (SBOM, signed provenance), OCI 1.1 style.

Each artifact is an OCI image manifest whose `subject` is the image and whose `artifactType`
says what it is; its one layer is the document. Registries without the referrers API
(distribution 2.8 among them) get the OCI distribution spec's fallback: an image index tagged
`sha256-<hex of the image digest>` listing the artifacts' descriptors. Writers merge their entries
into that index; readers list it and check each artifact's `subject`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Sequence

from mlbuild.oci.registry_client import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, Registry

SBOM_TYPE = "application/vnd.cyclonedx+json"
PROVENANCE_TYPE = "application/vnd.dsse.envelope.v1+json"  # a DSSE envelope of an in-toto Statement
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: `sha256:<hex>` -> `sha256-<hex>`."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}"


@dataclass(frozen=True)
class Artifact:
    artifact_type: str
    content: bytes
    annotations: Dict[str, str]


def artifact_manifest(artifact: Artifact, subject: dict) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "artifactType": artifact.artifact_type,
            "config": {
                "mediaType": EMPTY_CONFIG_TYPE,
                "digest": digest_of(EMPTY_CONFIG),
                "size": len(EMPTY_CONFIG),
            },
            "layers": [
                {
                    "mediaType": artifact.artifact_type,
                    "digest": digest_of(artifact.content),
                    "size": len(artifact.content),
                }
            ],
            "subject": subject,
            "annotations": artifact.annotations,
        }
    )


def attach(
    registry: Registry, repository: str, subject: dict, artifacts: Sequence[Artifact]
) -> List[str]:
    """Pushes artifacts referring to subject (a descriptor of a manifest in repository) and adds
    them to the subject's fallback index. Returns the artifact manifests' digests."""
    descriptors = []
    with tempfile.TemporaryDirectory() as layout:
        os.makedirs(os.path.join(layout, "blobs", "sha256"))

        def write_blob(data: bytes) -> str:
            digest = digest_of(data)
            with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
                f.write(data)
            return digest

        write_blob(EMPTY_CONFIG)
        refs = []
        for number, artifact in enumerate(artifacts):
            write_blob(artifact.content)
            manifest = artifact_manifest(artifact, subject)
            descriptor = {
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": write_blob(manifest),
                "size": len(manifest),
                "artifactType": artifact.artifact_type,
                "annotations": artifact.annotations,
            }
            descriptors.append(descriptor)
            refs.append(
                {**descriptor, "annotations": {"org.opencontainers.image.ref.name": f"a{number}"}}
            )
        with open(os.path.join(layout, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
        with open(os.path.join(layout, "index.json"), "wb") as f:
            f.write(canonical_json({"schemaVersion": 2, "manifests": refs}))
        for number, descriptor in enumerate(descriptors):
            registry.push(f"oci:{layout}:a{number}", repository, descriptor["digest"])
    tag = fallback_tag(subject["digest"])
    existing = registry.manifest(repository, tag)
    entries = json.loads(existing)["manifests"] if existing else []
    new_digests = {d["digest"] for d in descriptors}
    merged = [e for e in entries if e.get("digest") not in new_digests] + descriptors
    index = canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": merged})
    registry.put_manifest(repository, tag, index, MEDIA_TYPE_INDEX)
    return [d["digest"] for d in descriptors]


def referrers(registry: Registry, repository: str, digest: str, artifact_type: str) -> List[dict]:
    """Descriptors of the artifacts of artifact_type listed in digest's fallback index."""
    index = registry.manifest(repository, fallback_tag(digest))
    if index is None:
        return []
    return [
        entry
        for entry in json.loads(index).get("manifests", [])
        if entry.get("artifactType") == artifact_type
    ]


def fetch(registry: Registry, repository: str, subject_digest: str, descriptor: dict) -> bytes:
    """The document of an artifact, checked to refer to subject_digest and to be intact."""
    blobs = registry.pull_blobs(repository, descriptor["digest"])
    manifest = json.loads(blobs[descriptor["digest"]])
    if manifest.get("subject", {}).get("digest") != subject_digest:
        raise ValueError(
            f"artifact {descriptor['digest']} refers to {manifest.get('subject')}, "
            f"not to {subject_digest}"
        )
    layers = manifest.get("layers", [])
    if len(layers) != 1 or layers[0]["digest"] not in blobs:
        raise ValueError(f"artifact {descriptor['digest']} must have exactly one layer")
    return blobs[layers[0]["digest"]]
