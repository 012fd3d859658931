"""Kubernetes manifests for a model server: a Deployment and a Service, on stdout.

    infra/deploy/manifest digits-cnn-torch registry.example.com/models/digits@sha256:<64 hex> 8081 > k8s.yaml

The command line of mlbuild.k8s_manifest, the generator `pants package` of a `model_image` also
uses for `dist/deploy/<model>.yaml` (see there for what the manifests hold).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlbuild.k8s_manifest import manifests, to_yaml


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the Deployment and Service name, e.g. digits-cnn-torch")
    parser.add_argument("image", help="the image, pinned by digest: <repository>@sha256:<hex>")
    parser.add_argument("port", type=int, help="the server's gRPC port")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--namespace")
    parser.add_argument("--health-service", default="", help="service name the probes check")
    args = parser.parse_args(argv)
    try:
        docs = manifests(
            args.name,
            args.image,
            args.port,
            replicas=args.replicas,
            namespace=args.namespace,
            health_service=args.health_service,
        )
    except ValueError as e:
        print(f"manifest: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
