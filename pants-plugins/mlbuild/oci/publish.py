"""`pants publish` for `model_image`: pushes each image, its SBOM and signed provenance.

Like Pants's docker backend (`pants/backend/docker/goals/publish.py`), the goal packages the
image and runs one interactive process per image: here `publish_tool.py` with Pants's Python,
over the packaged files. The registry is `[oci].registry` (which the packaged Kubernetes manifest
also pins); credentials, the registry's CA and the signing key come from the environment only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.core.util_rules.distdir import DistDir
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent, MergeDigests
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.resources import read_resource

from mlbuild.oci.rules import OciSubsystem
from mlbuild.oci.target_types import (
    ModelImageBaseField,
    ModelImageModelField,
    ModelImageServerField,
)

# The modules publish_tool.py runs with (standard library, skopeo and openssl only).
PUBLISH_MODULES = ("publish_tool.py", "registry_client.py", "referrers.py", "dsse.py")
# What the publish process may read from Pants's environment: where the tools are, the registry's
# credentials and CA, the signing key's path, and the CI system's pipeline variables.
PUBLISH_ENV_VARS = (
    "PATH",
    "HOME",
    "XDG_RUNTIME_DIR",
    "REGISTRY_AUTH_FILE",
    "REGISTRY_USERNAME",
    "REGISTRY_PASSWORD",
    "REGISTRY_PASSWORD_FILE",
    "REGISTRY_CA_CERT",
    "PROVENANCE_SIGNING_KEY",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "GITHUB_RUN_ID",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "BUILD_TAG",
    "BUILD_URL",
)


class PublishModelImageRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class PublishModelImageFieldSet(PublishFieldSet):
    publish_request_type = PublishModelImageRequest
    required_fields = (ModelImageModelField, ModelImageServerField, ModelImageBaseField)

    model: ModelImageModelField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData({"publisher": "model_image", **super().get_output_data()})


@dataclass(frozen=True)
class PublishTool:
    digest: Digest


@rule
async def setup_publish_tool() -> PublishTool:
    files = [
        FileContent("__mlbuild/mlbuild/__init__.py", b""),
        FileContent("__mlbuild/mlbuild/oci/__init__.py", b""),
    ]
    for module in PUBLISH_MODULES:
        content = read_resource("mlbuild.oci", module)
        assert content is not None, f"mlbuild/oci/{module} is missing"
        files.append(FileContent(f"__mlbuild/mlbuild/oci/{module}", content))
    return PublishTool(await Get(Digest, CreateDigest(files)))


@rule(desc="Publish a model image")
async def publish_model_image(
    request: PublishModelImageRequest,
    oci: OciSubsystem,
    tool: PublishTool,
    python: PythonBuildStandaloneBinary,
    distdir: DistDir,
    buildroot: BuildRoot,
) -> PublishProcesses:
    [package] = request.packages
    # The artifacts of `package_model_image`, in its order.
    tar, _, summary_path, _, sbom, statement = (a.relpath for a in package.artifacts)
    assert tar and summary_path and sbom and statement
    contents = await Get(DigestContents, Digest, package.digest)
    summary = json.loads(next(c.content for c in contents if c.path == summary_path))
    name = f"{oci.registry}/{summary['repository']}@{summary['digest']}"
    if not oci.registry:
        return PublishProcesses(
            [PublishPackages(names=(summary["reference"],), description="(no `[oci].registry`)")]
        )
    env, input_digest = await MultiGet(
        Get(EnvironmentVars, EnvironmentVarsRequest(PUBLISH_ENV_VARS)),
        Get(Digest, MergeDigests([package.digest, tool.digest])),
    )
    stem = tar[: -len(".tar")]
    process = InteractiveProcess(
        argv=(
            python.path,
            "-m",
            "mlbuild.oci.publish_tool",
            f"--registry={oci.registry}",
            f"--repository={summary['repository']}",
            f"--tag={summary['tag']}",
            f"--image={tar}",
            f"--digest-file={stem}.digest",
            f"--sbom={sbom}",
            f"--statement={statement}",
            f"--buildroot={buildroot.path}",
            f"--envelope-out={buildroot.pathlib_path / distdir.relpath / stem}.provenance.dsse.json",
        ),
        env={**env, "PYTHONPATH": "__mlbuild"},
        input_digest=input_digest,
    )
    return PublishProcesses(
        [PublishPackages(names=(name,), process=process, description=oci.registry)]
    )


def rules():
    return [*collect_rules(), *PublishModelImageFieldSet.rules()]
