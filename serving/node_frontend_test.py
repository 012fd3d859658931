"""`--frontend node`'s launcher: what it refuses before Node runs, and what it hands Node."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

import serving
from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.testsupport import server_process, stop_process, stub, wait_for_ports


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_artifact(tmp_path_factory.mktemp("models") / "m", "fixture_digits")


def launch(model_dir, *extra: str, **env: str):
    return server_process(
        *("--model-dir", str(model_dir), "--insecure", "--port", "0", "--frontend", "node"),
        *extra,
        env={**os.environ, **env},
    )


def refusal(model_dir, *extra: str, **env: str) -> str:
    process = launch(model_dir, *extra, **env)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    return err


def fake_node(tmp_path, version: str) -> str:
    script = tmp_path / "node"
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_no_node_is_refused_naming_the_variable(model_dir, tmp_path):
    err = refusal(model_dir, SERVING_NODE=str(tmp_path / "missing-node"))
    assert "cannot run" in err and "missing-node" in err


def test_an_old_node_is_refused_with_its_version(model_dir, tmp_path):
    err = refusal(model_dir, SERVING_NODE=fake_node(tmp_path, "v16.20.0"))
    assert "needs Node.js 18 or newer" in err and "v16.20.0" in err


def test_missing_npm_packages_are_refused_naming_the_directory(model_dir, tmp_path):
    (tmp_path / "main.js").write_text("")
    err = refusal(model_dir, SERVING_NODE_DIR=str(tmp_path))
    assert f"its npm packages are missing from {tmp_path / 'node_modules'}" in err
    err = refusal(model_dir, SERVING_NODE_MODULES=str(tmp_path / "elsewhere"))
    assert f"its npm packages are missing from {tmp_path / 'elsewhere'}" in err


def test_npm_packages_can_live_apart_from_the_code(model_dir, tmp_path):
    # As under `./pants run serving:server`, whose PEX carries the code but not node_modules/.
    source = Path(serving.__file__).parent / "node"
    code = tmp_path / "code"
    code.mkdir()
    for script in source.glob("*.js"):
        shutil.copy(script, code)
    process = launch(
        model_dir, SERVING_NODE_DIR=str(code), SERVING_NODE_MODULES=str(source / "node_modules")
    )
    try:
        port, _ = wait_for_ports(process)
        client, channel = stub(port)
        assert client.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        channel.close()
    finally:
        stop_process(process)


def test_python_only_flags_are_refused(model_dir):
    err = refusal(model_dir, "--batch-workers", "2")
    assert "--batch-workers needs --execution thread" in err


def test_a_bad_artifact_is_refused_before_node_starts(tmp_path):
    model = write_artifact(tmp_path / "bad", "bad")
    (model / "model.json").write_text("{")
    err = refusal(model)
    assert f"error: {model / 'model.json'}: not valid JSON" in err


def test_node_runs_as_the_same_process_without_telemetry(model_dir):
    process = launch(model_dir)
    try:
        wait_for_ports(process)
        cmdline = open(f"/proc/{process.pid}/cmdline", "rb").read().split(b"\0")
        assert os.path.basename(cmdline[0]) == b"node" and cmdline[1].endswith(b"main.js")
        environ = open(f"/proc/{process.pid}/environ", "rb").read().split(b"\0")
        assert b"ORT_DISABLE_TELEMETRY=1" in environ
    finally:
        stop_process(process)
