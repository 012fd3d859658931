"""For tests: an artifact store of their own (infra/datastore/start on a free port, in a temporary
directory), and a count of the downloads it served.

Without nginx installed the tests skip, saying so; CI installs it (infra/datastore/install) and
sets DATASTORE_REQUIRED=1, so there a missing store fails.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.service_testing import require_tools, started_service

SCRIPTS = Path("infra/datastore")
TOOLS = ("nginx", "openssl", "curl")


@dataclass(frozen=True)
class RunningDatastore:
    url: str  # https://127.0.0.1:<port>
    env: dict[str, str]  # DATASTORE_* variables for clients (credentials file, CA)
    directory: Path

    def upload(self, file: Path) -> str:
        """Uploads file with infra/datastore/upload; returns the stanza it printed."""
        done = subprocess.run(
            [str(SCRIPTS / "upload"), str(file)],
            env={**os.environ, **self.env, "DATASTORE_DIR": str(self.directory)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def downloads(self, name: str) -> int:
        """How many times the store served the file named name in full (GET, status 200)."""
        return len(self.transfers(name))

    def transfers(self, name: str) -> list[tuple[int, float]]:
        """Bytes sent and seconds taken (nginx's request time) of each full download of name."""
        log = self._access_log()
        return [
            (int(fields[3]), float(fields[5]))
            for fields in (line.split() for line in log)
            if fields[:1] == ["GET"] and fields[1].endswith(f"/{name}") and fields[2] == "200"
        ]

    def _access_log(self) -> list[str]:
        """The access log once every request answered so far is in it.

        nginx logs a request after sending its last byte, so a client can finish reading before
        the line is written. The store has one worker, which handles events in order: once a
        request sent now is logged, every earlier one is.
        """
        barrier = f"/log-barrier-{uuid.uuid4().hex}"
        context = ssl.create_default_context(cafile=self.env["DATASTORE_CA_CERT"])
        try:
            urllib.request.urlopen(self.url + barrier, context=context, timeout=30).close()
        except urllib.error.HTTPError as refused:  # 401: no credentials, as intended
            refused.close()
        path = self.directory / "access.log"
        deadline = time.monotonic() + 30
        while True:
            lines = path.read_text().splitlines()
            if any(f" {barrier} " in line for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(f"the store never logged {barrier} in {path}")
            time.sleep(0.05)

    @property
    def data(self) -> Path:
        return self.directory / "data"


@contextmanager
def running_datastore(directory: Path) -> Iterator[RunningDatastore]:
    """A store with TLS and basic auth on a free port, its files in directory; stopped after."""
    require_tools(TOOLS, "DATASTORE_REQUIRED", "infra/datastore/install")
    settings = {"DATASTORE_DIR": str(directory), "DATASTORE_INSTALL": "0"}
    with started_service(SCRIPTS, settings) as exported:
        yield RunningDatastore(exported["DATASTORE_URL"], exported, directory)
