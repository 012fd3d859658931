"""Rules that turn an `npm_packages` target into a `node_modules` tree.

One `Process` runs `npm_tool.py` (standard library only) with Pants's own interpreter, exactly as
the OCI layers run `oci_tool.py`, so the process's cache key holds no machine path beyond the
team's toolchain root: it downloads every pinned tarball, checks its size and sha256, and unpacks
them. The tree is cached like any process output (locally and in the team cache), so an
unchanged pins file costs a cache lookup. Not `DownloadFile`: Pants's downloader trusts only
`[GLOBAL].ca_certs_path`, whose content would join every PEX build's key behind a TLS-inspecting
proxy, while the tool uses the system's certificate store.

Two ways in: `NpmPackagesRequest` gives the tree rooted at `node_modules/` (for an image layer),
and codegen gives it as files under the target's directory to whatever depends on the target.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Tuple

from pants.core.target_types import FileSourceField
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.engine.addresses import Address
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    Snapshot,
)
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    GeneratedSources,
    GenerateSourcesRequest,
    HydratedSources,
    HydrateSourcesRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel
from pants.util.resources import read_resource

from mlbuild.npm.target_types import NpmPackagesExcludeField, NpmPackagesSourceField

PIN_KEYS = ("path", "name", "version", "url", "size", "sha256", "integrity")
TOOL = "__npm_tool.py"
SPEC = "__npm_spec.json"


@dataclass(frozen=True)
class NpmPin:
    path: str  # the install path: node_modules/<name> or node_modules/<a>/node_modules/<name>
    url: str
    size: int
    sha256: str


def parse_pins(content: bytes, filename: str) -> Tuple[NpmPin, ...]:
    """The pins of an `npm_packages` source file; a ValueError names the file and the problem."""

    def fail(problem: str) -> ValueError:
        return ValueError(f"The npm pins file {filename} {problem}.")

    try:
        data = json.loads(content)
    except ValueError as e:
        raise fail(f"is not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("packages"), list):
        raise fail('must be a JSON object with a "packages" list')
    pins = {}
    for index, entry in enumerate(data["packages"]):
        where = f"package #{index}"
        if not isinstance(entry, dict):
            raise fail(f"has a {where} that is not an object")
        missing = [key for key in PIN_KEYS if key not in entry]
        if missing:
            raise fail(f"has a {where} ({entry.get('path', '?')}) without {', '.join(missing)}")
        path, name = entry["path"], entry["name"]
        if not isinstance(path, str) or not re.fullmatch(
            r"(node_modules/(@[^/.][^/]*/)?[^/@.][^/]*/)+", path + "/"
        ):
            raise fail(
                f"has a {where} whose path {path!r} is not an install path under node_modules/"
            )
        if not path.endswith(f"node_modules/{name}"):
            raise fail(f"has a {where} whose path {path!r} does not end in its name {name!r}")
        if not isinstance(entry["size"], int) or entry["size"] < 0:
            raise fail(f"has a {where} ({path}) whose size is not a byte count")
        if not isinstance(entry["sha256"], str) or not re.fullmatch(
            r"[0-9a-f]{64}", entry["sha256"]
        ):
            raise fail(f"has a {where} ({path}) whose sha256 is not 64 lowercase hex digits")
        if not isinstance(entry["url"], str) or not re.match(r"(https?|file)://", entry["url"]):
            raise fail(f"has a {where} ({path}) whose url is not an http(s) or file URL")
        if path in pins:
            raise fail(f"pins {path} twice")
        pins[path] = NpmPin(path, entry["url"], entry["size"], entry["sha256"])
    return tuple(pins[path] for path in sorted(pins))


@dataclass(frozen=True)
class NpmPackagesRequest:
    address: Address


@dataclass(frozen=True)
class NpmPackages:
    """The unpacked tree: every pinned package at its install path (`node_modules/...`)."""

    digest: Digest


@rule(desc="Unpack pinned npm packages")
async def build_npm_packages(
    request: NpmPackagesRequest, python: PythonBuildStandaloneBinary
) -> NpmPackages:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an NpmPackagesRequest"),
    )
    target = wrapped.target
    if not target.has_field(NpmPackagesSourceField):
        raise ValueError(f"{request.address} is not an `npm_packages` target.")
    sources = await Get(HydratedSources, HydrateSourcesRequest(target[NpmPackagesSourceField]))
    [pins_file] = await Get(DigestContents, Digest, sources.snapshot.digest)
    pins = parse_pins(pins_file.content, pins_file.path)
    spec = {
        "packages": [
            {"path": pin.path, "url": pin.url, "size": pin.size, "sha256": pin.sha256}
            for pin in pins
        ],
        "exclude": list(target[NpmPackagesExcludeField].value or ()),
    }
    script = read_resource("mlbuild.npm", "npm_tool.py")
    assert script is not None, "mlbuild/npm/npm_tool.py is missing"
    tool = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(TOOL, script),
                FileContent(SPEC, json.dumps(spec, sort_keys=True).encode()),
            ]
        ),
    )
    result = await Get(
        ProcessResult,
        Process(
            argv=(python.path, TOOL, "--spec", SPEC, "--out", "node_modules"),
            input_digest=tool,
            description=f"Downloading and unpacking {len(pins)} npm packages of {request.address}",
            output_directories=("node_modules",),
            level=LogLevel.DEBUG,
        ),
    )
    return NpmPackages(result.output_digest)


class GenerateNodeModulesRequest(GenerateSourcesRequest):
    input = NpmPackagesSourceField
    output = FileSourceField


@rule(desc="Generate node_modules from npm_packages", level=LogLevel.DEBUG)
async def generate_node_modules(request: GenerateNodeModulesRequest) -> GeneratedSources:
    address = request.protocol_target.address
    packages = await Get(NpmPackages, NpmPackagesRequest(address))
    snapshot = await Get(Snapshot, AddPrefix(packages.digest, address.spec_path))
    return GeneratedSources(snapshot)


def rules():
    return [
        *collect_rules(),
        UnionRule(GenerateSourcesRequest, GenerateNodeModulesRequest),
    ]
