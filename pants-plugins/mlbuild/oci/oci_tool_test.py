"""oci_tool.py on its own: reproducible layers and images, .deb unpacking, model artifacts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time

import pytest

from mlbuild.oci import oci_tool


def write_tree(root, files, mtime):
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (mtime, mtime))


def read_layer(out_dir):
    with open(os.path.join(out_dir, "layer.tar.gz"), "rb") as f:
        blob = f.read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
    return blob, members


def test_tree_layer_is_byte_identical_whatever_the_mtimes_and_creation_order(tmp_path):
    files = {
        "pkg/b.py": b"B = 2\n",
        "pkg/a.py": b"A = 1\n",
        "pkg/__pycache__/a.cpython-311.pyc": b"x",
    }
    first, second = tmp_path / "one", tmp_path / "two"
    write_tree(first, files, mtime=1_000_000)
    write_tree(second, dict(reversed(list(files.items()))), mtime=time.time())
    os.chmod(second / "pkg" / "a.py", 0o600)  # a umask difference must not leak either
    for src, out in ((first, "out1"), (second, "out2")):
        oci_tool.main(["tree", "--out", str(tmp_path / out), "--map", f"{src}=app"])
    blob1, members = read_layer(tmp_path / "out1")
    blob2, _ = read_layer(tmp_path / "out2")
    assert blob1 == blob2
    assert [m.name for m in members] == ["app", "app/pkg", "app/pkg/a.py", "app/pkg/b.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (0, 0, 0, "root", "root")
    }
    assert [m.mode for m in members] == [0o755, 0o755, 0o644, 0o644]
    meta = json.loads((tmp_path / "out1" / "layer.json").read_text())
    assert meta["digest"] == "sha256:" + hashlib.sha256(blob1).hexdigest()


def make_deb(path, files, symlinks=()):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.uid, info.uname = len(content), 0o755, 1000, "builder"
            tar.addfile(info, io.BytesIO(content))
        for name, target in symlinks:
            info = tarfile.TarInfo(f"./{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    members = [(b"debian-binary", b"2.0\n"), (b"data.tar", data.getvalue())]
    out = b"!<arch>\n"
    for name, content in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        out += header + str(len(content)).encode().ljust(10) + b"`\n" + content
        out += b"\n" if len(content) % 2 else b""
    path.write_bytes(out)


def test_debs_layer_unpacks_packages_drops_docs_and_adds_the_nonroot_account(tmp_path):
    make_deb(
        tmp_path / "b.deb",
        {"usr/bin/python3.11": b"ELF", "usr/share/doc/python/README": b"docs"},
        symlinks=[("lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so")],
    )
    make_deb(tmp_path / "a.deb", {"lib/x86_64-linux-gnu/ld.so": b"LD"})
    oci_tool.main(
        ["debs", "--out", str(tmp_path / "out"), str(tmp_path / "b.deb"), str(tmp_path / "a.deb")]
    )
    _, members = read_layer(tmp_path / "out")
    by_name = {m.name: m for m in members}
    assert "usr/share/doc/python/README" not in by_name
    assert by_name["usr/bin/python3"].linkname == "python3.11"
    assert by_name["lib64/ld.so"].issym()
    assert by_name["tmp"].mode == 0o1777
    assert (by_name["home/nonroot"].uid, by_name["home/nonroot"].uname) == (65532, "nonroot")
    assert {m.uid for m in members} == {0, 65532}
    assert [m.name for m in members] == sorted(by_name)


@pytest.fixture
def model_dir(tmp_path):
    onnx = b"not really onnx"
    meta = {
        "name": "m1",
        "version": hashlib.sha256(onnx).hexdigest(),
        "framework": "torch",
        "address": "models/m1:model",
        "inputs_digest": "ab" * 32,
        "artifact": {"file": "model.onnx", "sha256": hashlib.sha256(onnx).hexdigest()},
        "metrics": {"accuracy": 0.97, "per_class": {"0": {}}},
    }
    write_tree(
        tmp_path / "pkg",
        {
            "models/m1/model.onnx": onnx,
            "models/m1/model.json": json.dumps(meta).encode(),
            # The review report is in the package but not in the image.
            "models/m1/report.html": b"<html></html>",
            "models/m1/report_loss.png": b"png",
        },
        0,
    )
    return tmp_path / "pkg"


def test_model_layer_and_image_from_a_model_directory(tmp_path, model_dir):
    oci_tool.main(["model", "--out", str(tmp_path / "model"), "--src", str(model_dir)])
    _, members = read_layer(tmp_path / "model")
    assert [m.name for m in members if m.isfile()] == [
        "models/m1/model.json",
        "models/m1/model.onnx",
    ]
    oci_tool.main(["tree", "--out", str(tmp_path / "code"), "--map", f"{model_dir}=app"])
    spec = {
        "python": "/usr/bin/python3.11",
        "entry_point": "server.main:run",
        "pythonpath": ["/app"],
        "ports": [8500],
        "labels": {"org.opencontainers.image.source": "https://example.invalid/repo", "team": "ml"},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "dist" / "img.tar"
    argv = ["image", "--out", str(out), "--spec", str(tmp_path / "spec.json")]
    argv += [str(tmp_path / "code"), str(tmp_path / "model")]
    oci_tool.main(argv)
    first = out.read_bytes()
    oci_tool.main(argv)  # a second build must give the same bytes
    assert out.read_bytes() == first
    summary = json.loads((tmp_path / "dist" / "img.json").read_text())
    assert (tmp_path / "dist" / "img.digest").read_text() == summary["digest"] + "\n"
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert (
        hashlib.sha256(files["blobs/sha256/" + summary["digest"][7:]]).hexdigest()
        == summary["digest"][7:]
    )
    index = json.loads(files["index.json"])
    assert index["manifests"][0]["digest"] == summary["digest"]
    docker = json.loads(files["manifest.json"])[0]
    assert docker["RepoTags"] == [f"ml/m1:{summary['model_version'][:12]}"]
    config = json.loads(files[docker["Config"]])
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"][:2] == ["/usr/bin/python3.11", "-c"]
    assert config["config"]["Cmd"] == ["--model-dir", "/models/m1"]
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == summary["model_version"]
    assert labels["org.opencontainers.image.created"] == config["created"] == "1970-01-01T00:00:00Z"
    assert labels["ml.model.metrics.accuracy"] == "0.97"
    assert "ml.model.metrics.per_class" not in labels
    assert labels["org.opencontainers.image.source"] == "https://example.invalid/repo"
    assert labels["team"] == "ml"
    assert len(config["rootfs"]["diff_ids"]) == len(docker["Layers"]) == 2


def test_model_layer_from_an_archive_checks_the_artifact_sha256(tmp_path, model_dir):
    archive = tmp_path / "arch" / "model.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tar:
        tar.add(model_dir / "models", arcname="models")
    oci_tool.main(["model", "--out", str(tmp_path / "out"), "--src", str(archive.parent)])
    assert json.loads((tmp_path / "out" / "layer.json").read_text())["model"]["name"] == "m1"
    (model_dir / "models" / "m1" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(SystemExit, match="sha256"):
        oci_tool.main(["model", "--out", str(tmp_path / "out2"), "--src", str(model_dir)])


def _image_inputs(tmp_path, model_dir):
    oci_tool.main(["model", "--out", str(tmp_path / "model"), "--src", str(model_dir)])
    oci_tool.main(["tree", "--out", str(tmp_path / "code"), "--map", f"{model_dir}=app"])
    spec = {"python": "/usr/bin/python3.11", "entry_point": "server.main", "pythonpath": ["/app"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return spec, [tmp_path / "code", tmp_path / "code", tmp_path / "model"]


def test_the_summary_from_layer_metadata_alone_is_the_written_images(tmp_path, model_dir):
    spec, layer_dirs = _image_inputs(tmp_path, model_dir)
    out = tmp_path / "dist" / "img.tar"
    oci_tool.main(
        ["image", "--out", str(out), "--spec", str(tmp_path / "spec.json")]
        + [str(d) for d in layer_dirs]
    )
    metas = [json.loads((d / "layer.json").read_text()) for d in layer_dirs]
    files, summary = oci_tool.image_metadata(spec, metas)
    assert oci_tool.summary_json(summary) == (tmp_path / "dist" / "img.json").read_bytes()
    with tarfile.open(out) as tar:
        in_tar = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    # Every file but the layer blobs, byte for byte; the same layer twice is one blob, counted once.
    assert all(in_tar[path] == data for path, data in files.items())
    blobs = [data for path, data in in_tar.items() if path.startswith("blobs/")]
    assert len(blobs) == 4  # code (twice, one blob), model, config, manifest
    assert summary["size"] == sum(len(data) for data in blobs)


def test_an_image_refuses_a_layer_that_differs_from_its_metadata(tmp_path, model_dir):
    spec, layer_dirs = _image_inputs(tmp_path, model_dir)
    (tmp_path / "code" / "layer.tar.gz").write_bytes(b"not the layer")
    argv = ["image", "--out", str(tmp_path / "img.tar"), "--spec", str(tmp_path / "spec.json")]
    with pytest.raises(SystemExit, match="code: layer digest differs"):
        oci_tool.main(argv + [str(d) for d in layer_dirs])
    assert not (tmp_path / "img.tar").exists()
    metas = [json.loads((tmp_path / "model" / "layer.json").read_text())] * 2
    with pytest.raises(ValueError, match="expected one model layer, found 2"):
        oci_tool.image_metadata(spec, metas)
