"""Downloads pinned npm tarballs and unpacks them into one `node_modules` tree, with the standard
library alone.

Pants runs this script in one cacheable process per `npm_packages` target (see `rules.py`): the
process's key is the pins and this script, so a tree built by CI is fetched from the team cache
and a developer's machine downloads nothing. Each tarball is checked against its pinned size and
sha256 before it is opened (the download goes through the system's certificate store, so it works
behind a TLS-inspecting proxy without a CA bundle in any cache key). No npm runs and no package script
runs (npm's install scripts are exactly what would make the tree depend on the machine). The
tree is a function of the tarballs and the spec only: each tarball's single top-level directory
(usually `package/`) is stripped, modes are normalised (0755 for directories and executables,
0644 otherwise), and paths leaving a package, links pointing outside it and special files are
refused. On any error nothing is left at `--out`.

    npm_tool.py --spec spec.json --out node_modules

spec.json: `{"packages": [{"path": "node_modules/<name>", "url": "<https or file URL>", "size": <bytes>,
"sha256": "<hex>"}, ...],
"exclude": ["<glob relative to node_modules/>", ...]}`. An exclude glob matches whole path
segments (`*` within one, `**` any number of them) and drops what it matches and everything
below it; a glob that matches nothing is an error, so a stale or mistyped one cannot silently let
platform binaries back in.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import posixpath
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Set

ROOT = "node_modules"
# What a damaged tarball or a full disk raise while reading or writing.
READ_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error)


class NpmToolError(Exception):
    pass


def check_exclude_pattern(pattern: str) -> str:
    """Returns the reason an exclude glob is unusable, or "" if it is fine."""
    if not pattern or pattern.startswith("/"):
        return "must be a non-empty path relative to node_modules/"
    if any(segment in ("", ".", "..") for segment in pattern.rstrip("/").split("/")):
        return "may not contain empty, `.` or `..` segments"
    return ""


def _segments_match(pattern: Sequence[str], path: Sequence[str]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_segments_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return (
        bool(path)
        and fnmatch.fnmatchcase(path[0], pattern[0])
        and _segments_match(pattern[1:], path[1:])
    )


class Excludes:
    """The exclude globs, and which of them have matched anything."""

    def __init__(self, patterns: Sequence[str]) -> None:
        for pattern in patterns:
            reason = check_exclude_pattern(pattern)
            if reason:
                raise NpmToolError(f"exclude pattern {pattern!r} {reason}")
        self.patterns = [(p, p.rstrip("/").split("/")) for p in patterns]
        self.used: Set[str] = set()

    def match(self, path: str) -> bool:
        """True if path (relative to node_modules/) or one of its parent directories matches."""
        segments = path.split("/")
        matched = False
        for pattern, pattern_segments in self.patterns:
            if any(
                _segments_match(pattern_segments, segments[:n]) for n in range(1, len(segments) + 1)
            ):
                self.used.add(pattern)  # every matching pattern counts as used, not the first
                matched = True
        return matched

    def unused(self) -> List[str]:
        return [p for p, _ in self.patterns if p not in self.used]


def safe_relpath(name: str, where: str) -> str:
    """name without `./` and empty segments; refuses absolute paths and `..`."""
    if name.startswith("/"):
        raise NpmToolError(f"{where}: absolute path {name!r}")
    segments = [s for s in name.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise NpmToolError(f"{where}: path {name!r} contains `..`")
    return "/".join(segments)


def top_level_dir(members: Sequence[tarfile.TarInfo], tarball: str) -> str:
    """The tarball's single top-level directory, which npm strips (usually `package`)."""
    tops = set()
    for member in members:
        path = safe_relpath(member.name, tarball)
        if not path:
            continue
        top, _, rest = path.partition("/")
        if not rest and not member.isdir():
            raise NpmToolError(f"{tarball}: {member.name!r} lies outside a top-level directory")
        tops.add(top)
    if len(tops) != 1:
        raise NpmToolError(
            f"{tarball}: expected one top-level directory, found {sorted(tops) or 'none'}"
        )
    return tops.pop()


