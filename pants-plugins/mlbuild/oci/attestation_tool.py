"""Writes an image's SBOM (CycloneDX 1.5 JSON) and its unsigned in-toto provenance statement.

Pants runs this in one sandboxed, cacheable process per image (see `rules.py`), on the image's
summary, the model layer's metadata, the base's .deb pins, the server's installed wheels and the
lockfiles: every output is a function of those bytes. Nothing here names a git commit or a CI
pipeline, which change on every commit: `pants publish` adds them to the statement and signs it
(`publish_tool.py`), so the cached SBOM and statement stay valid until an input really changes.

    attestation_tool.py --summary image.json --model-layer layer.json --pins pins.json \
        --requirements requirements.pex --lockfile NAME=PATH ... --pants-version V \
        --address ADDR --sbom out.sbom.cdx.json --statement out.provenance.json
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://ml-monorepo.example/mlbuild/model_image/v1"
WHEEL = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl")


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_lockfile(path: str) -> Dict[str, Tuple[str, str]]:
    """Maps each locked artifact's file name to (algorithm, hash); Pants lockfiles are JSON after
    a `//` comment header."""
    with open(path) as f:
        text = "".join(line for line in f if not line.startswith("//"))
    artifacts = {}
    for resolve in json.loads(text).get("locked_resolves", []):
        for requirement in resolve.get("locked_requirements", []):
            for artifact in requirement.get("artifacts", []):
                name = artifact["url"].rsplit("/", 1)[-1]
                artifacts[name] = (artifact["algorithm"], artifact["hash"])
    return artifacts


def installed_wheels(requirements_pex: str) -> List[str]:
    """The wheel file names a loose-layout PEX installed (`.deps/<wheel file name>/`)."""
    deps = os.path.join(requirements_pex, ".deps")
    return sorted(n for n in os.listdir(deps) if n.endswith(".whl")) if os.path.isdir(deps) else []


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def deb_component(pin: dict, distribution: str, architecture: str) -> dict:
    arch = (
        pin["filename"].rsplit("_", 1)[-1].removesuffix(".deb")
        if "_" in pin["filename"]
        else architecture
    )
    purl = f"pkg:deb/debian/{pin['name']}@{pin['version']}?arch={arch}&distro=debian-{distribution}"
    return {
        "type": "library",
        "bom-ref": purl,
        "name": pin["name"],
        "version": pin["version"],
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": pin["sha256"]}],
        "properties": [
            {"name": "debian:archive", "value": pin["archive"]},
            {"name": "debian:filename", "value": pin["filename"]},
        ],
    }


def wheel_component(wheel: str, locked: Dict[str, Tuple[str, str]]) -> dict:
    match = WHEEL.fullmatch(wheel)
    if not match:
        raise SystemExit(f"{wheel}: not a wheel file name")
    if wheel not in locked:
        raise SystemExit(f"{wheel} is installed in the image but no lockfile lists it with a hash")
    algorithm, digest = locked[wheel]
    name, version = normalise_name(match["name"]), match["version"]
    purl = f"pkg:pypi/{name}@{version}"
    return {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
        "hashes": [{"alg": algorithm.upper().replace("SHA", "SHA-"), "content": digest}],
        "properties": [{"name": "python:wheel", "value": wheel}],
    }


def npm_purl(name: str, version: str) -> str:
    # A scoped package's scope is the purl's namespace, its `@` percent-encoded.
    return f"pkg:npm/{name.replace('@', '%40', 1)}@{version}"


def npm_component(pin: dict) -> dict:
    purl = npm_purl(pin["name"], pin["version"])
    algorithm, _, integrity = pin["integrity"].partition("-")
    hashes = [{"alg": "SHA-256", "content": pin["sha256"]}]
    if algorithm == "sha512":  # npm's own record of the tarball, base64 in the lockfile
        hashes.append({"alg": "SHA-512", "content": base64.b64decode(integrity).hex()})
    return {
        "type": "library",
        "bom-ref": f"{purl}#{pin['path']}",  # one package may be installed at several paths
        "name": pin["name"],
        "version": pin["version"],
        "purl": purl,
        "hashes": hashes,
        "properties": [{"name": "npm:path", "value": pin["path"]}],
    }


def model_component(model: dict) -> dict:
    artifact = model.get("artifact", {})
    dataset = model.get("dataset", {})
    properties = [
        ("ml:inputs_digest", model.get("inputs_digest")),
        ("ml:framework", model.get("framework")),
        ("ml:address", model.get("address")),
        ("ml:artifact", artifact.get("file")),
        ("ml:dataset:file", dataset.get("file")),
        ("ml:dataset:sha256", dataset.get("sha256")),
        ("ml:dataset:url", dataset.get("url")),
    ]
    return {
        "type": "machine-learning-model",
        "bom-ref": f"model:{model['name']}@{model.get('version', '')}",
        "name": model["name"],
        "version": model.get("version", ""),
        "hashes": [{"alg": "SHA-256", "content": artifact["sha256"]}]
        if artifact.get("sha256")
        else [],
        "properties": [{"name": k, "value": str(v)} for k, v in properties if v],
    }


def sbom(
    summary: dict,
    model: dict,
    pins: dict,
    wheels: Sequence[str],
    locked: dict,
    npm_pins: Sequence[dict] = (),
) -> dict:
    digest = summary["digest"]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        # The same image always gets the same serial number: the SBOM is reproducible.
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'oci:' + digest)}",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "mlbuild model_image"}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": summary["repository"],
                "version": digest,
                "hashes": [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}],
                "properties": [{"name": "oci:tag", "value": summary["tag"]}],
            },
        },
        "components": [
            *(
                deb_component(pin, pins.get("distribution", ""), pins.get("architecture", ""))
                for pin in pins["packages"]
            ),
            *(wheel_component(wheel, locked) for wheel in wheels),
            *(npm_component(pin) for pin in npm_pins),
            model_component(model),
        ],
    }


def statement(
    summary: dict,
    model: dict,
    pins: dict,
    lockfiles: Dict[str, str],
    sbom_digest: str,
    address: str,
    pants_version: str,
    npm_pins: Sequence[dict] = (),
) -> dict:
    dataset = model.get("dataset", {})
    dependencies = [
        {
            "name": f"model inputs of {model.get('address', model['name'])}",
            "uri": f"mlbuild:model-inputs:{model.get('address', model['name'])}",
            "digest": {"sha256": model["inputs_digest"]},
        },
        {
            "name": f"model artifact {model['name']}",
            "uri": f"mlbuild:model:{model['name']}",
            "digest": {"sha256": model.get("artifact", {}).get("sha256", model.get("version"))},
        },
        *(
            [
                {
                    "name": f"dataset {dataset.get('address', '')}".strip(),
                    "uri": dataset.get("url") or f"file:{dataset.get('file', '')}",
                    "digest": {"sha256": dataset["sha256"]},
                }
            ]
            if dataset.get("sha256")
            else []
        ),
        *(
            {"name": f"lockfile {name}", "uri": f"file:{path}", "digest": {"sha256": digest}}
            for name, (path, digest) in sorted(lockfiles.items())
        ),
        *(
            {
                "uri": f"pkg:deb/debian/{pin['name']}@{pin['version']}",
                "digest": {"sha256": pin["sha256"]},
            }
            for pin in pins["packages"]
        ),
        *(
            {"uri": npm_purl(pin["name"], pin["version"]), "digest": {"sha256": pin["sha256"]}}
            for pin in npm_pins
        ),
        {"name": "sbom", "uri": "file:sbom.cdx.json", "digest": {"sha256": sbom_digest}},
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": summary["repository"],
                "digest": {"sha256": summary["digest"].split(":", 1)[1]},
            }
        ],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "target": address,
                    "repository": summary["repository"],
                    "tag": summary["tag"],
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                # `pants publish` adds builder.id and metadata.invocationId (the CI pipeline) and
                # the git commit to resolvedDependencies before signing.
                "builder": {"id": "", "version": {"pants": pants_version}},
                "metadata": {},
            },
        },
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", required=True, help="the image's summary (image.json)")
    parser.add_argument("--model-layer", required=True, help="the model layer's layer.json")
    parser.add_argument("--pins", required=True, help="the base's debian_packages JSON")
    parser.add_argument("--requirements", required=True, help="the server's loose requirements PEX")
    parser.add_argument("--lockfile", action="append", default=[], help="NAME=PATH")
    parser.add_argument("--npm-pins", help="the Node front end's npm_packages JSON, if any")
    parser.add_argument("--pants-version", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--sbom", required=True)
    parser.add_argument("--statement", required=True)
    args = parser.parse_args(argv)

    def load(path: str) -> dict:
        with open(path) as f:
            return json.load(f)

    summary, pins = load(args.summary), load(args.pins)
    model = load(args.model_layer)["model"]
    if not model.get("inputs_digest"):
        raise SystemExit(f"the model {model.get('name')} has no inputs_digest in its model.json")
    lockfiles, locked = {}, {}
    for spec in args.lockfile:
        name, _, path = spec.partition("=")
        lockfiles[name] = (path, sha256_file(path))
        locked.update(read_lockfile(path))
    npm_pins = load(args.npm_pins)["packages"] if args.npm_pins else []
    bom = sbom(summary, model, pins, installed_wheels(args.requirements), locked, npm_pins)
    sbom_bytes = (json.dumps(bom, indent=2, sort_keys=True) + "\n").encode()
    provenance = statement(
        summary,
        model,
        pins,
        lockfiles,
        hashlib.sha256(sbom_bytes).hexdigest(),
        args.address,
        args.pants_version,
        npm_pins,
    )
    for path, data in (
        (args.sbom, sbom_bytes),
        (args.statement, (json.dumps(provenance, indent=2, sort_keys=True) + "\n").encode()),
    ):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1:])
