"""Target types for serving images built without a container engine: `model_image` and the
pinned Debian packages (`debian_packages`) its base layer is unpacked from."""

from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    DictStringToStringField,
    IntField,
    InvalidFieldException,
    SingleSourceField,
    SpecialCasedDependencies,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text

# ------------------------------------------------------------------------------------------
# debian_packages
# ------------------------------------------------------------------------------------------


class DebianPackagesSourceField(SingleSourceField):
    required = True
    expected_file_extensions = (".json",)
    help = help_text(
        """
        A JSON file pinning Debian packages: `{"packages": [{"name", "version", "archive",
        "filename", "size", "sha256"}, ...]}`. `archive` names the repository (`debian` or
        `debian-security`) and `filename` its pool path, as `apt-cache show` prints them
        (`infra/images/base/pin-debs.sh` writes the file). Pants downloads each package once,
        checks its size and sha256, and caches it by digest.
        """
    )


class DebianPackagesTarget(Target):
    alias = "debian_packages"
    core_fields = (*COMMON_TARGET_FIELDS, DebianPackagesSourceField)
    help = help_text(
        """
        Pinned Debian packages (.deb files with sha256s), unpacked into the distroless base layer
        of `model_image` targets (no package manager, no shell runs).
        """
    )


# ------------------------------------------------------------------------------------------
# model_image
# ------------------------------------------------------------------------------------------


class _SingleAddressField(SpecialCasedDependencies):
    """One address, shown by `dependencies`/`dependents` but not traversed for sources."""

    required = True

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        if isinstance(raw_value, str):
            raw_value = [raw_value]
        value = super().compute_value(raw_value, address)
        if value is not None and len(value) != 1:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be one address, got {value!r}."
            )
        return value


class ModelImageModelField(_SingleAddressField):
    alias = "model"
    help = help_text(
        """
        The address of the model to serve: any packageable target whose package holds a
        directory with `model.json` and the artifact it names (an `ml_model`), e.g.
        `//models/digits_cnn_torch:model`, or a `files` target holding them. The artifact lands
        in `/models/<name>/`, the last layer.
        """
    )


class ModelImageServerField(_SingleAddressField):
    alias = "server"
    help = help_text(
        """
        The address of the server's `pex_binary`. Its third-party requirements (from its lock)
        become one layer, its first-party code (source roots stripped) another under `/app`, and
        its `entry_point` the image's entrypoint, started with `--model-dir /models/<name>`.
        """
    )


class ModelImageBaseField(_SingleAddressField):
    alias = "base"
    help = help_text(
        """
        The address of a `debian_packages` target with the runtime (Python 3.11 and the shared
        libraries the server's wheels need), unpacked into the first layer.
        """
    )


class ModelImageNodePackagesField(_SingleAddressField):
    alias = "node_packages"
    required = False
    help = help_text(
        """
        The address of the `npm_packages` target of the server's Node front end (e.g.
        `//serving/node:node_modules`), for a server started with `--frontend node` in `args`.
        Its `node_modules` tree becomes a layer of its own at `/app/<the target's
        directory>/node_modules`, between the requirements and the code. The base must then hold
        Node.js (`//infra/images/base:bookworm_python_node`).
        """
    )


class ModelImageRepositoryField(StringField):
    alias = "repository"
    help = help_text(
        """
        The image's repository name; the tag is the first 12 hex digits of the model's version.
        Default: `ml/<model name>`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be a lowercase repository "
                f"name such as 'ml/digits', got {value!r}."
            )
        return value


class ModelImageArgsField(StringSequenceField):
    alias = "args"
    default = ()
    help = "Extra arguments for the server, after `--model-dir /models/<name>` (e.g. `['--port', '8500']`)."


class ModelImagePortField(IntField):
    alias = "port"
    default = 8500
    help = "The server's gRPC port: exposed by the image and published by `pants run`."

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> int:
        value = super().compute_value(raw_value, address)
        if not 0 < value < 65536:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be a TCP port, got {value}."
            )
        return value


class ModelImageLabelsField(DictStringToStringField):
    alias = "labels"
    help = help_text(
        """
        Extra image labels; they override the defaults (org.opencontainers.image.* and
        ml.model.* from the model's model.json).
        """
    )


class ModelImageOutputPathField(OutputPathField):
    help = help_text(
        """
        Where in `dist/` to write the image tar (`<path>.tar`, an OCI layout that `docker load`
        also accepts); the image digest goes beside it in `<path>.digest` and a summary in
        `<path>.json`. Default: `<dir with dots>/<target name>.tar`.
        """
    )


class ModelImageTarget(Target):
    alias = "model_image"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ModelImageModelField,
        ModelImageServerField,
        ModelImageBaseField,
        ModelImageNodePackagesField,
        ModelImageRepositoryField,
        ModelImageArgsField,
        ModelImagePortField,
        ModelImageLabelsField,
        ModelImageOutputPathField,
    )
    help = help_text(
        """
        A serving image for one model, built as cacheable Pants processes (no container engine):
        layers base runtime, server requirements, the Node front end's npm packages (if any),
        server code, model, each byte-reproducible.

        `pants package` writes one tar that is both an OCI image layout and a docker-archive
        (`docker load -i`, `podman run oci-archive:`, `skopeo`); `pants run` loads it into the
        local Docker engine and runs it.
        """
    )
