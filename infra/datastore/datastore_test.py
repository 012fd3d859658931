"""infra/datastore/start, upload and stop: a real nginx with TLS and basic auth, on a free port."""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from infra.datastore.testing import running_datastore


def get(url: str, cafile: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_upload_prints_the_stanza_and_the_store_serves_the_file_only_with_the_password(
    tmp_path: Path,
) -> None:
    content = b"not really an npz, but bytes are bytes\n" * 1000
    sha256 = hashlib.sha256(content).hexdigest()
    file = tmp_path / "tiny.npz"
    file.write_bytes(content)
    with running_datastore(tmp_path / "store") as store:
        stanza = store.upload(file)
        url = f"{store.url}/datasets/{sha256}/tiny.npz"
        assert stanza == (
            f'ml_dataset(\n    name="tiny",\n    url="{url}",\n    size={len(content)},\n'
            f'    sha256="{sha256}",\n)\n'
        )
        ca = store.env["DATASTORE_CA_CERT"]
        password = Path(store.env["DATASTORE_PASSWORD_FILE"]).read_text().strip()
        assert get(url, ca) == (401, b"")
        assert get(url, ca, ("ci", "wrong"))[0] == 401
        assert get(url, ca, ("ci", password)) == (200, content)
        # Only the full, authorised download counts, with its size and time from nginx's log.
        [(sent, seconds)] = store.transfers("tiny.npz")
        assert sent == len(content) and 0 <= seconds < 10
        # The netrc file the store's clients read names the same credentials.
        netrc = Path(store.env["DATASTORE_NETRC"]).read_text()
        assert netrc == f"machine localhost login ci password {password}\n"
        # A second upload of the same content sends nothing.
        puts_before = (store.directory / "access.log").read_text().count("PUT ")
        assert store.upload(file) == stanza
        assert (store.directory / "access.log").read_text().count("PUT ") == puts_before
    # Stopped: nothing answers any more.
    try:
        get(url, ca, ("ci", password))
        raise AssertionError("the store still answers after stop")
    except urllib.error.URLError:
        pass
