"""A client of an OCI registry built on skopeo (Debian's, 1.9): push and pull by digest.

skopeo (containers/image) keeps the manifest bytes, so the registry's digest is the one `pants
package` computed (`--preserve-digests` refuses any conversion), asks the registry for each blob
before uploading it (HEAD) and uploads only the missing ones, and reads the usual credential
files. The one thing skopeo 1.9 cannot push is an OCI image index without converting it; that
single manifest PUT is done here with urllib.

Configuration, from the environment (never the repository):
  REGISTRY_AUTH_FILE        a containers/docker credentials file ({"auths": {host: {"auth"}}});
                            default: the files `podman login` and `docker login` write
  REGISTRY_USERNAME with REGISTRY_PASSWORD or REGISTRY_PASSWORD_FILE   (instead of the file)
  REGISTRY_CA_CERT          a CA certificate to trust for the registry (else the system's)
Standard library only: runs in Pants's Python (`pants publish`) and in python-default.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from typing import Dict, List, Mapping, Optional, Tuple

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"


class RegistryError(Exception):
    """A registry operation that failed, with what the registry or skopeo said."""


def _credentials(host: str, env: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    username = env.get("REGISTRY_USERNAME")
    password = env.get("REGISTRY_PASSWORD")
    if username and not password and env.get("REGISTRY_PASSWORD_FILE"):
        with open(env["REGISTRY_PASSWORD_FILE"]) as f:
            password = f.read().strip()
    if username and password:
        return username, password
    auth_file = env.get("REGISTRY_AUTH_FILE")
    if auth_file:
        candidates = [auth_file]
    else:  # where `podman login` / `skopeo login` and `docker login` write
        home = env.get("HOME", "")
        candidates = [
            f"{env.get('XDG_RUNTIME_DIR', '')}/containers/auth.json",
            f"{home}/.config/containers/auth.json",
            f"{home}/.docker/config.json",
        ]
    for path in candidates:
        if path != auth_file and not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                entry = json.load(f).get("auths", {}).get(host)
        except (OSError, ValueError) as e:
            raise RegistryError(f"credentials file {path}: {e}") from None
        if entry and entry.get("auth"):
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, secret
    return None


class Registry:
    """One registry (host[:port]); use as a context manager (it holds temporary files)."""

    def __init__(self, host: str, env: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if env is None else env
        if not host or "/" in host:
            raise RegistryError(f"{host!r} is not a registry host[:port]")
        if shutil.which("skopeo") is None:
            raise RegistryError("skopeo is not installed (apt-get install skopeo)")
        self.host = host
        self._tmp = tempfile.mkdtemp(prefix="registry-client-")
        self._ca = env.get("REGISTRY_CA_CERT") or None
        if self._ca and not os.path.isfile(self._ca):
            raise RegistryError(f"REGISTRY_CA_CERT={self._ca} does not exist")
        self._flags: List[str] = []
        if self._ca:
            os.makedirs(os.path.join(self._tmp, "certs"))
            shutil.copy(self._ca, os.path.join(self._tmp, "certs", "ca.crt"))
        credentials = _credentials(host, env)
        self._auth_header = None
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self._auth_header = f"Basic {token}"
            auth_file = os.path.join(self._tmp, "auth.json")
            with open(os.open(auth_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                json.dump({"auths": {host: {"auth": token}}}, f)
            self._auth_file: Optional[str] = auth_file
        else:
            self._auth_file = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _side_flags(self, side: str) -> List[str]:
        """skopeo's flags for the registry side of a command: side '' (inspect), 'src', 'dest'."""
        prefix = f"--{side}-" if side else "--"
        flags = []
        if self._ca:
            flags += [f"{prefix}cert-dir", os.path.join(self._tmp, "certs")]
        if self._auth_file:
            flags += [f"{prefix}authfile", self._auth_file]
        return flags

    def _skopeo(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", *args], capture_output=True, text=True)

    def ref(self, repository: str, reference: str) -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}{separator}{reference}"

    def manifest(self, repository: str, reference: str) -> Optional[bytes]:
        """The manifest (raw bytes) at a tag or digest, or None when the registry has none."""
        result = subprocess.run(
            ["skopeo", "inspect", "--raw", *self._side_flags(""), self.ref(repository, reference)],
            capture_output=True,
        )
        if result.returncode == 0:
            return result.stdout
        error = result.stderr.decode(errors="replace").strip()
        if "manifest unknown" in error or "name unknown" in error:
            return None
        raise RegistryError(f"reading {self.ref(repository, reference)}: {error}")

    def push(self, source: str, repository: str, reference: str) -> List[str]:
        """Copies source (a skopeo reference: `oci-archive:x.tar`, `oci:dir:tag`) to the registry,
        unchanged; returns skopeo's progress lines."""
        result = self._skopeo(
            "copy", "--preserve-digests", *self._side_flags("dest"),
            source, self.ref(repository, reference),
        )  # fmt: skip
        if result.returncode != 0:
            raise RegistryError(
                f"pushing {source} to {self.ref(repository, reference)}: {result.stderr.strip()}"
            )
        return [line for line in result.stdout.splitlines() if line.strip()]

    def pull_blobs(self, repository: str, digest: str) -> Dict[str, bytes]:
        """The blobs (by digest) of the manifest at digest, fetched with skopeo and checked by it."""
        layout = os.path.join(self._tmp, "pull-" + digest.replace(":", "-"))
        result = self._skopeo(
            "copy", "--preserve-digests", *self._side_flags("src"),
            self.ref(repository, digest), f"oci:{layout}:pulled",
        )  # fmt: skip
        if result.returncode != 0:
            raise RegistryError(f"pulling {self.ref(repository, digest)}: {result.stderr.strip()}")
        blobs = {}
        for name in os.listdir(os.path.join(layout, "blobs", "sha256")):
            with open(os.path.join(layout, "blobs", "sha256", name), "rb") as f:
                blobs[f"sha256:{name}"] = f.read()
        shutil.rmtree(layout)
        return blobs

    def _request(self, method: str, path: str, body: Optional[bytes] = None, **headers: str) -> int:
        """One HTTPS request to /v2/<path>; returns the status (404 included), raises otherwise."""
        request = urllib.request.Request(
            f"https://{self.host}/v2/{path}", data=body, method=method, headers=headers
        )
        if self._auth_header:
            request.add_header("Authorization", self._auth_header)
        context = ssl.create_default_context(cafile=self._ca)
        try:
            with urllib.request.urlopen(request, context=context, timeout=60) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 404
            raise RegistryError(
                f"{method} {request.full_url}: HTTP {e.code}: "
                f"{e.read().decode(errors='replace')[:300]}"
            ) from None
        except urllib.error.URLError as e:
            raise RegistryError(f"{method} {request.full_url}: {e.reason}") from None

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the registry has the blob in repository (to report what a push uploads)."""
        return self._request("HEAD", f"{repository}/blobs/{digest}") == 200

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> None:
        """PUT a manifest at a tag (for what skopeo 1.9 cannot push unconverted: an OCI index)."""
        status = self._request(
            "PUT", f"{repository}/manifests/{tag}", body, **{"Content-Type": media_type}
        )
        if status != 201:
            raise RegistryError(f"PUT {repository}/manifests/{tag}: HTTP {status}")
