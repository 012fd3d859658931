"""`npm_packages`: npm packages pinned by sha256, unpacked by the build into a `node_modules` tree.

Node code gets its dependencies from Pants like Python code does, hermetically: the same pinned
tarballs give the same tree on every machine, without npm or its install scripts.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    InvalidFieldException,
    SingleSourceField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text

from mlbuild.npm.npm_tool import check_exclude_pattern


class NpmPackagesSourceField(SingleSourceField):
    required = True
    expected_file_extensions = (".json",)
    # The tree lands beside the BUILD file (`<dir>/node_modules/`), whatever the source roots.
    uses_source_roots = False
    help = help_text(
        """
        A JSON file pinning npm packages by install path: `{"packages": [{"path", "name",
        "version", "url", "size", "sha256", "integrity"}, ...]}`, where `path` is where npm
        would install the package (`node_modules/<name>`, or nested:
        `node_modules/<parent>/node_modules/<name>`). A script that reads `package-lock.json`
        writes it (see `serving/node/pin_npm.py`). Pants downloads each tarball once, checks its
        size and sha256, and caches it by digest.
        """
    )


class NpmPackagesExcludeField(StringSequenceField):
    alias = "exclude"
    default = ()
    help = help_text(
        """
        Globs, relative to `node_modules/`, of files and directories not to unpack, e.g.
        `["onnxruntime-node/bin/*/win32"]` to leave out another platform's native binaries.
        `*` matches within one path segment and `**` any number of segments; a glob matching a
        directory drops everything below it. A glob that matches nothing is an error, so that
        a stale one is noticed.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for pattern in value or ():
            reason = check_exclude_pattern(pattern)
            if reason:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address}: the glob {pattern!r} {reason}."
                )
        return value


class NpmPackagesTarget(Target):
    alias = "npm_packages"
    core_fields = (*COMMON_TARGET_FIELDS, NpmPackagesSourceField, NpmPackagesExcludeField)
    help = help_text(
        """
        Pinned npm packages, unpacked into `<this directory>/node_modules/` in one cached,
        sandboxed process. No npm and no package install script runs.

        Targets that depend on it (a `python_test`, for instance) find the tree in their
        sandbox as files, like a `files` target's; `pants export-codegen` writes it to `dist/`.
        """
    )
