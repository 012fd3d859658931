"""Builds reproducible OCI image layers and images with the standard library alone.

Pants runs this script in sandboxed, cacheable processes (see `rules.py`); it never talks to a
container engine or a registry. Every output is a function of the input bytes only: tar entries are
sorted, mtimes fixed to SOURCE_DATE_EPOCH (0), owners are root (0) or nonroot (65532) with fixed
names, modes are normalised and gzip headers carry no name or time.

Subcommands:
  debs    unpack Debian packages (`.deb`) into a distroless base layer
  tree    lay a directory (or a PEX's installed wheels) into a layer under a prefix
  model   lay a model artifact (a directory with model.json, or an archive of one) into a layer
  image   assemble layers into one tar that is both an OCI image layout and a docker-archive

Each layer subcommand writes `<out>/layer.tar.gz` and `<out>/layer.json` (digest, diff_id, size).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
NONROOT_UID = 65532
USERS = {0: "root", NONROOT_UID: "nonroot"}
GZIP_LEVEL = 6

# Parts of Debian packages a distroless runtime never reads.
DEB_EXCLUDES = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/share/bug/",
    "usr/share/gcc/",
    "usr/share/gdb/",
    "usr/lib/x86_64-linux-gnu/gconv/",
    "usr/lib/python3.11/ensurepip/",
    "usr/lib/python3.11/idlelib/",
    "usr/lib/python3.11/lib2to3/",
    "usr/lib/python3.11/pydoc_data/",
    "usr/lib/python3.11/turtledemo/",
    "usr/lib/python3.11/config-3.11-x86_64-linux-gnu/",
    "etc/init.d/",
    "etc/profile.d/",
)

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# ------------------------------------------------------------------------------------------
# Layer entries
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One path of a layer: a directory, a regular file (with data) or a symlink."""

    path: str  # relative, no leading "./" or "/", no trailing "/"
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""
    uid: int = 0


def normalise_path(name: str) -> str:
    path = posixpath.normpath("/" + name.lstrip("./").lstrip("/")).lstrip("/")
    if path in ("", ".") or path.startswith(".."):
        raise ValueError(f"bad path in layer: {name!r}")
    return path


