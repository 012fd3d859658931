"""Publishes one `model_image` package to a registry: what `pants publish` runs for each image.

1. The image, by digest, unless the registry already has that digest (then nothing is pushed).
   skopeo uploads only the blobs the registry lacks and keeps the manifest bytes, so the
   registry's digest is `image.digest`; it is checked after the push.
2. Its SBOM and signed provenance, attached as OCI artifacts (`referrers.py`), unless a provenance
   is already attached. The cached statement from `pants package` gets the git commit and the CI
   pipeline here (they change on every commit, and must not invalidate cached build steps), and
   is signed with the ed25519 key at $PROVENANCE_SIGNING_KEY (a CI secret) into a DSSE envelope.

Registry credentials and CA: see `registry_client.py`. Standard library, skopeo and openssl only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from typing import Dict, List, Mapping, Optional, Sequence

from mlbuild.oci import dsse, referrers
from mlbuild.oci.registry_client import MEDIA_TYPE_MANIFEST, Registry, RegistryError

SIGNING_KEY_ENV = "PROVENANCE_SIGNING_KEY"
# (pipeline id, builder id) per CI system, from its predefined variables.
CI_SYSTEMS = (
    ("CI_PIPELINE_ID", "CI_PIPELINE_URL"),  # GitLab
    ("GITHUB_RUN_ID", None),  # GitHub Actions: the run's URL is built below
    ("BUILD_TAG", "BUILD_URL"),  # Jenkins
)


class PublishError(Exception):
    pass


def git(buildroot: str, *args: str) -> str:
    result = subprocess.run(["git", "-C", buildroot, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PublishError(f"git {' '.join(args)} in {buildroot}: {result.stderr.strip()}")
    return result.stdout.strip()


def source_commit(buildroot: str) -> Dict[str, str]:
    """The commit the image was built from (refusing a worktree with uncommitted changes, which
    the commit would not describe) and the repository's URL without credentials."""
    commit = git(buildroot, "rev-parse", "HEAD")
    if git(buildroot, "status", "--porcelain", "--untracked-files=no"):
        raise PublishError(
            f"{buildroot} has uncommitted changes: the provenance would name commit {commit}, "
            "which the image was not built from. Commit first."
        )
    try:
        url = git(buildroot, "remote", "get-url", "origin")
    except PublishError:
        url = "file://" + os.path.abspath(buildroot)
    url = re.sub(r"//[^/@]*@", "//", url)  # CI clone URLs may carry a token
    return {"uri": f"git+{url}@{commit}", "digest": {"gitCommit": commit}, "name": "source"}


def pipeline(env: Mapping[str, str]) -> Dict[str, str]:
    for id_var, url_var in CI_SYSTEMS:
        if env.get(id_var):
            if id_var == "GITHUB_RUN_ID":
                url = (
                    f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/"
                    f"{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env[id_var]}"
                )
            else:
                url = env.get(url_var or "", "")
            return {"id": env[id_var], "builder": url or f"ci:{id_var}"}
    return {"id": "", "builder": "local"}


def complete_statement(statement: dict, source: dict, run: Dict[str, str]) -> dict:
    """The cached statement plus what changes with every commit: the commit and the pipeline."""
    predicate = statement["predicate"]
    dependencies = [source, *predicate["buildDefinition"]["resolvedDependencies"]]
    details = predicate["runDetails"]
    return {
        **statement,
        "predicate": {
            **predicate,
            "buildDefinition": {
                **predicate["buildDefinition"],
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                **details,
                "builder": {**details["builder"], "id": run["builder"]},
                "metadata": {**details.get("metadata", {}), "invocationId": run["id"]},
            },
        },
    }


