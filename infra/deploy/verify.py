"""Checks, before anything is deployed, that an image is vouched for by CI.

An image `<registry>/<repository>@sha256:<hex>` passes when the registry holds a provenance
attached to that digest (`pants publish` attaches it, see pants-plugins/mlbuild/oci/referrers.py)
that is
  1. a DSSE envelope signed by the trusted key (the CI key, infra/keys/provenance.pub);
  2. an in-toto Statement whose subject is exactly that digest;
  3. about a git commit that is on main (`git merge-base --is-ancestor <commit> <main ref>`).
Otherwise VerificationError says which check failed for each provenance found.

    infra/deploy/verify <registry>/<repository>@sha256:<hex> [--key K] [--main-ref R]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Shared with `pants publish` (infra/deploy/deploy puts pants-plugins on the path).
from mlbuild.oci import dsse, referrers
from mlbuild.oci.registry_client import Registry, RegistryError

# DEPLOY_TRUSTED_KEY and DEPLOY_MAIN_REF override these defaults (as --key and --main-ref do).
DEFAULT_KEY = Path(__file__).resolve().parent.parent / "keys" / "provenance.pub"
DEFAULT_MAIN_REF = "origin/main"
_IMAGE = re.compile(
    r"(?P<host>[^/]+)/(?P<repository>[a-z0-9][a-z0-9._\-/]*)@(?P<digest>sha256:[0-9a-f]{64})"
)


class VerificationError(Exception):
    """The image must not be deployed; the message says why."""


@dataclass(frozen=True)
class Verified:
    image: str
    commit: str
    builder: str
    key_id: str


def parse_image(image: str) -> tuple[str, str, str]:
    match = _IMAGE.fullmatch(image)
    if not match:
        raise VerificationError(
            f"image {image!r} is not <registry host>/<repository>@sha256:<64 hex>: only images "
            "in a registry, pinned by digest, can be verified"
        )
    return match["host"], match["repository"], match["digest"]


def source_commit(statement: dict) -> str:
    for dependency in (
        statement.get("predicate", {}).get("buildDefinition", {}).get("resolvedDependencies", [])
    ):
        commit = dependency.get("digest", {}).get("gitCommit")
        if commit:
            return commit
    raise VerificationError("the provenance names no git commit")


def check_on_main(commit: str, main_ref: str, repo: Path) -> None:
    def git(*args: str) -> int:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True).returncode

    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise VerificationError(f"the provenance's commit {commit!r} is not a git commit id")
    if git("rev-parse", "--verify", "--quiet", f"{main_ref}^{{commit}}") != 0:
        raise VerificationError(f"the main ref {main_ref!r} does not exist in {repo}")
    if git("cat-file", "-e", f"{commit}^{{commit}}") != 0:
        raise VerificationError(f"commit {commit} is not in {repo} (so not on {main_ref})")
    if git("merge-base", "--is-ancestor", commit, main_ref) != 0:
        raise VerificationError(f"commit {commit} is not on {main_ref}")


def check_statement(
    image: str, envelope: dict, key: Path, digest: str, main_ref: str, repo: Path
) -> Verified:
    try:
        statement = dsse.statement_of(envelope, str(key))
    except dsse.SignatureError as e:
        raise VerificationError(f"signature: {e}") from None
    subjects = [s.get("digest", {}).get("sha256") for s in statement.get("subject", [])]
    if subjects != [digest.split(":", 1)[1]]:
        raise VerificationError(
            f"digest mismatch: the signed statement is about {subjects}, the manifest pins {digest}"
        )
    if statement.get("predicateType") != "https://slsa.dev/provenance/v1":
        raise VerificationError(
            f"predicateType {statement.get('predicateType')!r} is not SLSA provenance v1"
        )
    commit = source_commit(statement)
    check_on_main(commit, main_ref, repo)
    run = statement["predicate"].get("runDetails", {})
    return Verified(
        image,
        commit,
        run.get("builder", {}).get("id", ""),
        envelope["signatures"][0].get("keyid", ""),
    )


def verify(
    image: str, key: Path, main_ref: str, repo: Path, env: Mapping[str, str] | None = None
) -> Verified:
    """The checked provenance of image, or VerificationError naming every check that failed."""
    host, repository, digest = parse_image(image)
    if not key.is_file():
        raise VerificationError(f"the trusted public key {key} does not exist")
    try:
        with Registry(host, env) as registry:
            manifest = registry.manifest(repository, digest)
            if manifest is None:
                raise VerificationError(f"{image} is not in the registry")
            if referrers.digest_of(manifest) != digest:
                raise VerificationError(
                    f"digest mismatch: the registry's manifest for {image} has digest "
                    f"{referrers.digest_of(manifest)}"
                )
            found = referrers.referrers(registry, repository, digest, referrers.PROVENANCE_TYPE)
            if not found:
                raise VerificationError(
                    f"unsigned: no provenance is attached to {image} "
                    f"(no {referrers.PROVENANCE_TYPE} in tag {referrers.fallback_tag(digest)})"
                )
            failures = []
            for descriptor in found:
                try:
                    content = referrers.fetch(registry, repository, digest, descriptor)
                    envelope = json.loads(content)
                    return check_statement(image, envelope, key, digest, main_ref, repo)
                except (VerificationError, ValueError, KeyError) as e:
                    failures.append(f"{descriptor['digest']}: {e}")
    except RegistryError as e:
        raise VerificationError(f"registry: {e}") from None
    raise VerificationError(f"no provenance of {image} passes:\n  " + "\n  ".join(failures))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("image", help="<registry>/<repository>@sha256:<hex>")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        verified = verify(args.image, args.key, args.main_ref, args.repo)
    except VerificationError as e:
        print(f"verify: REFUSED {args.image}: {e}", file=sys.stderr)
        return 1
    print(
        f"verify: {args.image} built from {verified.commit} by {verified.builder or '?'}, signed by {verified.key_id}"
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        type=Path,
        default=Path(os.environ.get("DEPLOY_TRUSTED_KEY") or DEFAULT_KEY),
        help="the trusted (CI's) public key",
    )
    parser.add_argument(
        "--main-ref",
        default=os.environ.get("DEPLOY_MAIN_REF") or DEFAULT_MAIN_REF,
        help="the commit must be on this ref",
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="the git repository to check in"
    )


if __name__ == "__main__":
    sys.exit(main())
