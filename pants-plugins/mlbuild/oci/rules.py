"""Rules that package `model_image` targets as reproducible OCI images, engine-free.

Each layer is one sandboxed `Process` running `oci_tool.py` (standard library only) on digests, so
Pants caches every layer and the final image like any other process output: an unchanged model
(and server, and base) costs a cache lookup, and a changed model rebuilds only its own layer and
the small final assembly. Nothing here talks to a container engine or a registry; the .deb files
come from Debian's mirror by URL and are checked against their pinned size and sha256.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import (
    EntryPoint,
    PexEntryPointField,
    PythonResolveField,
    ResolvedPexEntryPoint,
    ResolvePexEntryPointRequest,
)
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexLayout, PexRequest
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.backend.python.util_rules.pex_requirements import PexRequirements, Resolve
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    EnvironmentAwarePackageRequest,
    PackageFieldSet,
)
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    DownloadFile,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.internals.native_engine import FileDigest
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSetsPerTarget,
    FieldSetsPerTargetRequest,
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    UnexpandedTargets,
)
from pants.engine.unions import UnionRule
from pants.option.option_types import DictOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.resources import read_resource
from pants.util.strutil import help_text
from pants.version import VERSION as PANTS_VERSION

from mlbuild import k8s_manifest
from mlbuild.npm.rules import NpmPackages, NpmPackagesRequest
from mlbuild.npm.target_types import NpmPackagesSourceField
from mlbuild.oci import oci_tool
from mlbuild.oci.target_types import (
    DebianPackagesSourceField,
    ModelImageArgsField,
    ModelImageBaseField,
    ModelImageLabelsField,
    ModelImageModelField,
    ModelImageNodePackagesField,
    ModelImageOutputPathField,
    ModelImagePortField,
    ModelImageRepositoryField,
    ModelImageServerField,
)
from mlbuild.package_model import MlModelFieldSet, ModelArtifact
from mlbuild.target_types import ModelFrameworkField, ModelResolveField

# Where the layers put things inside the image.
PYTHON = "/usr/bin/python3.11"
SITE_PACKAGES = "opt/python/site-packages"
APP_DIR = "app"


class OciSubsystem(Subsystem):
    options_scope = "oci"
    help = "Options of `model_image` and `debian_packages` targets."

    debian_mirrors = DictOption[str](
        help=help_text(
            """
            Base URL of each Debian archive named by a pin's `archive` (e.g. `debian`,
            `debian-security`). Archives not given here are taken from this machine's apt
            sources (`/etc/apt/sources.list{,.d/*}`). The URL only says where to fetch from:
            every file is checked against its pinned sha256, and a file already in Pants's
            store is not fetched again.
            """
        ),
    )
    registry = StrOption(
        default="registry.example.com",
        help=help_text(
            """
            The registry (`host[:port]`) that `pants publish` pushes the images to, and that the
            Kubernetes manifest `pants package` writes beside each image
            (`dist/deploy/<model name>.yaml`) pulls `<registry>/<repository>@sha256:<digest>` from.
            CI sets it with `PANTS_OCI_REGISTRY`. Empty: the repository alone, and `publish` skips.
            """
        ),
    )
    run_resolve = StrOption(
        default="python-default",
        help="The resolve whose lock provides the Docker SDK (`docker`) for `pants run` of a `model_image`.",
    )

    def archive_urls(self) -> Dict[str, str]:
        urls = apt_source_urls()
        urls.update(self.debian_mirrors)
        return urls


def apt_source_urls(root: str = "/etc/apt") -> Dict[str, str]:
    """Maps an archive's name (the URL's last path component) to the URL, from apt's sources."""
    found: Dict[str, str] = {}
    paths = [f"{root}/sources.list", *sorted(glob.glob(f"{root}/sources.list.d/*"))]
    for path in paths:
        if not path.endswith((".list", ".sources")) or not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                uris = []
                if line.startswith("URIs:"):
                    uris = line[len("URIs:") :].split()
                elif re.match(r"deb\s", line):
                    uris = [w for w in line.split()[1:] if "://" in w][:1]
                for uri in uris:
                    found.setdefault(uri.rstrip("/").rsplit("/", 1)[-1], uri.rstrip("/"))
    return found


# ------------------------------------------------------------------------------------------
# Running oci_tool.py
# ------------------------------------------------------------------------------------------


