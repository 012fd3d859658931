"""The npm_packages rules in a RuleRunner, on tarballs served from file:// URLs: the tree, its
codegen into dependents' sandboxes, and what is refused (digest mismatch, unsafe tarball entries,
bad pins files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pants.core.target_types import FileSourceField
from pants.core.util_rules import adhoc_binaries
from pants.engine.addresses import Address
from pants.engine.fs import DigestContents, DigestEntries, SymlinkEntry
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import HydratedSources, HydrateSourcesRequest, InvalidFieldException
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mlbuild.npm import rules as npm_rules
from mlbuild.npm.npm_tool_test import make_tgz
from mlbuild.npm.rules import NpmPackages, NpmPackagesRequest, parse_pins
from mlbuild.npm.target_types import (
    NpmPackagesExcludeField,
    NpmPackagesSourceField,
    NpmPackagesTarget,
)

ADDRESS = Address("web", target_name="node_modules")


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            *npm_rules.rules(),
            *adhoc_binaries.rules(),
            QueryRule(NpmPackages, [NpmPackagesRequest]),
            QueryRule(HydratedSources, [HydrateSourcesRequest]),
            QueryRule(DigestContents, [npm_rules.Digest]),
            QueryRule(DigestEntries, [npm_rules.Digest]),
        ],
        target_types=[NpmPackagesTarget],
    )


def pin(path: str, tarball: str) -> dict:
    data = Path(tarball).read_bytes()
    return {
        "path": path,
        "name": path.rsplit("node_modules/", 1)[-1],
        "version": "1.0.0",
        "url": f"file://{tarball}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "integrity": "sha512-unchecked-here",
    }


def write_target(rule_runner: RuleRunner, pins_json: str, exclude: list[str] = ()) -> None:
    rule_runner.write_files(
        {
            "web/BUILD": (
                f'npm_packages(name="node_modules", source="pins.json", exclude={list(exclude)!r})'
            ),
            "web/pins.json": pins_json,
        }
    )


def node_modules(rule_runner: RuleRunner) -> dict[str, bytes]:
    tree = rule_runner.request(NpmPackages, [NpmPackagesRequest(ADDRESS)])
    return {f.path: f.content for f in rule_runner.request(DigestContents, [tree.digest])}


def test_unpacks_pins_at_their_install_paths_without_excluded_files(
    rule_runner: RuleRunner, tmp_path: Path
) -> None:
    grpc = make_tgz(
        tmp_path / "grpc-js-1.0.0.tgz",
        {
            "package.json": b'{"name": "@grpc/grpc-js"}',
            "build/index.js": b"js",
            "index.js": ("symlink", "build/index.js"),
        },
    )
    loader = make_tgz(tmp_path / "proto-loader-0.7.0.tgz", {"package.json": b"{}"}, top="loader")
    ort = make_tgz(
        tmp_path / "ort-1.0.0.tgz",
        {"bin/linux/x64/b.node": b"so", "bin/win32/x64/b.node": b"dll", "package.json": b"{}"},
    )
    pins = [
        pin("node_modules/@grpc/grpc-js", grpc),
        pin("node_modules/@grpc/grpc-js/node_modules/@grpc/proto-loader", loader),
        pin("node_modules/ort", ort),
    ]
    write_target(rule_runner, json.dumps({"packages": pins}), exclude=["ort/bin/win32"])
    expected = {
        "node_modules/@grpc/grpc-js/package.json": b'{"name": "@grpc/grpc-js"}',
        "node_modules/@grpc/grpc-js/build/index.js": b"js",
        "node_modules/@grpc/grpc-js/index.js": b"js",
        "node_modules/@grpc/grpc-js/node_modules/@grpc/proto-loader/package.json": b"{}",
        "node_modules/ort/bin/linux/x64/b.node": b"so",
        "node_modules/ort/package.json": b"{}",
    }
    assert node_modules(rule_runner) == expected
    # A link inside a package stays a link.
    tree = rule_runner.request(NpmPackages, [NpmPackagesRequest(ADDRESS)])
    entries = rule_runner.request(DigestEntries, [tree.digest])
    assert SymlinkEntry("node_modules/@grpc/grpc-js/index.js", "build/index.js") in entries

    # Dependents get the same files under the target's directory, through codegen.
    target = rule_runner.get_target(ADDRESS)
    sources = rule_runner.request(
        HydratedSources,
        [
            HydrateSourcesRequest(
                target[NpmPackagesSourceField],
                for_sources_types=(FileSourceField,),
                enable_codegen=True,
            )
        ],
    )
    assert set(sources.snapshot.files) == {f"web/{path}" for path in expected}


def test_refuses_a_tarball_whose_sha256_differs(rule_runner: RuleRunner, tmp_path: Path) -> None:
    tarball = make_tgz(tmp_path / "a-1.0.0.tgz", {"package.json": b"{}"})
    pinned = pin("node_modules/a", tarball)
    make_tgz(tmp_path / "a-1.0.0.tgz", {"package.json": b'{"evil": true}'})
    write_target(rule_runner, json.dumps({"packages": [pinned]}))
    with pytest.raises(ExecutionError, match=r"a-1.0.0.tgz is \d+ bytes, but the pins say \d+"):
        node_modules(rule_runner)


def test_refuses_a_tarball_with_a_parent_directory_entry(
    rule_runner: RuleRunner, tmp_path: Path
) -> None:
    tarball = make_tgz(
        tmp_path / "a-1.0.0.tgz", {"package/package.json": b"{}", "package/../../x": b"x"}, top=""
    )
    write_target(rule_runner, json.dumps({"packages": [pin("node_modules/a", tarball)]}))
    with pytest.raises(ExecutionError, match=r"node_modules/a \(a-1.0.0.tgz\).*contains `..`"):
        node_modules(rule_runner)


def test_a_bad_pins_file_is_refused_naming_the_file(rule_runner: RuleRunner) -> None:
    write_target(rule_runner, '{"packages": [')
    with pytest.raises(ExecutionError, match="The npm pins file web/pins.json is not valid JSON"):
        node_modules(rule_runner)


GOOD = {
    "path": "node_modules/@s/a",
    "name": "@s/a",
    "version": "1.0.0",
    "url": "https://registry.npmjs.org/@s/a/-/a-1.0.0.tgz",
    "size": 10,
    "sha256": "ab" * 32,
    "integrity": "sha512-unchecked-here",
}


@pytest.mark.parametrize(
    "packages, problem",
    [
        ({"a": 1}, 'must be a JSON object with a "packages" list'),
        (
            [{k: v for k, v in GOOD.items() if k != "sha256"}],
            r"\(node_modules/@s/a\) without sha256",
        ),
        ([GOOD, GOOD], "pins node_modules/@s/a twice"),
        ([{**GOOD, "path": "node_modules/../a"}], "is not an install path"),
        ([{**GOOD, "path": "node_modules/@s/b"}], "does not end in its name '@s/a'"),
        ([{**GOOD, "sha256": "AB" * 32}], "sha256 is not 64 lowercase hex digits"),
        ([{**GOOD, "size": "10"}], "size is not a byte count"),
        ([{**GOOD, "url": "ftp://x/a.tgz"}], "url is not an http"),
    ],
)
def test_parse_pins_names_the_file_and_the_problem(packages, problem) -> None:
    content = json.dumps(packages if isinstance(packages, dict) else {"packages": packages})
    with pytest.raises(ValueError, match=f"The npm pins file web/pins.json .*{problem}"):
        parse_pins(content.encode(), "web/pins.json")


def test_parse_pins_sorts_by_install_path() -> None:
    other = {**GOOD, "path": "node_modules/@s/a/node_modules/b", "name": "b"}
    pins = parse_pins(json.dumps({"packages": [other, GOOD]}).encode(), "pins.json")
    assert [p.path for p in pins] == ["node_modules/@s/a", "node_modules/@s/a/node_modules/b"]


def test_exclude_globs_are_checked() -> None:
    assert NpmPackagesExcludeField(["a/bin/*/win32"], ADDRESS).value == ("a/bin/*/win32",)
    with pytest.raises(InvalidFieldException, match="the glob '../x' may not contain"):
        NpmPackagesExcludeField(["../x"], ADDRESS)
