"""infra/registry/start and stop: a real docker-registry with TLS and basic auth, on a free port."""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from infra.registry.testing import SYSTEM_PATH, running_registry, tiny_image
from mlbuild.oci.registry_client import Registry, RegistryError


def status(url: str, cafile: str | None, auth: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_serves_tls_checks_passwords_and_keeps_digests(tmp_path: Path) -> None:
    with running_registry(tmp_path / "registry") as registry:
        url = f"https://{registry.host}/v2/"
        ca = registry.env["REGISTRY_CA_CERT"]
        assert status(url, ca) == 401
        assert status(url, ca, "Basic " + "d3Jvbmc6d3Jvbmc=") == 401  # wrong:wrong
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            status(url, None)  # the system's CAs do not know the registry's own CA
        # Nothing secret lives in the repository: the CA, key and password are in the directory.
        assert Path(ca).is_relative_to(tmp_path) and Path(
            registry.env["REGISTRY_AUTH_FILE"]
        ).is_relative_to(tmp_path)

        digest = tiny_image(tmp_path / "image", b"hello")
        with Registry(registry.host, registry.env) as client:
            assert client.manifest("ml/tiny", digest) is None
            client.push(f"oci:{tmp_path / 'image'}:latest", "ml/tiny", "v1")
            assert client.manifest("ml/tiny", "v1") == client.manifest("ml/tiny", digest)
            assert len(registry.uploads()) == 2  # the layer and the config
            client.push(f"oci:{tmp_path / 'image'}:latest", "ml/tiny", "v1")
            assert len(registry.uploads()) == 2  # nothing uploaded twice
        without_credentials = {"REGISTRY_CA_CERT": ca}
        with Registry(registry.host, without_credentials) as anonymous:
            with pytest.raises(RegistryError, match="unauthorized|authentication required"):
                anonymous.manifest("ml/tiny", digest)

        # A second start reuses the running registry.
        again = subprocess.run(
            ["infra/registry/start"],
            env={
                "REGISTRY_DIR": str(tmp_path / "registry"),
                "REGISTRY_INSTALL": "0",
                "PATH": SYSTEM_PATH,
            },
            capture_output=True,
            text=True,
        )
        assert again.returncode == 0, again.stderr
        assert f"export REGISTRY={registry.host}" in again.stdout and "reusing" in again.stderr
    assert status_or_refused(url, ca)


def status_or_refused(url: str, cafile: str) -> bool:
    """True when nothing answers at url any more (stop stopped the registry)."""
    try:
        status(url, cafile)
    except urllib.error.URLError:
        return True
    return False