# The plugin's scripts that run in processes, with Pants's own Python (standard library only).
TOOL_SCRIPTS = ("oci_tool.py", "attestation_tool.py")


@dataclass(frozen=True)
class OciTool:
    python: str
    digest: Digest


@rule
async def setup_oci_tool(python: PythonBuildStandaloneBinary) -> OciTool:
    files = []
    for script in TOOL_SCRIPTS:
        content = read_resource("mlbuild.oci", script)
        assert content is not None, f"mlbuild/oci/{script} is missing"
        files.append(FileContent(f"__{script}", content))
    return OciTool(python.path, await Get(Digest, CreateDigest(files)))


@dataclass(frozen=True)
class OciToolRequest:
    argv: Tuple[str, ...]
    input_digest: Digest
    description: str
    output_directories: Tuple[str, ...] = ()
    output_files: Tuple[str, ...] = ()
    # INFO for the image assembly: "Completed: Assembling the image <address>" shows (and lets
    # tests count) each image that is really rebuilt; a cache hit prints nothing.
    level: LogLevel = LogLevel.DEBUG
    script: str = "oci_tool.py"


@rule
async def run_oci_tool(request: OciToolRequest, tool: OciTool) -> ProcessResult:
    input_digest = await Get(Digest, MergeDigests([tool.digest, request.input_digest]))
    return await Get(
        ProcessResult,
        Process(
            argv=(tool.python, f"__{request.script}", *request.argv),
            input_digest=input_digest,
            description=request.description,
            output_directories=request.output_directories,
            output_files=request.output_files,
            level=request.level,
        ),
    )


def _layer_request(argv: Tuple[str, ...], input_digest: Digest, description: str) -> OciToolRequest:
    """An oci_tool.py layer subcommand (argv[0]) writing `layer/` from input_digest."""
    return OciToolRequest(
        (argv[0], "--out", "layer", *argv[1:]),
        input_digest,
        description,
        output_directories=("layer",),
    )


# ------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLayer:
    """`layer/layer.tar.gz` and `layer/layer.json`, as written by oci_tool.py."""

    digest: Digest


@dataclass(frozen=True)
class _AddressRequest:
    address: Address


class BaseLayerRequest(_AddressRequest):
    pass


class ServerLayersRequest(_AddressRequest):
    pass


@dataclass(frozen=True)
class ServerLayers:
    requirements: ImageLayer
    code: ImageLayer
    entry_point: str
    # For the SBOM: the loose PEX whose installed wheels are the requirements layer, and the
    # resolve they are locked in.
    requirements_pex: Digest
    resolve: str


class ModelLayerRequest(_AddressRequest):
    pass


@rule(desc="Build the base layer from Debian packages")
async def build_base_layer(request: BaseLayerRequest, oci: OciSubsystem) -> ImageLayer:
    targets = await Get(Targets, Addresses([request.address]))
    target = targets[0]
    if not target.has_field(DebianPackagesSourceField):
        raise ValueError(f"The base {request.address} must be a `debian_packages` target.")
    sources = await Get(HydratedSources, HydrateSourcesRequest(target[DebianPackagesSourceField]))
    pins_file = await Get(DigestContents, Digest, sources.snapshot.digest)
    pins = json.loads(pins_file[0].content)["packages"]
    urls = oci.archive_urls()
    missing = sorted({pin["archive"] for pin in pins} - set(urls))
    if missing:
        raise ValueError(
            f"No URL for the Debian archive(s) {missing} of {request.address}: set "
            "`[oci].debian_mirrors` (no apt source names them on this machine)."
        )
    downloads = await MultiGet(
        Get(
            Digest,
            DownloadFile(
                f"{urls[pin['archive']]}/{pin['filename']}",
                FileDigest(pin["sha256"], pin["size"]),
            ),
        )
        for pin in pins
    )
    debs = await Get(Digest, AddPrefix(await Get(Digest, MergeDigests(downloads)), "debs"))
    result = await Get(
        ProcessResult,
        _layer_request(
            ("debs", "--python", os.path.basename(PYTHON), "debs"),
            debs,
            f"Unpacking {len(pins)} Debian packages of {request.address} into a layer",
        ),
    )
    return ImageLayer(result.output_digest)