class Layer:
    """A set of entries keyed by path; later additions replace earlier ones (like layered dpkg)."""

    def __init__(self) -> None:
        self.entries: Dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        self._add_parents(entry.path)
        existing = self.entries.get(entry.path)
        if existing is not None and existing.kind == "dir" and entry.kind == "dir":
            return
        self.entries[entry.path] = entry

    def add_file(self, path: str, data: bytes, executable: bool = False, uid: int = 0) -> None:
        self.add(Entry(path, "file", 0o755 if executable else 0o644, data=data, uid=uid))

    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        self.add(Entry(path, "dir", mode, uid=uid))

    def add_symlink(self, path: str, target: str) -> None:
        self.add(Entry(path, "symlink", 0o777, target=target))

    def _add_parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent and parent not in self.entries:
            self.entries[parent] = Entry(parent, "dir", 0o755)
            parent = posixpath.dirname(parent)

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries):
                entry = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = EPOCH
                info.uid = info.gid = entry.uid
                info.uname = info.gname = USERS[entry.uid]
                info.mode = entry.mode
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                    tar.addfile(info)
                else:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
        return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, compresslevel=GZIP_LEVEL, mtime=0
    ) as gz:
        gz.write(data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layer(layer: Layer, out_dir: str, created_by: str, extra: Optional[dict] = None) -> dict:
    """Writes `layer.tar.gz` and `layer.json` into out_dir and returns the metadata."""
    raw = layer.tar_bytes()
    blob = gzip_bytes(raw)
    meta = {
        "digest": sha256(blob),
        "diff_id": sha256(raw),
        "size": len(blob),
        "uncompressed_size": len(raw),
        "created_by": created_by,
        **(extra or {}),
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "layer.tar.gz"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out_dir, "layer.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


# ------------------------------------------------------------------------------------------
# debs: a distroless base layer from Debian packages
# ------------------------------------------------------------------------------------------


def read_ar(data: bytes) -> Dict[str, bytes]:
    """The members of a Unix `ar` archive (the container format of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def deb_data_tar(deb: bytes) -> tarfile.TarFile:
    members = read_ar(deb)
    for name, member in members.items():
        if name == "data.tar.xz":
            return tarfile.open(fileobj=io.BytesIO(lzma.decompress(member)), mode="r:")
        if name in ("data.tar.gz", "data.tar"):
            return tarfile.open(fileobj=io.BytesIO(member), mode="r:*")
    raise ValueError(f"no supported data.tar member in .deb (members: {sorted(members)})")


def excluded(path: str, excludes: Sequence[str]) -> bool:
    return any((path + "/").startswith(prefix) for prefix in excludes)


def add_deb(layer: Layer, deb: bytes, excludes: Sequence[str] = DEB_EXCLUDES) -> None:
    tar = deb_data_tar(deb)
    members = tar.getmembers()
    by_name = {normalise_path(m.name): m for m in members if m.name not in (".", "./")}
    for member in members:
        if member.name in (".", "./"):
            continue
        path = normalise_path(member.name)
        if excluded(path, excludes):
            continue
        mode = member.mode & 0o7777
        if member.isdir():
            layer.add_dir(path, mode)
        elif member.issym():
            layer.add_symlink(path, member.linkname)
        elif member.islnk():
            # Hard links become copies: sorted entries could otherwise precede their target.
            source = by_name[normalise_path(member.linkname)]
            layer.add(Entry(path, "file", mode, data=tar.extractfile(source).read()))
        elif member.isfile():
            layer.add(Entry(path, "file", mode, data=tar.extractfile(member).read()))


def add_runtime_files(layer: Layer, python: str) -> None:
    """Accounts, a writable /tmp and the nonroot home, as distroless images have."""
    layer.add_file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/sbin/nologin\n"
        b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    layer.add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n")
    layer.add_dir("root", 0o700)
    layer.add_dir("tmp", 0o1777)
    layer.add_dir("home/nonroot", 0o700, uid=NONROOT_UID)
    if python and "usr/bin/python3" not in layer.entries:
        layer.add_symlink("usr/bin/python3", python)


def cmd_debs(args: argparse.Namespace) -> None:
    layer = Layer()
    names = []
    paths = []
    for arg in args.debs:
        if os.path.isdir(arg):
            paths.extend(os.path.join(arg, n) for n in os.listdir(arg) if n.endswith(".deb"))
        else:
            paths.append(arg)
    for path in sorted(paths, key=os.path.basename):
        with open(path, "rb") as f:
            add_deb(layer, f.read())
        names.append(os.path.basename(path))
    add_runtime_files(layer, args.python)
    write_layer(layer, args.out, f"debian packages: {' '.join(names)}")


# ------------------------------------------------------------------------------------------
# tree: files under a prefix
# ------------------------------------------------------------------------------------------


def walk_files(root: str) -> Iterable[Tuple[str, str]]:
    """(relative path, absolute path) of every file and symlink under root, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, root).replace(os.sep, "/"), full


def add_tree(layer: Layer, root: str, prefix: str, skip_hidden: bool = False) -> None:
    """Adds root's files under prefix; skip_hidden drops top-level dot entries (pex's own
    `.layout.json` and `.prefix/bin` console scripts in an installed wheel)."""
    for rel, full in walk_files(root):
        if rel.endswith(".pyc") or "/__pycache__/" in f"/{rel}":
            continue
        if skip_hidden and rel.startswith("."):
            continue
        dest = normalise_path(posixpath.join(prefix, rel))
        if os.path.islink(full):
            layer.add_symlink(dest, os.readlink(full))
            continue
        with open(full, "rb") as f:
            data = f.read()
        layer.add_file(dest, data, executable=os.access(full, os.X_OK))


def cmd_tree(args: argparse.Namespace) -> None:
    layer = Layer()
    for spec in args.map:
        src, _, dest = spec.partition("=")
        if args.pex_deps:
            # A loose-layout PEX: `.deps/<wheel>/` holds each installed wheel; merge them.
            deps = os.path.join(src, ".deps")
            for wheel in sorted(os.listdir(deps)) if os.path.isdir(deps) else []:
                add_tree(layer, os.path.join(deps, wheel), dest, skip_hidden=True)
        else:
            add_tree(layer, src, dest)
    for path in [e.path for e in layer.entries.values() if e.kind == "file"]:
        if os.path.basename(path) == "INSTALLER" or path.endswith(".dist-info/RECORD"):
            del layer.entries[path]  # written by the installer, not part of the wheel's content
    write_layer(layer, args.out, args.created_by)


# ------------------------------------------------------------------------------------------
# model: the model artifact under /models/<name>
# ------------------------------------------------------------------------------------------


def read_model_files(root: str) -> Dict[str, bytes]:
    """The files of the model artifact directory (the one holding model.json) found under root.

    The artifact may be laid out as files or packed in one .tar/.tar.gz/.zip archive.
    """
    files = {rel: full for rel, full in walk_files(root)}
    found = sorted(rel for rel in files if posixpath.basename(rel) == "model.json")
    contents: Dict[str, bytes] = {}
    if found:
        for rel, full in files.items():
            with open(full, "rb") as f:
                contents[rel] = f.read()
    else:
        archives = [rel for rel in files if rel.endswith((".tar", ".tar.gz", ".tgz", ".zip"))]
        if len(archives) != 1:
            raise SystemExit(f"no model.json in the model's package (files: {sorted(files)})")
        contents = read_archive(files[archives[0]])
        found = sorted(rel for rel in contents if posixpath.basename(rel) == "model.json")
    if len(found) != 1:
        raise SystemExit(f"expected exactly one model.json in the model's package, found {found}")
    model_dir = posixpath.dirname(found[0])
    return {
        posixpath.relpath(rel, model_dir or "."): data
        for rel, data in contents.items()
        if not model_dir or rel.startswith(model_dir + "/")
    }


def read_archive(path: str) -> Dict[str, bytes]:
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            return {normalise_path(n): zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    with tarfile.open(path, "r:*") as tar:
        return {
            normalise_path(m.name): tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()
        }


def cmd_model(args: argparse.Namespace) -> None:
    files = read_model_files(args.src)
    meta = json.loads(files["model.json"])
    name = meta["name"]
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise SystemExit(f"model name {name!r}: expected lowercase letters, digits, '_', '.', '-'")
    artifact = meta.get("artifact", {})
    data = files.get(artifact.get("file", "model.onnx"))
    if data is None:
        raise SystemExit(f"model {name}: the artifact file {artifact.get('file')!r} is missing")
    if "sha256" in artifact and hashlib.sha256(data).hexdigest() != artifact["sha256"]:
        raise SystemExit(f"model {name}: the artifact's sha256 differs from model.json")
    # The server needs model.json and the file it names; the review report stays in dist/.
    files = {rel: files[rel] for rel in ("model.json", artifact.get("file", "model.onnx"))}
    # Wall-clock training time is the one field that differs between two trainings of the same
    # inputs; the image leaves it out so that two cold builds give the same image digest.
    training = meta.get("training")
    if isinstance(training, dict) and "seconds" in training:
        meta = {**meta, "training": {k: v for k, v in training.items() if k != "seconds"}}
        files = {
            **files,
            "model.json": (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
        }
    layer = Layer()
    for rel, content in files.items():
        layer.add_file(posixpath.join("models", name, rel), content)
    write_layer(layer, args.out, f"model {name} {meta.get('version', '')}", {"model": meta})


# ------------------------------------------------------------------------------------------
# image: config, manifest, OCI layout and docker-archive in one tar
# ------------------------------------------------------------------------------------------


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def model_labels(model: dict) -> Dict[str, str]:
    labels = {
        "org.opencontainers.image.title": model["name"],
        "org.opencontainers.image.version": model.get("version", ""),
        "org.opencontainers.image.revision": model.get("inputs_digest", model.get("version", "")),
        "org.opencontainers.image.source": model.get("address", ""),
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.description": f"Model server for {model['name']}",
        "ml.model.name": model["name"],
        "ml.model.framework": model.get("framework", ""),
        "ml.model.address": model.get("address", ""),
        "ml.model.sha256": model.get("artifact", {}).get("sha256", ""),
    }
    for metric, value in sorted(model.get("metrics", {}).items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            labels[f"ml.model.metrics.{metric}"] = repr(value)
    return labels


def entrypoint_argv(python: str, entry_point: str) -> List[str]:
    module, _, function = entry_point.partition(":")
    if not function:
        return [python, "-m", module]
    return [python, "-c", f"import sys, {module}; sys.exit({module}.{function}())"]


def build_config(spec: dict, layers: List[dict], model: dict) -> dict:
    model_dir = f"/models/{model['name']}"
    labels = model_labels(model)
    labels.update(spec.get("labels", {}))
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "author": "mlbuild model_image",
        "config": {
            "User": f"{NONROOT_UID}:{NONROOT_UID}",
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "LANG=C.UTF-8",
                "PYTHONDONTWRITEBYTECODE=1",
                "PYTHONUNBUFFERED=1",
                "PYTHONPATH=" + ":".join(spec["pythonpath"]),
                "HOME=/home/nonroot",
                f"MODEL_DIR={model_dir}",
            ],
            "Entrypoint": entrypoint_argv(spec["python"], spec["entry_point"]),
            "Cmd": ["--model-dir", model_dir, *spec.get("args", [])],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {f"{port}/tcp": {} for port in spec.get("ports", [])},
            "Labels": labels,
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        "history": [{"created": CREATED, "created_by": layer["created_by"]} for layer in layers],
    }


def image_metadata(
    spec: dict, layers: Sequence[dict]
) -> Tuple[Dict[str, bytes], Dict[str, object]]:
    """Every file of the image tar but the layer blobs, and the summary (digests, tags, layers).

    A function of the spec and the layers' `layer.json` alone: the `package` rule calls it to
    know the image's digest (which the SBOM and provenance need) while the tar is still written.
    """
    models = [layer["model"] for layer in layers if "model" in layer]
    if len(models) != 1:
        raise ValueError(f"expected one model layer, found {len(models)}")
    model = models[0]
    config = canonical_json(build_config(spec, list(layers), model))
    config_digest = sha256(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": MEDIA_TYPE_LAYER, "digest": layer["digest"], "size": layer["size"]}
            for layer in layers
        ],
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = sha256(manifest_bytes)
    repository = spec.get("repository") or f"ml/{model['name']}"
    tag = (model.get("version") or "latest")[:12]
    ref = f"{repository}:{tag}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": blob_path(config_digest),
            "RepoTags": [ref],
            "Layers": [blob_path(layer["digest"]) for layer in layers],
        }
    ]
    files = {
        blob_path(config_digest): config,
        blob_path(manifest_digest): manifest_bytes,
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json(index),
        "manifest.json": canonical_json(docker_manifest),
    }
    # Each blob once, as in the tar: two equal layers are one blob.
    blob_sizes = {layer["digest"]: layer["size"] for layer in layers}
    blob_sizes.update({config_digest: len(config), manifest_digest: len(manifest_bytes)})
    summary = {
        "digest": manifest_digest,
        "image_id": config_digest,
        "reference": ref,
        "repository": repository,
        "tag": tag,
        "model": model["name"],
        "model_version": model.get("version", ""),
        "ports": list(spec.get("ports", [])),
        "layers": [
            {k: layer[k] for k in ("digest", "diff_id", "size", "created_by")} for layer in layers
        ],
        "size": sum(blob_sizes.values()),
        "uncompressed_size": sum(layer["uncompressed_size"] for layer in layers),
    }
    return files, summary


def blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def summary_json(summary: Dict[str, object]) -> bytes:
    """`<image>.json` as `package` writes it."""
    return (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()


def assemble_image(
    spec: dict, layer_dirs: Sequence[str]
) -> Tuple[Dict[str, bytes], Dict[str, object]]:
    """The files of the image tar, and a summary (digests, tags, layers)."""
    layers, blobs = [], {}
    for layer_dir in layer_dirs:
        with open(os.path.join(layer_dir, "layer.json")) as f:
            meta = json.load(f)
        with open(os.path.join(layer_dir, "layer.tar.gz"), "rb") as f:
            data = f.read()
        if sha256(data) != meta["digest"] or len(data) != meta["size"]:
            raise SystemExit(f"{layer_dir}: layer digest differs from its layer.json")
        blobs[blob_path(meta["digest"])] = data
        layers.append(meta)
    files, summary = image_metadata(spec, layers)
    return {**blobs, **files}, summary


def cmd_image(args: argparse.Namespace) -> None:
    with open(args.spec) as f:
        spec = json.load(f)
    try:
        files, summary = assemble_image(spec, args.layers)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    layer = Layer()
    for path, data in files.items():
        layer.add_file(path, data)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(layer.tar_bytes())
    base = args.out[: -len(".tar")] if args.out.endswith(".tar") else args.out
    with open(base + ".digest", "w") as f:
        f.write(summary["digest"] + "\n")
    with open(base + ".json", "wb") as f:
        f.write(summary_json(summary))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    debs = sub.add_parser("debs")
    debs.add_argument("--out", required=True)
    debs.add_argument("--python", default="python3.11", help="target of /usr/bin/python3")
    debs.add_argument("debs", nargs="+", help=".deb files or directories of them")
    debs.set_defaults(func=cmd_debs)
    tree = sub.add_parser("tree")
    tree.add_argument("--out", required=True)
    tree.add_argument("--map", action="append", required=True, help="SRC_DIR=DEST_PREFIX")
    tree.add_argument("--pex-deps", action="store_true", help="SRC_DIR is a loose PEX")
    tree.add_argument("--created-by", default="files")
    tree.set_defaults(func=cmd_tree)
    model = sub.add_parser("model")
    model.add_argument("--out", required=True)
    model.add_argument("--src", required=True)
    model.set_defaults(func=cmd_model)
    image = sub.add_parser("image")
    image.add_argument("--out", required=True)
    image.add_argument("--spec", required=True, help="JSON: python, entry_point, pythonpath, ...")
    image.add_argument("layers", nargs="+", help="layer directories, lowest first")
    image.set_defaults(func=cmd_image)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
