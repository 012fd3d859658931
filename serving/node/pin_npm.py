"""Writes the pins of the `npm_packages` target `//serving/node:node_modules` from npm's lockfile.

Run from the repository root after changing package.json and package-lock.json (`npm install
--package-lock-only` updates the lockfile without installing anything):

    python3 serving/node/pin_npm.py

For every package the lockfile installs it computes the npm registry's tarball URL, downloads the
tarball, checks it against the lockfile's sha512 `integrity` (a mismatch stops the run and keeps
the old pins) and records its size and sha256, which the unpacking process (npm_tool.py)
checks. Output: serving/node/npm-pins.json, sorted by install path. Dev dependencies, and
optional ones the lockfile restricts to other platforms than `--os`/`--cpu`, are left out;
bundled dependencies come inside their parent's tarball. Nothing is installed and no package
script runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGISTRY = "https://registry.npmjs.org"


class PinError(Exception):
    pass


def tarball_url(registry: str, name: str, version: str) -> str:
    """The registry's tarball URL: `<registry>/<name>/-/<unscoped name>-<version>.tgz`."""
    return f"{registry.rstrip('/')}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def platform_allows(values: list[str] | None, wanted: str) -> bool:
    """npm's `os`/`cpu` rule: `!x` excludes x; any positive entry must name `wanted`."""
    if not values:
        return True
    if f"!{wanted}" in values:
        return False
    positive = [v for v in values if not v.startswith("!")]
    return not positive or wanted in positive


def installed_packages(
    lock: dict, lockfile: str, os_name: str, cpu: str, registry: str = REGISTRY
) -> list[dict]:
    """The lockfile's entries that `npm ci --omit=dev` would place on disk from a tarball."""
    if lock.get("lockfileVersion") not in (2, 3) or not isinstance(lock.get("packages"), dict):
        raise PinError(f"{lockfile}: needs npm's lockfile v2 or v3 (a `packages` object)")
    selected = []
    for path, entry in lock["packages"].items():
        if not path:
            continue  # the project itself
        where = f"{lockfile}: {path!r}"
        if entry.get("link"):
            raise PinError(
                f"{where} is a link to {entry.get('resolved')!r}; only registry packages can be pinned"
            )
        if entry.get("dev") or entry.get("inBundle"):
            continue
        if entry.get("optional") or entry.get("devOptional"):
            if not (
                platform_allows(entry.get("os"), os_name) and platform_allows(entry.get("cpu"), cpu)
            ):
                continue
        if not path.startswith("node_modules/") or ".." in path.split("/"):
            raise PinError(f"{where} is not an install path under node_modules/")
        name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
        version = entry.get("version")
        resolved = entry.get("resolved")
        if not version or (resolved and not resolved.startswith(registry.rstrip("/") + "/")):
            raise PinError(
                f"{where} is not a registry package (version {version!r}, resolved {resolved!r})"
            )
        sha512 = [h for h in str(entry.get("integrity", "")).split() if h.startswith("sha512-")]
        if not sha512:
            raise PinError(f"{where} has no sha512 `integrity` to check its tarball against")
        selected.append(
            {
                "path": path,
                "name": name,
                "version": version,
                "integrity": entry["integrity"],
                "sha512": sha512,
            }
        )
    return selected


def fetch(package: dict, registry: str) -> dict:
    """Downloads one tarball (streamed, not kept) and returns its pin, or raises on a mismatch."""
    url = tarball_url(registry, package["name"], package["version"])
    sha256, sha512, size = hashlib.sha256(), hashlib.sha512(), 0
    with urllib.request.urlopen(url, timeout=120) as response:
        while chunk := response.read(1 << 20):
            sha256.update(chunk)
            sha512.update(chunk)
            size += len(chunk)
    got = "sha512-" + base64.b64encode(sha512.digest()).decode()
    if got not in package["sha512"]:
        raise PinError(
            f"{url} does not match the lockfile's integrity for {package['path']}: "
            f"lockfile {' '.join(package['sha512'])}, downloaded {got}. Refusing to pin it."
        )
    return {
        "path": package["path"],
        "name": package["name"],
        "version": package["version"],
        "url": url,
        "size": size,
        "sha256": sha256.hexdigest(),
        "integrity": package["integrity"],
    }


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lockfile", type=Path, default=HERE / "package-lock.json")
    parser.add_argument("--out", type=Path, default=HERE / "npm-pins.json")
    parser.add_argument("--registry", default=REGISTRY)
    parser.add_argument("--os", default="linux", help="platform of the installs (npm's `os`)")
    parser.add_argument("--cpu", default="x64", help="CPU of the installs (npm's `cpu`)")
    parser.add_argument("--jobs", type=int, default=8, help="parallel downloads")
    args = parser.parse_args(argv)
    try:
        lock = json.loads(args.lockfile.read_text())
        packages = installed_packages(lock, str(args.lockfile), args.os, args.cpu, args.registry)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            pins = list(pool.map(lambda package: fetch(package, args.registry), packages))
    except (PinError, OSError, ValueError) as e:
        sys.exit(f"pin_npm.py: {e}")
    pins.sort(key=lambda pin: pin["path"])
    write_atomically(args.out, json.dumps({"packages": pins}, indent=2) + "\n")
    total = sum(pin["size"] for pin in pins)
    print(f"pin_npm.py: {len(pins)} packages ({total / 1e6:.1f} MB of tarballs) -> {args.out}")


if __name__ == "__main__":
    main()