@rule(desc="Build the server's layers")
async def build_server_layers(
    request: ServerLayersRequest, python_setup: PythonSetup
) -> ServerLayers:
    targets = await Get(Targets, Addresses([request.address]))
    target = targets[0]
    if not target.has_field(PexEntryPointField):
        raise ValueError(
            f"The server {request.address} must be a `pex_binary` with an entry_point."
        )
    entry_point, requirements_pex, transitive = await MultiGet(
        Get(ResolvedPexEntryPoint, ResolvePexEntryPointRequest(target[PexEntryPointField])),
        Get(
            Pex,
            PexFromTargetsRequest(
                [request.address],
                output_filename="requirements.pex",
                internal_only=True,
                layout=PexLayout.LOOSE,
                include_source_files=False,
                description=f"Resolving the requirements of {request.address}",
            ),
        ),
        Get(TransitiveTargets, TransitiveTargetsRequest([request.address])),
    )
    if entry_point.val is None or not entry_point.val.module:
        raise ValueError(f"The server {request.address} needs a module `entry_point`.")
    sources = await Get(StrippedPythonSourceFiles, PythonSourceFilesRequest(transitive.closure))
    code_input = await Get(Digest, AddPrefix(sources.stripped_source_files.snapshot.digest, "src"))
    requirements, code = await MultiGet(
        Get(
            ProcessResult,
            _layer_request(
                ("tree", "--pex-deps", "--map", f"requirements.pex={SITE_PACKAGES}")
                + ("--created-by", f"requirements of {request.address}"),
                requirements_pex.digest,
                f"Laying the requirements of {request.address} into a layer",
            ),
        ),
        Get(
            ProcessResult,
            _layer_request(
                ("tree", "--map", f"src={APP_DIR}", "--created-by", f"code of {request.address}"),
                code_input,
                f"Laying the code of {request.address} into a layer",
            ),
        ),
    )
    return ServerLayers(
        ImageLayer(requirements.output_digest),
        ImageLayer(code.output_digest),
        entry_point.val.spec,
        requirements_pex.digest,
        target[PythonResolveField].normalized_value(python_setup),
    )


@rule(desc="Build the model layer")
async def build_model_layer(request: ModelLayerRequest) -> ImageLayer:
    targets = await Get(Targets, Addresses([request.address]))
    field_sets = await Get(FieldSetsPerTarget, FieldSetsPerTargetRequest(PackageFieldSet, targets))
    ml_models = [fs for fs in field_sets.field_sets if isinstance(fs, MlModelFieldSet)]
    if ml_models:
        # Only model.json and model.onnx go into the layer: the gated artifact, not the whole
        # package, so the image does not wait for the review report.
        artifacts = await MultiGet(
            Get(ModelArtifact, MlModelFieldSet, field_set) for field_set in ml_models
        )
        model = await Get(Digest, MergeDigests(artifact.digest for artifact in artifacts))
    elif field_sets.field_sets:
        packages = await MultiGet(
            Get(BuiltPackage, EnvironmentAwarePackageRequest(field_set))
            for field_set in field_sets.field_sets
        )
        model = await Get(Digest, MergeDigests(package.digest for package in packages))
    else:
        # A model artifact kept as files (test fixtures): its files as they are, so that no
        # archive with the packaging machine's timestamps stands between them and the image.
        sources = await Get(
            SourceFiles,
            SourceFilesRequest(tgt[SourcesField] for tgt in targets if tgt.has_field(SourcesField)),
        )
        if not sources.files:
            raise ValueError(
                f"The model {request.address} is neither a packageable target nor a target with "
                "files (model.json and its artifact)."
            )
        model = sources.snapshot.digest
    result = await Get(
        ProcessResult,
        _layer_request(
            ("model", "--src", "model"),
            await Get(Digest, AddPrefix(model, "model")),
            f"Laying the model {request.address} into a layer",
        ),
    )
    return ImageLayer(result.output_digest)


class NodePackagesLayerRequest(_AddressRequest):
    pass


@dataclass(frozen=True)
class NodePackagesLayer:
    layer: ImageLayer
    pins: Digest  # the npm_packages target's pins file, for the SBOM
    pins_file: str


