"""Kubernetes manifests for a model server: a Deployment and a Service.

One generator for both users: `pants package` of a `model_image` writes `dist/deploy/<model>.yaml`
with it (mlbuild.oci.rules), and `infra/deploy/manifest` is its command line. Standard library and
PyYAML only: it runs inside Pants (Python 3.9, PyYAML comes with Pants) and in python-default.

The image is pinned by digest (a tag can move; a digest cannot). The pod runs as the non-root
user 65532 on a read-only root filesystem with every capability dropped, and Kubernetes probes it
with native gRPC health checks (grpc.health.v1.Health/Check on the serving port).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Pants's own venv has PyYAML (a dependency of Pants); python-default users depend on it themselves.
import yaml  # pants: no-infer-dep

CONTAINER = "model"
# The server runs one worker process per whole CPU of `limits.cpu`, read from the container's
# cgroup (serving/cpu_limit.py): resizing the limit resizes the server, with no flag to keep in step.
WORKERS_ANNOTATION = "ml-monorepo/serving-workers"
WORKERS_FROM_LIMIT = "one server process per whole CPU of limits.cpu (cgroup CPU limit; at least 1)"
NONROOT_UID = 65532
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"

    def to_k8s(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


DEFAULT_RESOURCES = Resources()


def manifests(
    name: str,
    image: str,
    port: int,
    *,
    replicas: int = 2,
    namespace: str | None = None,
    health_service: str = "",
    resources: Resources = DEFAULT_RESOURCES,
) -> list[dict[str, Any]]:
    """[Deployment, Service] for the model server `name` running `image` (`repo@sha256:...`)
    on gRPC `port`. `health_service` is the service name the probes ask about ("" = the server)."""
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(f"{name!r} is not a Kubernetes name (lowercase letters, digits, '-')")
    if not _IMAGE.fullmatch(image):
        raise ValueError(f"image {image!r} must be pinned by digest: <repository>@sha256:<64 hex>")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port")

    def labels() -> dict[str, str]:  # a fresh dict each time: YAML would alias a shared one
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ml-monorepo"}

    def metadata() -> dict[str, Any]:
        return {"name": name, **({"namespace": namespace} if namespace else {}), "labels": labels()}

    def probe() -> dict[str, Any]:
        return {"grpc": {"port": port, "service": health_service}}

    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {**probe(), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            **probe(),
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": resources.to_k8s(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "runAsGroup": NONROOT_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        # The root filesystem is read-only; Python and onnxruntime may still want a scratch dir.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(),
                    "annotations": {WORKERS_ANNOTATION: WORKERS_FROM_LIMIT},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": NONROOT_UID,
                        "runAsGroup": NONROOT_UID,
                        "fsGroup": NONROOT_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [
                {
                    "name": "grpc",
                    "port": port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                }
            ],
        },
    }
    return [deployment, service]


def kubernetes_name(model_name: str) -> str:
    """The Deployment/Service name for a model: `digits_cnn_torch` -> `digits-cnn-torch`."""
    return model_name.lower().replace("_", "-").replace(".", "-")


def to_yaml(documents: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