def push_image(registry: Registry, repository: str, tag: str, tar: str, digest: str) -> List[str]:
    """Pushes the image unless the registry has its digest; returns what was done, line by line."""
    where = f"{registry.host}/{repository}@{digest}"
    if registry.manifest(repository, digest) is not None:
        return [f"{where}: already in the registry, nothing pushed"]
    with open(os.path.join(os.path.dirname(tar), os.path.basename(tar)[:-4] + ".json")) as f:
        summary = json.load(f)
    layers = summary["layers"]
    missing = [layer for layer in layers if not registry.has_blob(repository, layer["digest"])]
    registry.push(f"oci-archive:{tar}", repository, tag)
    pushed = registry.manifest(repository, digest)
    if pushed is None or referrers.digest_of(pushed) != digest:
        raise PublishError(f"after the push, {where} is not in the registry with that digest")
    size = sum(layer["size"] for layer in missing)
    return [
        f"{where}: pushed as {registry.host}/{repository}:{tag}",
        f"  layers: {len(missing)} of {len(layers)} new to {repository} ({size / 1e6:.1f} MB; "
        "skopeo mounts those it pushed to another repository here instead of uploading them), "
        f"{len(layers) - len(missing)} already there",
    ]


def attach_attestations(
    registry: Registry,
    repository: str,
    digest: str,
    sbom: bytes,
    statement: dict,
    signing_key: str,
    envelope_out: Optional[str],
) -> List[str]:
    envelope = dsse.sign(json.dumps(statement, sort_keys=True).encode(), signing_key)
    envelope_bytes = (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()
    if envelope_out:
        os.makedirs(os.path.dirname(envelope_out) or ".", exist_ok=True)
        with open(envelope_out, "wb") as f:
            f.write(envelope_bytes)
    manifest = registry.manifest(repository, digest)
    assert manifest is not None
    subject = {"mediaType": MEDIA_TYPE_MANIFEST, "digest": digest, "size": len(manifest)}
    created = {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}
    attached = referrers.attach(
        registry,
        repository,
        subject,
        [
            referrers.Artifact(referrers.SBOM_TYPE, sbom, created),
            referrers.Artifact(referrers.PROVENANCE_TYPE, envelope_bytes, created),
        ],
    )
    commit = statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]
    return [
        f"  SBOM attached ({attached[0]})",
        f"  provenance of commit {commit['gitCommit'][:12]} signed by "
        f"{envelope['signatures'][0]['keyid']} attached ({attached[1]})",
        f"  (tag {referrers.fallback_tag(digest)} lists them)",
    ]


def publish(args: argparse.Namespace, env: Mapping[str, str]) -> List[str]:
    with open(args.digest_file) as f:
        digest = f.read().strip()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise PublishError(f"{args.digest_file} holds no sha256 digest: {digest!r}")
    with Registry(args.registry, env) as registry:
        attested = referrers.referrers(registry, args.repository, digest, referrers.PROVENANCE_TYPE)
        signing_key = env.get(SIGNING_KEY_ENV, "")
        if not attested:
            if not signing_key or not os.path.isfile(signing_key):
                raise PublishError(
                    f"{SIGNING_KEY_ENV} must name the ed25519 private key that signs provenance "
                    f"(got {signing_key!r}); nothing was pushed"
                )
            with open(args.statement) as f:
                statement = complete_statement(
                    json.load(f), source_commit(args.buildroot), pipeline(env)
                )
            if statement["subject"][0]["digest"]["sha256"] != digest.split(":", 1)[1]:
                raise PublishError(f"{args.statement}: its subject is not {digest}")
        lines = push_image(registry, args.repository, args.tag, args.image, digest)
        if attested:
            lines.append(f"  already attested ({attested[0]['digest']}), nothing attached")
            return lines
        with open(args.sbom, "rb") as f:
            sbom = f.read()
        return lines + attach_attestations(
            registry, args.repository, digest, sbom, statement, signing_key, args.envelope_out
        )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="host[:port]")
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--image", required=True, help="the image tar (OCI layout)")
    parser.add_argument("--digest-file", required=True)
    parser.add_argument("--sbom", required=True)
    parser.add_argument("--statement", required=True, help="the unsigned provenance statement")
    parser.add_argument("--buildroot", required=True, help="the git worktree built from")
    parser.add_argument("--envelope-out", help="also write the signed envelope here")
    args = parser.parse_args(argv)
    try:
        lines = publish(args, os.environ)
    except (PublishError, RegistryError, dsse.SignatureError, OSError) as e:
        print(f"publish: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