@rule(desc="Build the Node front end's npm packages layer")
async def build_node_packages_layer(request: NodePackagesLayerRequest) -> NodePackagesLayer:
    targets = await Get(UnexpandedTargets, Addresses([request.address]))
    if not targets[0].has_field(NpmPackagesSourceField):
        raise ValueError(f"The node_packages {request.address} must be an `npm_packages` target.")
    packages, pins = await MultiGet(
        Get(NpmPackages, NpmPackagesRequest(request.address)),
        Get(HydratedSources, HydrateSourcesRequest(targets[0][NpmPackagesSourceField])),
    )
    # node_modules/ sits beside the front end's code, which is in the code layer under /app.
    prefix = f"src/{request.address.spec_path}" if request.address.spec_path else "src"
    result = await Get(
        ProcessResult,
        _layer_request(
            (
                "tree",
                "--map",
                f"src={APP_DIR}",
                "--created-by",
                f"npm packages of {request.address}",
            ),
            await Get(Digest, AddPrefix(packages.digest, prefix)),
            f"Laying the npm packages of {request.address} into a layer",
        ),
    )
    return NodePackagesLayer(
        ImageLayer(result.output_digest), pins.snapshot.digest, pins.snapshot.files[0]
    )


def frontend_arg(args: Sequence[str]) -> Optional[str]:
    """The `--frontend` value in the server's arguments, if any."""
    for index, arg in enumerate(args):
        if arg.startswith("--frontend="):
            return arg.split("=", 1)[1]
        if arg == "--frontend" and index + 1 < len(args):
            return args[index + 1]
    return None


# ------------------------------------------------------------------------------------------
# The image
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelImageFieldSet(PackageFieldSet):
    required_fields = (ModelImageModelField, ModelImageServerField, ModelImageBaseField)

    model: ModelImageModelField
    server: ModelImageServerField
    base: ModelImageBaseField
    node_packages: ModelImageNodePackagesField
    repository: ModelImageRepositoryField
    args: ModelImageArgsField
    port: ModelImagePortField
    labels: ModelImageLabelsField
    output_path: ModelImageOutputPathField


def deployment_manifest(summary: Dict, port: int, registry: str) -> FileContent:
    """`deploy/<model name>.yaml`: the Deployment and Service of the image (by digest)."""
    repository = (
        f"{registry.rstrip('/')}/{summary['repository']}" if registry else summary["repository"]
    )
    documents = k8s_manifest.manifests(
        k8s_manifest.kubernetes_name(summary["model"]), f"{repository}@{summary['digest']}", port
    )
    return FileContent(f"deploy/{summary['model']}.yaml", k8s_manifest.to_yaml(documents).encode())


# ------------------------------------------------------------------------------------------
# SBOM and provenance
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageAttestationsRequest:
    address: Address
    image: Digest  # holds `<stem>.json`, the image's summary
    stem: str
    model: Address
    model_layer: ImageLayer
    server: ServerLayers
    base: Address
    node_packages: Optional[NodePackagesLayer]


@dataclass(frozen=True)
class ImageAttestations:
    """`<stem>.sbom.cdx.json` and `<stem>.provenance.json` (unsigned: `publish` signs it)."""

    digest: Digest
    sbom: str
    statement: str


def _lockfile_paths(
    server_resolve: str, model: Target, python_setup: PythonSetup
) -> Dict[str, str]:
    """The lockfiles of the server's resolve and of the model's, by resolve name."""
    names = [server_resolve]
    if model.has_field(ModelResolveField) and model.has_field(ModelFrameworkField):
        names.append(model[ModelResolveField].resolve_name(model[ModelFrameworkField].value))
    return {name: python_setup.resolves[name] for name in names if name in python_setup.resolves}


