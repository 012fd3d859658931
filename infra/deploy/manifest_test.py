import kubernetes_validate
import pytest
import yaml

from infra.deploy.manifest import main, manifests, to_yaml

IMAGE = "registry.example.com/models/digits-cnn-torch@sha256:" + "ab" * 32


def test_manifests_pass_the_kubernetes_schema_strictly() -> None:
    docs = manifests("digits-cnn-torch", IMAGE, 8081, namespace="models")
    version = kubernetes_validate.latest_version()
    for doc in yaml.safe_load_all(to_yaml(docs)):
        # strict: unknown fields (a typo such as `readOnlyRootFileSystem`) fail too.
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_would_catch_a_bad_manifest() -> None:
    deployment = manifests("m", IMAGE, 8081)[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_deployment_pins_the_digest_probes_grpc_and_runs_locked_down() -> None:
    deployment, service = manifests("digits-cnn-torch", IMAGE, 8081, health_service="inference")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 8081, "service": "inference"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"][0]["port"] == 8081


@pytest.mark.parametrize(
    "name, image, port, message",
    [
        ("m", "registry.example.com/models/m:latest", 8081, "must be pinned by digest"),
        ("m", "registry.example.com/m@sha256:abc", 8081, "must be pinned by digest"),
        ("Bad_Name", IMAGE, 8081, "is not a Kubernetes name"),
        ("m", IMAGE, 70000, "is not a TCP port"),
    ],
)
def test_rejects_unpinned_images_bad_names_and_ports(name, image, port, message) -> None:
    with pytest.raises(ValueError, match=message):
        manifests(name, image, port)


def test_cli_prints_two_yaml_documents(capsys) -> None:
    assert main(["m", IMAGE, "9000", "--replicas", "1", "--namespace", "ns"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["kind"], d["metadata"]["namespace"]) for d in docs] == [
        ("Deployment", "ns"),
        ("Service", "ns"),
    ]
    assert docs[0]["spec"]["replicas"] == 1
    assert main(["m", "image:tag", "9000"]) == 2
