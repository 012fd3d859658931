"""Deploys one model server to Kubernetes, and rolls it back when it does not work.

    infra/deploy/deploy --manifest k8s.yaml --smoke-cmd 'python smoke.py' [--namespace NS]
    infra/deploy/deploy --name digits-cnn-torch --image repo@sha256:<hex> --port 8081 --smoke-cmd ...
    infra/deploy/deploy ... --dry-run          # prints every command, runs none
    infra/deploy/deploy --manifest k8s.yaml --verify-only   # the verification alone

Steps: verify the image (infra/deploy/verify.py: its provenance in the registry is signed by
the CI key, is about exactly this digest, and names a commit on main; otherwise nothing at all is
run against the cluster and the deploy is refused), record the image the Deployment runs now (the previous digest), `kubectl apply` the
manifest, wait for `kubectl rollout status`, run the smoke inference (`--smoke-cmd`, a shell
command that gets DEPLOY_NAME, DEPLOY_NAMESPACE, DEPLOY_IMAGE and DEPLOY_PORT and must exit 0).
If the rollout or the smoke test fails, the Deployment goes back to the recorded digest
(`kubectl set image`, then `rollout status` again); on a first deployment there is nothing to go
back to, so the new objects are deleted. A JSON record of what happened goes to `--record`.

Exit status: 0 deployed; 1 failed and rolled back; 2 usage error; 3 failed and the rollback
failed too (someone must look); 4 refused: the image did not pass verification.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from infra.deploy import verify as verify_lib

# The generator pants-plugins/mlbuild/k8s_manifest.py (infra/deploy/deploy puts it on the path).
from mlbuild import k8s_manifest as manifest_lib

PREVIOUS_PLACEHOLDER = "<previous image>"


@dataclass(frozen=True)
class Target:
    name: str
    namespace: str
    image: str
    port: int
    manifest: Path


@dataclass
class Record:
    name: str
    namespace: str
    image: str
    previous_image: str | None = None
    outcome: str = "started"
    failure: str | None = None
    commands: list[str] = field(default_factory=list)


class Kubectl:
    """Runs kubectl (or, with dry_run, only prints what it would run)."""

    def __init__(self, kubectl: str, namespace: str, dry_run: bool, record: Record) -> None:
        self.base = [kubectl, "--namespace", namespace]
        self.dry_run = dry_run
        self.record = record

    def run(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return self.shell([*self.base, *args], capture=capture)

    def shell(
        self, argv: Sequence[str], capture: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        line = shlex.join(argv)
        self.record.commands.append(line)
        print(f"{'would run' if self.dry_run else '+'} {line}", flush=True)
        if self.dry_run:
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.run(
            argv, text=True, capture_output=capture, env={**os.environ, **(env or {})}
        )


def target_from_manifest(path: Path, namespace: str | None) -> Target:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        raise ValueError(f"{path} must hold exactly one Deployment, found {len(deployments)}")
    dep = deployments[0]
    container = next(
        c
        for c in dep["spec"]["template"]["spec"]["containers"]
        if c["name"] == manifest_lib.CONTAINER
    )
    return Target(
        name=dep["metadata"]["name"],
        namespace=namespace or dep["metadata"].get("namespace") or "default",
        image=container["image"],
        port=container["ports"][0]["containerPort"],
        manifest=path,
    )


def deploy(target: Target, smoke_cmd: str, kubectl: str, timeout: str, dry_run: bool) -> Record:
    record = Record(name=target.name, namespace=target.namespace, image=target.image)
    k = Kubectl(kubectl, target.namespace, dry_run, record)
    deployment = f"deployment/{target.name}"
    jsonpath = f'{{.spec.template.spec.containers[?(@.name=="{manifest_lib.CONTAINER}")].image}}'

    current = k.run(
        "get", deployment, "--ignore-not-found", "--output", f"jsonpath={jsonpath}", capture=True
    )
    if current.returncode != 0:
        record.outcome, record.failure = (
            "not started",
            f"kubectl get failed: {current.stderr.strip()}",
        )
        return record
    record.previous_image = PREVIOUS_PLACEHOLDER if dry_run else (current.stdout.strip() or None)
    print(f"previous image: {record.previous_image or '(none: first deployment)'}", flush=True)

    def step_failed() -> str | None:
        if k.run("apply", "--filename", str(target.manifest)).returncode != 0:
            return "kubectl apply failed"
        if k.run("rollout", "status", deployment, f"--timeout={timeout}").returncode != 0:
            return "rollout did not complete"
        smoke_env = {
            "DEPLOY_NAME": target.name,
            "DEPLOY_NAMESPACE": target.namespace,
            "DEPLOY_IMAGE": target.image,
            "DEPLOY_PORT": str(target.port),
        }
        if k.shell(["sh", "-c", smoke_cmd], env=smoke_env).returncode != 0:
            return "smoke test failed"
        return None

    record.failure = step_failed()
    if record.failure is None:
        record.outcome = "deployed"
        if dry_run:
            print("if the rollout or the smoke test fails, would roll back:", flush=True)
            rollback(k, target, record, deployment, timeout)
            record.outcome = "dry run"
        return record

    print(f"deploy of {target.name} failed: {record.failure}; rolling back", file=sys.stderr)
    record.outcome = (
        "rolled back" if rollback(k, target, record, deployment, timeout) else "rollback failed"
    )
    return record


def rollback(k: Kubectl, target: Target, record: Record, deployment: str, timeout: str) -> bool:
    if record.previous_image is None:
        # Nothing ran before: remove what this deployment created.
        return (
            k.run("delete", "--filename", str(target.manifest), "--ignore-not-found").returncode
            == 0
        )
    restored = (
        k.run(
            "set", "image", deployment, f"{manifest_lib.CONTAINER}={record.previous_image}"
        ).returncode
        == 0
    )
    return (
        restored and k.run("rollout", "status", deployment, f"--timeout={timeout}").returncode == 0
    )


EXIT_CODES = {
    "deployed": 0,
    "dry run": 0,
    "rolled back": 1,
    "not started": 1,
    "rollback failed": 3,
    "refused": 4,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--manifest", type=Path, help="a manifest with one Deployment (and its Service)"
    )
    parser.add_argument("--name", help="without --manifest: generate one for this model server...")
    parser.add_argument("--image", help="...running this image (<repository>@sha256:<hex>)...")
    parser.add_argument("--port", type=int, help="...on this gRPC port")
    parser.add_argument("--namespace", help="default: the manifest's, else 'default'")
    parser.add_argument(
        "--smoke-cmd", help="shell command; exit 0 = the server answers (required to deploy)"
    )
    parser.add_argument("--timeout", default="180s", help="for each `kubectl rollout status`")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--record", type=Path, help="write the JSON record of this deployment here")
    parser.add_argument("--dry-run", action="store_true", help="print every command, run none")
    parser.add_argument(
        "--verify-only", action="store_true", help="verify the image, touch no cluster"
    )
    verify_lib.add_arguments(parser)
    args = parser.parse_args(argv)

    generated = args.name or args.image or args.port
    if bool(args.manifest) == bool(generated) or (
        generated and not (args.name and args.image and args.port)
    ):
        parser.error("give either --manifest, or all of --name, --image and --port")
    if not args.smoke_cmd and not args.verify_only:
        parser.error("--smoke-cmd is required (unless --verify-only)")
    try:
        if generated:
            docs = manifest_lib.manifests(
                args.name, args.image, args.port, namespace=args.namespace
            )
            with tempfile.NamedTemporaryFile(
                "w", suffix=".yaml", delete=False, prefix=f"{args.name}-"
            ) as f:
                f.write(manifest_lib.to_yaml(docs))
            args.manifest = Path(f.name)
        target = target_from_manifest(args.manifest, args.namespace)
    except (ValueError, OSError, KeyError, StopIteration, yaml.YAMLError) as e:
        parser.error(f"bad manifest: {e!r}")

    try:
        verified = verify_lib.verify(target.image, args.key, args.main_ref, args.repo)
    except verify_lib.VerificationError as e:
        record = Record(target.name, target.namespace, target.image, outcome="refused")
        record.failure = f"verification: {e}"
        print(f"refusing to deploy {target.image}: {e}", file=sys.stderr)
    else:
        print(
            f"verified {target.image}: built from commit {verified.commit} "
            f"by {verified.builder or '?'}, signed by {verified.key_id}",
            flush=True,
        )
        if args.verify_only:
            return 0
        record = deploy(target, args.smoke_cmd, args.kubectl, args.timeout, args.dry_run)
    if args.record:
        args.record.write_text(json.dumps(asdict(record), indent=2) + "\n")
    print(
        f"{target.name}: {record.outcome}",
        file=sys.stderr if EXIT_CODES[record.outcome] else sys.stdout,
    )
    return EXIT_CODES[record.outcome]


if __name__ == "__main__":
    sys.exit(main())