@rule(desc="Write an image's SBOM and provenance statement")
async def build_image_attestations(
    request: ImageAttestationsRequest, python_setup: PythonSetup
) -> ImageAttestations:
    # Unexpanded: a model kept as a `files` target is one target here, not one per file.
    base, model = await Get(UnexpandedTargets, Addresses([request.base, request.model]))
    lockfiles = _lockfile_paths(request.server.resolve, model, python_setup)
    pins, locks = await MultiGet(
        Get(HydratedSources, HydrateSourcesRequest(base[DebianPackagesSourceField])),
        Get(Digest, PathGlobs(sorted(lockfiles.values()))),
    )
    [pins_file] = pins.snapshot.files
    # The tool reads the model layer's layer.json and the names of the wheels the requirements
    # PEX installed: those files only, not the layer's tarball or the wheels' contents (~150 MB
    # that the sandbox would otherwise be filled with).
    model_layer_json, installed_wheels = await MultiGet(
        Get(Digest, DigestSubset(request.model_layer.digest, PathGlobs(["layer/layer.json"]))),
        Get(
            Digest,
            DigestSubset(
                request.server.requirements_pex,
                PathGlobs(["requirements.pex/.deps/*.whl/*.dist-info/METADATA"]),
            ),
        ),
    )
    inputs = await Get(
        Digest,
        MergeDigests(
            [
                request.image,
                await Get(Digest, AddPrefix(model_layer_json, "model_layer")),
                pins.snapshot.digest,
                installed_wheels,
                locks,
                *([request.node_packages.pins] if request.node_packages else []),
            ]
        ),
    )
    npm_args = [f"--npm-pins={request.node_packages.pins_file}"] if request.node_packages else []
    sbom, statement = f"{request.stem}.sbom.cdx.json", f"{request.stem}.provenance.json"
    lock_args = [f"--lockfile={name}={path}" for name, path in sorted(lockfiles.items())]
    result = await Get(
        ProcessResult,
        OciToolRequest(
            (
                f"--summary={request.stem}.json",
                "--model-layer=model_layer/layer/layer.json",
                f"--pins={pins_file}",
                "--requirements=requirements.pex",
                *lock_args,
                *npm_args,
                f"--pants-version={PANTS_VERSION}",
                f"--address={request.address}",
                f"--sbom={sbom}",
                f"--statement={statement}",
            ),
            inputs,
            f"Writing the SBOM and provenance statement of {request.address}",
            output_files=(sbom, statement),
            script="attestation_tool.py",
        ),
    )
    return ImageAttestations(result.output_digest, sbom, statement)


@rule(desc="Package a model image", level=LogLevel.DEBUG)
async def package_model_image(field_set: ModelImageFieldSet, oci: OciSubsystem) -> BuiltPackage:
    model_address, server_address, base_address, node_address = await MultiGet(
        Get(Addresses, UnparsedAddressInputs, field_set.model.to_unparsed_address_inputs()),
        Get(Addresses, UnparsedAddressInputs, field_set.server.to_unparsed_address_inputs()),
        Get(Addresses, UnparsedAddressInputs, field_set.base.to_unparsed_address_inputs()),
        Get(Addresses, UnparsedAddressInputs, field_set.node_packages.to_unparsed_address_inputs()),
    )
    args = list(field_set.args.value or ())
    if frontend_arg(args) == "node" and not node_address:
        raise ValueError(
            f"The image {field_set.address} starts the server with `--frontend node` but has no "
            '`node_packages` (e.g. `node_packages="//serving/node:node_modules"`): the '
            "container would have no npm packages to run it with."
        )
    base, server, model = await MultiGet(
        Get(ImageLayer, BaseLayerRequest(base_address[0])),
        Get(ServerLayers, ServerLayersRequest(server_address[0])),
        Get(ImageLayer, ModelLayerRequest(model_address[0])),
    )
    node = (
        await Get(NodePackagesLayer, NodePackagesLayerRequest(node_address[0]))
        if node_address
        else None
    )
    spec = {
        "python": PYTHON,
        "entry_point": server.entry_point,
        "pythonpath": [f"/{APP_DIR}", f"/{SITE_PACKAGES}"],
        "args": args,
        "ports": [field_set.port.value],
        "labels": dict(field_set.labels.value or {}),
        "repository": field_set.repository.value,
    }
    layers = [base, server.requirements, *([node.layer] if node else []), server.code, model]
    inputs = await MultiGet(
        Get(Digest, AddPrefix(layer.digest, f"layers/{index}"))
        for index, layer in enumerate(layers)
    )
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("spec.json", json.dumps(spec, sort_keys=True).encode())])
    )
    output = field_set.output_path.value_or_default(file_ending="tar")
    stem = output[: -len(".tar")] if output.endswith(".tar") else output
    # The image's digest and summary follow from the spec and the layers' layer.json alone, so
    # they are computed here and the SBOM and provenance are written while the tar is assembled.
    layer_json_digests = await MultiGet(
        Get(Digest, DigestSubset(layer.digest, PathGlobs(["layer/layer.json"]))) for layer in layers
    )
    layer_metadata = await MultiGet(
        Get(DigestContents, Digest, digest) for digest in layer_json_digests
    )
    try:
        _, summary = oci_tool.image_metadata(
            spec, [json.loads(contents[0].content) for contents in layer_metadata]
        )
    except ValueError as e:
        raise ValueError(f"The image {field_set.address}: {e}") from e
    summary_digest = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(f"{stem}.json", oci_tool.summary_json(summary)),
                FileContent(f"{stem}.digest", f"{summary['digest']}\n".encode()),
            ]
        ),
    )
    result, attestations = await MultiGet(
        Get(
            ProcessResult,
            OciToolRequest(
                (
                    "image",
                    "--out",
                    output,
                    "--spec",
                    "spec.json",
                    *(f"layers/{index}/layer" for index in range(len(layers))),
                ),
                await Get(Digest, MergeDigests([spec_digest, *inputs])),
                f"Assembling the image {field_set.address}",
                output_files=(output,),
                level=LogLevel.INFO,
            ),
        ),
        Get(
            ImageAttestations,
            ImageAttestationsRequest(
                field_set.address,
                summary_digest,
                stem,
                model_address[0],
                model,
                server,
                base_address[0],
                node,
            ),
        ),
    )
    manifest = deployment_manifest(summary, field_set.port.value, oci.registry)
    digest = await Get(
        Digest,
        MergeDigests(
            [
                result.output_digest,
                summary_digest,
                attestations.digest,
                await Get(Digest, CreateDigest([manifest])),
            ]
        ),
    )
    return BuiltPackage(
        digest,
        (
            BuiltPackageArtifact(
                output,
                (
                    f"image {summary['reference']} {summary['digest']}",
                    f"{len(summary['layers'])} layers, {summary['size'] / 1e6:.1f} MB compressed, "
                    f"{summary['uncompressed_size'] / 1e6:.1f} MB uncompressed",
                ),
            ),
            BuiltPackageArtifact(f"{stem}.digest"),
            BuiltPackageArtifact(f"{stem}.json"),
            BuiltPackageArtifact(manifest.path, ("Kubernetes Deployment and Service",)),
            BuiltPackageArtifact(attestations.sbom, ("CycloneDX SBOM",)),
            BuiltPackageArtifact(
                attestations.statement, ("in-toto SLSA provenance, signed by `publish`",)
            ),
        ),
    )