class Tree:
    """The node_modules tree being built under a staging directory.

    Remembers which package wrote each file and link, so that two packages writing one path, and
    anything written through a link (possibly out of the tree), are refused.
    """

    def __init__(self, staging: str, excludes: Excludes) -> None:
        self.staging = staging
        self.excludes = excludes
        self.owners: Dict[str, str] = {}  # node_modules/... of a file or link -> its package
        self.links: Dict[str, str] = {}  # node_modules/... of a link -> its package

    def _check_parents(self, path: str, where: str) -> None:
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.links:
                raise NpmToolError(f"{where} would be written through the link {parent}")

    def add_dir(self, path: str, where: str) -> None:
        self._check_parents(path + "/", where)
        self.makedirs(os.path.join(self.staging, path))

    def _claim(self, path: str, package: str, where: str) -> str:
        """The place on disk for a file or link at path, after the checks; makes its parents."""
        self._check_parents(path, where)
        owner = self.owners.setdefault(path, package)
        if owner != package:
            raise NpmToolError(f"{where} collides with the package at {owner}")
        dest = os.path.join(self.staging, path)
        self.makedirs(os.path.dirname(dest))
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise NpmToolError(f"{where} is a file or link where the package has a directory")
        if os.path.lexists(dest):
            os.unlink(dest)  # a tarball may hold one path twice: the last one wins, as in tar
            self.links.pop(path, None)
        return dest

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)

    def add_file(self, path: str, package: str, where: str, data, executable: bool) -> None:
        dest = self._claim(path, package, where)
        with open(dest, "wb") as f:
            shutil.copyfileobj(data, f)
        os.chmod(dest, 0o755 if executable else 0o644)

    def add_symlink(self, path: str, package: str, where: str, target: str) -> None:
        os.symlink(target, self._claim(path, package, where))
        self.links[path] = package

    def add_package(self, tarball: str, package: str) -> None:
        """Unpacks one tarball at its install path (`node_modules/...`)."""
        name = f"{package} ({os.path.basename(tarball)})"
        self.add_dir(package, name)
        try:
            tar = tarfile.open(tarball, mode="r:*")
            members = tar.getmembers()
        except READ_ERRORS as e:
            raise NpmToolError(f"{name}: not a readable tarball ({e})") from e
        with tar:
            top = top_level_dir(members, name)
            for member in members:
                where = f"{name}: {member.name!r}"
                rel = safe_relpath(member.name, name)[len(top) + 1 :]
                if not rel or self.excludes.match(f"{package}/{rel}"[len(ROOT) + 1 :]):
                    continue
                try:
                    self._add_member(tar, member, top, f"{package}/{rel}", package, where)
                except READ_ERRORS as e:
                    raise NpmToolError(f"{where}: {e}") from e

    def _add_member(self, tar, member, top: str, path: str, package: str, where: str) -> None:
        if member.isdir():
            self.add_dir(path, where)
        elif member.isfile() or member.islnk():
            if member.islnk():
                # A hard link becomes a copy of its target, which must be in the same package.
                target = safe_relpath(member.linkname, where)
                if not target.startswith(top + "/"):
                    raise NpmToolError(f"{where} links outside the package to {member.linkname!r}")
            try:
                data = tar.extractfile(member)
            except KeyError as e:
                raise NpmToolError(f"{where} links to a missing {member.linkname!r}") from e
            self.add_file(path, package, where, data, bool(member.mode & 0o111))
        elif member.issym():
            target = member.linkname
            rel = path[len(package) + 1 :]
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise NpmToolError(f"{where} links outside the package to {target!r}")
            self.add_symlink(path, package, where, target)
        else:
            raise NpmToolError(f"{where} is neither a file, a directory nor a link")

    def check_links(self) -> None:
        """Links must resolve inside their own package, whatever other links they pass through."""
        for path, package in sorted(self.links.items()):
            link = os.path.join(self.staging, path)
            real = os.path.realpath(link)
            real_package = os.path.realpath(os.path.join(self.staging, package))
            if os.path.commonpath([real, real_package]) != real_package:
                raise NpmToolError(f"{path} resolves outside its package ({os.readlink(link)!r})")

    def files(self) -> int:
        return len(self.owners)


DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_TIMEOUT_SECONDS = 60


def download(url: str, size: int, sha256: str, path: str) -> None:
    """Writes the file at url to path, or raises NpmToolError saying what did not match."""
    last_error = None
    for _ in range(DOWNLOAD_ATTEMPTS):
        try:
            digest = hashlib.sha256()
            length = 0
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                with open(path, "wb") as f:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        length += len(block)
                        f.write(block)
            break
        except (OSError, urllib.error.URLError) as e:  # a dropped connection: try again
            last_error = e
    else:
        raise NpmToolError(f"cannot download {url}: {last_error}")
    if length != size:
        raise NpmToolError(f"{url} is {length} bytes, but the pins say {size}")
    if digest.hexdigest() != sha256:
        raise NpmToolError(f"{url} has sha256 {digest.hexdigest()}, but the pins say {sha256}")


def fetch(packages: List[dict], directory: str) -> None:
    """Downloads each pinned tarball once (by sha256) into directory; sets each one's `tarball`."""
    os.makedirs(directory, exist_ok=True)
    wanted = {}
    for package in packages:
        if not isinstance(package.get("sha256"), str) or len(package["sha256"]) != 64:
            raise NpmToolError(f"package {package.get('path')!r} has no sha256 in the spec")
        # <sha256>/<the URL's file name>: errors name the file as the registry does.
        name = posixpath.basename(urllib.parse.urlparse(package["url"]).path) or "package.tgz"
        package["tarball"] = os.path.join(directory, package["sha256"], name)
        if package["sha256"] not in wanted:
            os.makedirs(os.path.dirname(package["tarball"]))
        wanted[package["sha256"]] = package
    with ThreadPoolExecutor(8) as pool:
        jobs = [
            pool.submit(download, p["url"], p["size"], p["sha256"], p["tarball"])
            for p in wanted.values()
        ]
        for job in jobs:
            job.result()


def unpack(spec: dict, out: str) -> int:
    """Builds the tree at out (a new directory) from spec; returns its number of files and links."""
    if os.path.lexists(out):
        raise NpmToolError(f"{out} already exists")
    staging = f"{out}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    tree = Tree(staging, Excludes(spec.get("exclude", [])))
    try:
        if any("tarball" not in p for p in spec["packages"]):
            fetch(spec["packages"], f"{out}.tarballs")
        tree.makedirs(os.path.join(staging, ROOT))
        for package in sorted(spec["packages"], key=lambda p: p["path"]):
            path = safe_relpath(package["path"], "spec")
            if not path.startswith(ROOT + "/") or path != package["path"]:
                raise NpmToolError(f"install path {package['path']!r} is not under {ROOT}/")
            tree.add_package(package["tarball"], path)
        tree.check_links()
        unused = tree.excludes.unused()
        if unused:
            raise NpmToolError(f"exclude pattern(s) matched no file: {', '.join(unused)}")
        os.rename(os.path.join(staging, ROOT), out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(f"{out}.tarballs", ignore_errors=True)
    return tree.files()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", required=True, help="JSON: packages (path, url, size, sha256), exclude"
    )
    parser.add_argument("--out", required=True, help="the node_modules directory to create")
    args = parser.parse_args(argv)
    try:
        with open(args.spec) as f:
            spec = json.load(f)
        unpack(spec, args.out)
    except NpmToolError as e:
        sys.exit(f"npm_tool.py: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
