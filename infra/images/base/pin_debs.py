"""Writes the pins of a `debian_packages` target: name, version, archive, pool path, size, sha256.

Run on a Debian bookworm machine after `apt-get update`:

    python3 infra/images/base/pin_debs.py infra/images/base/packages.txt > infra/images/base/bookworm-python.json
    python3 infra/images/base/pin_debs.py infra/images/base/packages.txt \
        infra/images/base/packages-node.txt > infra/images/base/bookworm-python-node.json

A line may pin a version (`name=version`), for a package whose candidate on this machine comes
from elsewhere than Debian (a newer nodejs from another apt source, say).

It asks apt (`apt-get download --print-uris`) for the current version of each listed package; no
package is installed. Rerun it when Debian replaces a pinned version on its mirror (point releases
and security updates do), then rebuild the images.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse

URI_LINE = re.compile(
    r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha256>[0-9a-f]{64})$"
)


def pin(names: list[str]) -> list[dict]:
    out = subprocess.run(
        ["apt-get", "download", "--print-uris", *names], check=True, capture_output=True, text=True
    ).stdout
    pins = []
    for line in out.splitlines():
        match = URI_LINE.match(line.strip())
        if not match:
            continue
        url = urllib.parse.unquote(match["url"])
        base, _, filename = url.partition("/pool/")
        name, version, _ = urllib.parse.unquote(match["file"]).split("_", 2)
        pins.append(
            {
                "name": name,
                "version": urllib.parse.unquote(version),
                "archive": base.rstrip("/").rsplit("/", 1)[-1],
                "filename": f"pool/{filename}",
                "size": int(match["size"]),
                "sha256": match["sha256"],
            }
        )
    missing = sorted({n.split("=", 1)[0] for n in names} - {p["name"] for p in pins})
    if missing:
        raise SystemExit(f"apt printed no download for: {', '.join(missing)}")
    return sorted(pins, key=lambda p: p["name"])


def main() -> None:
    names = []
    for path in sys.argv[1:]:  # several lists: one base, several layers of packages
        with open(path) as f:
            names += [line.split("#", 1)[0].strip() for line in f]
    packages = pin([name for name in names if name])
    json.dump(
        {"distribution": "bookworm", "architecture": "amd64", "packages": packages},
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