@dataclass(frozen=True)
class ModelImageRunFieldSet(RunFieldSet):
    required_fields = ModelImageFieldSet.required_fields
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    args: ModelImageArgsField


@rule(desc="Run a model image in the local Docker engine")
async def run_model_image(
    field_set: ModelImageRunFieldSet, oci: OciSubsystem, python_setup: PythonSetup
) -> RunRequest:
    targets = await Get(Targets, Addresses([field_set.address]))
    package_field_set = ModelImageFieldSet.create(targets[0])
    script = read_resource("mlbuild.oci", "run_image.py")
    assert script is not None, "mlbuild/oci/run_image.py is missing"
    interpreter_constraints = InterpreterConstraints(python_setup.interpreter_constraints)
    image, script_digest, python = await MultiGet(
        Get(BuiltPackage, PackageFieldSet, package_field_set),
        Get(Digest, CreateDigest([FileContent("__run_image.py", script)])),
        Get(PythonExecutable, InterpreterConstraints, interpreter_constraints),
    )
    runner = await Get(
        Pex,
        PexRequest(
            output_filename="run_image.pex",
            internal_only=True,
            interpreter_constraints=interpreter_constraints,
            requirements=PexRequirements(
                ["docker"],
                from_superset=Resolve(oci.run_resolve, False),
                description_of_origin="the `run` of model_image targets",
            ),
            sources=script_digest,
            main=EntryPoint("__run_image"),
        ),
    )
    tar, summary = image.artifacts[0].relpath, image.artifacts[2].relpath
    return RunRequest(
        digest=await Get(Digest, MergeDigests([image.digest, runner.digest])),
        args=(
            python.path,
            "{chroot}/run_image.pex",
            f"{{chroot}}/{tar}",
            f"{{chroot}}/{summary}",
            tar,
        ),
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, ModelImageFieldSet),
        *ModelImageRunFieldSet.rules(),
    ]
