"""npm_tool.py on its own: top-level directory stripping, excludes, modes, and what it refuses."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from mlbuild.npm import npm_tool


def make_tgz(path, entries, top="package"):
    """A gzipped npm-style tarball of entries {name under top/: value}, in order. A value is the
    file's bytes, (bytes, mode), ("symlink", target) or ("hardlink", target); top="" takes the
    names literally."""
    with tarfile.open(path, mode="w:gz") as tar:
        for name, value in entries.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            if isinstance(value, tuple) and isinstance(value[0], str):
                kind, info.linkname = value
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                tar.addfile(info)
                continue
            data, info.mode = value if isinstance(value, tuple) else (value, 0o664)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def unpack(tmp_path, packages, exclude=()):
    spec = {"packages": [{"path": p, "tarball": t} for p, t in packages], "exclude": list(exclude)}
    out = tmp_path / "node_modules"
    npm_tool.unpack(spec, str(out))
    return out


def tree(root):
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            found[os.path.relpath(full, root)] = os.stat(full).st_mode & 0o7777
    return found


def test_unpacks_at_install_paths_stripping_the_top_level_directory(tmp_path):
    a = make_tgz(tmp_path / "a.tgz", {"package.json": b"{}", "bin/cli.js": (b"#!", 0o775)})
    # Not every tarball calls its top-level directory `package`.
    b = make_tgz(tmp_path / "b.tgz", {"package.json": b"{}", "lib/b.js": b"1"}, top="b-2.0.0")
    out = unpack(tmp_path, [("node_modules/a", a), ("node_modules/@s/a/node_modules/b", b)])
    assert tree(out) == {
        "a/package.json": 0o644,
        "a/bin/cli.js": 0o755,
        "@s/a/node_modules/b/package.json": 0o644,
        "@s/a/node_modules/b/lib/b.js": 0o644,
    }
    assert os.stat(out / "@s" / "a").st_mode & 0o7777 == 0o755
    assert not (tmp_path / "node_modules.partial").exists()


def test_excludes_match_path_segments_and_everything_below(tmp_path):
    files = {f"bin/napi-v6/{p}/x64/binding.node": b"so" for p in ("linux", "darwin", "win32")}
    files["bin/napi-v6/linux/arm64/binding.node"] = b"so"
    ort = make_tgz(tmp_path / "ort.tgz", {**files, "dist/index.js": b"js"})
    out = unpack(
        tmp_path,
        [("node_modules/ort", ort)],
        exclude=["ort/bin/*/darwin", "ort/bin/**/win32", "ort/bin/*/linux/arm64/**"],
    )
    assert sorted(tree(out)) == ["ort/bin/napi-v6/linux/x64/binding.node", "ort/dist/index.js"]


def test_an_exclude_that_matches_nothing_is_an_error(tmp_path):
    a = make_tgz(tmp_path / "a.tgz", {"package.json": b"{}"})
    with pytest.raises(npm_tool.NpmToolError, match="matched no file: a/bni"):
        unpack(tmp_path, [("node_modules/a", a)], exclude=["a/bni"])
    assert not (tmp_path / "node_modules").exists()


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"package/../../evil": b"x"}, "contains `..`"),
        ({"/etc/evil": b"x"}, "absolute path"),
        ({"package/lib": ("symlink", "/etc")}, "links outside the package"),
        ({"package/lib/up": ("symlink", "../../other")}, "links outside the package"),
        ({"package/passwd": ("hardlink", "other/passwd")}, "links outside the package"),
        ({"other/file.js": b"x"}, "one top-level directory"),
        # A link that stays inside lexically but leaves through another link.
        (
            {"package/root": ("symlink", "."), "package/lib/up": ("symlink", "../root/..")},
            "resolves outside its package",
        ),
    ],
)
def test_refuses_paths_and_links_leaving_the_package(tmp_path, entries, message):
    good = make_tgz(tmp_path / "good.tgz", {"package.json": b"{}"})
    bad = make_tgz(tmp_path / "bad.tgz", {"package/package.json": b"{}", **entries}, top="")
    with pytest.raises(npm_tool.NpmToolError, match=message):
        unpack(tmp_path, [("node_modules/good", good), ("node_modules/bad", bad)])
    # Nothing partial is left behind: neither the tree nor its staging directory.
    assert sorted(os.listdir(tmp_path)) == ["bad.tgz", "good.tgz"]


def test_links_inside_the_package_are_kept_and_hard_links_copied(tmp_path):
    a = make_tgz(
        tmp_path / "a.tgz",
        {
            "lib/index.js": b"js",
            "index.js": ("symlink", "lib/index.js"),
            "copy.js": ("hardlink", "package/lib/index.js"),
        },
    )
    out = unpack(tmp_path, [("node_modules/a", a)])
    assert os.readlink(out / "a" / "index.js") == "lib/index.js"
    assert (out / "a" / "copy.js").read_bytes() == b"js"
    assert not os.path.islink(out / "a" / "copy.js")


def test_refuses_writing_through_a_link(tmp_path):
    a = make_tgz(tmp_path / "a.tgz", {"lib": ("symlink", "dist"), "lib/x.js": b"x"})
    with pytest.raises(npm_tool.NpmToolError, match="through the link node_modules/a/lib"):
        unpack(tmp_path, [("node_modules/a", a)])


def test_two_packages_writing_one_file_are_refused(tmp_path):
    parent = make_tgz(tmp_path / "p.tgz", {"node_modules/c/index.js": b"bundled"})
    child = make_tgz(tmp_path / "c.tgz", {"index.js": b"pinned"})
    with pytest.raises(npm_tool.NpmToolError, match="collides with the package at node_modules/p"):
        unpack(tmp_path, [("node_modules/p", parent), ("node_modules/p/node_modules/c", child)])


def test_bad_exclude_patterns_are_refused():
    for pattern in ("", "/abs", "a/../b", "a//b"):
        assert npm_tool.check_exclude_pattern(pattern)
    assert npm_tool.check_exclude_pattern("onnxruntime-node/bin/*/win32/") == ""


def test_main_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = make_tgz(tmp_path / "bad.tgz", {"package/../x": b"x"}, top="")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"packages": [{"path": "node_modules/bad", "tarball": bad}]}))
    with pytest.raises(SystemExit) as exit_info:
        npm_tool.main(["--spec", str(spec), "--out", str(tmp_path / "node_modules")])
    assert "npm_tool.py: node_modules/bad (bad.tgz): path 'package/../x' contains `..`" in str(
        exit_info.value.code
    )


def pinned(path: str, tarball: str, **overrides) -> dict:
    data = open(tarball, "rb").read()
    return {
        "path": path,
        "url": f"file://{tarball}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **overrides,
    }


def test_downloads_each_pinned_tarball_once_and_unpacks_it(tmp_path):
    tarball = make_tgz(tmp_path / "a-1.0.0.tgz", {"index.js": b"x"})
    spec = {
        "packages": [
            pinned("node_modules/a", tarball),
            pinned("node_modules/b/node_modules/a", tarball),
        ]
    }
    out = tmp_path / "node_modules"
    npm_tool.unpack(spec, str(out))
    assert set(tree(out)) == {"a/index.js", "b/node_modules/a/index.js"}
    assert not (tmp_path / "node_modules.tarballs").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"size": 1}, r"is \d+ bytes, but the pins say 1"),
        ({"sha256": "0" * 64}, "has sha256 [0-9a-f]{64}, but the pins say 0000"),
        ({"url": "file:///nonexistent/a-1.0.0.tgz"}, "cannot download file:///nonexistent"),
    ],
    ids=["size", "sha256", "unreachable"],
)
def test_a_download_that_differs_from_its_pin_is_refused_and_nothing_is_left(
    tmp_path, overrides, message
):
    tarball = make_tgz(tmp_path / "a-1.0.0.tgz", {"index.js": b"x"})
    out = tmp_path / "node_modules"
    with pytest.raises(npm_tool.NpmToolError, match=message):
        npm_tool.unpack({"packages": [pinned("node_modules/a", tarball, **overrides)]}, str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-1.0.0.tgz"]
