"""The remote cache shares trained models and their images between machines (real ./pants).

Checkout A (a scratch repo with two tiny models and their `model_image`s, with a fresh nonce so
no training is cached anywhere) runs `package ::` with pants.ci.toml and empty local caches: it
trains and writes the results to the cache. Checkout B, a copy made before A ran, with its own
empty local store, named caches and workdir, runs the same: it must train nothing, run nothing
for lack of a hit, and produce byte-identical artifacts, images and Kubernetes manifests (model.json
holds the wall-clock training time: equal only if B really got A's result). Then B, with one
model edited and the cache on a dead port, must still pass, training only that model.

Skips, saying why, when no cache is running (infra/remote-cache/start); REMOTE_CACHE_REQUIRED=1
makes that a failure. Pants caches a skip like a pass: rerun with `./pants test --force`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.e2e.scratch_repo import PantsRun, ScratchRepo

HOST = os.environ.get("REMOTE_CACHE_HOST", "127.0.0.1")
PORT = int(os.environ.get("REMOTE_CACHE_CI_PORT", "50051"))
MODELS = ("tiny_a", "tiny_b")
_COUNTER = re.compile(r"^\s*(remote_cache_\w+|local_\w+): (\d+)$", re.MULTILINE)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counters(run: PantsRun) -> dict[str, int]:
    """The `[stats] log` counters of a run (the last value of each)."""
    return {name: int(value) for name, value in _COUNTER.findall(run.output)}


def outputs(root: Path) -> dict[str, str]:
    """sha256 of every file a `package ::` of the models and images writes that must be shared."""
    dist = root / "dist"
    files = [dist / "models" / name / f for name in MODELS for f in ("model.onnx", "model.json")]
    files += [
        dist / f"models.{name}" / f"image.{ext}" for name in MODELS for ext in ("tar", "digest")
    ]
    files += [dist / "deploy" / f"{name}.yaml" for name in MODELS]
    return {str(f.relative_to(dist)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


class Machine:
    """A checkout with its own empty local caches, running Pants with CI's settings, no pantsd."""

    def __init__(self, repo: ScratchRepo, caches: Path) -> None:
        self.repo = repo
        self.env = {
            "PANTS_LOCAL_STORE_DIR": str(caches / "store"),
            "PANTS_NAMED_CACHES_DIR": str(caches / "named-caches"),
        }
        self.workdir = caches / "workdir"

    def package(self, cache_port: int) -> tuple[PantsRun, float]:
        start = time.monotonic()
        run = self.repo.pants(
            f"--pants-workdir={self.workdir}",
            "--pants-config-files=pants.ci.toml",
            f"--remote-store-address=grpc://{HOST}:{cache_port}",
            "package",
            "::",
            pantsd=False,
            env=self.env,
        )
        return run, time.monotonic() - start


def _figures(label: str, run: PantsRun, seconds: float) -> str:
    c = counters(run)
    return (
        f"{label}: {seconds:.0f} s, trained {run.trained}, remote lookups "
        f"{c.get('remote_cache_requests', 0)}, hits {c.get('remote_cache_requests_cached', 0)}, "
        f"misses {c.get('remote_cache_requests_uncached', 0)}, writes "
        f"{c.get('remote_cache_write_successes', 0)}/{c.get('remote_cache_write_attempts', 0)}, "
        f"time saved {c.get('remote_cache_total_time_saved_ms', 0)} ms, "
        f"processes run locally {c.get('local_execution_requests', 0)}"
    )


def test_checkout_b_gets_a_s_models_and_images_from_the_cache(tmp_path: Path) -> None:
    if not _listening(HOST, PORT):
        reason = f"no remote cache on {HOST}:{PORT}; start it with infra/remote-cache/start"
        if os.environ.get("REMOTE_CACHE_REQUIRED") == "1":
            pytest.fail(f"REMOTE_CACHE_REQUIRED=1 but {reason}")
        pytest.skip(reason)

    repo_a = ScratchRepo(tmp_path / "A")
    for name in MODELS:
        repo_a.add_tiny_model(name, uses_shared=True)
        repo_a.add_image(name)
    repo_b = repo_a.clone(tmp_path / "B")
    a, b = Machine(repo_a, tmp_path / "A-caches"), Machine(repo_b, tmp_path / "B-caches")
    addresses = [f"models/{name}:{name}" for name in MODELS]

    run_a, seconds_a = a.package(PORT)
    print(_figures("A", run_a, seconds_a))
    assert run_a.returncode == 0, run_a.output
    assert run_a.trained == addresses
    assert counters(run_a).get("remote_cache_write_successes", 0) > 0, run_a.output
    assert counters(run_a).get("remote_cache_write_errors", 0) == 0, run_a.output

    run_b, seconds_b = b.package(PORT)
    print(_figures("B", run_b, seconds_b))
    assert run_b.returncode == 0, run_b.output
    assert run_b.trained == [], run_b.output
    stats_b = counters(run_b)
    assert stats_b.get("remote_cache_requests_cached", 0) > 0, run_b.output
    # Nothing B ran for lack of a hit: every lookup hit, so nothing was written either.
    assert stats_b.get("remote_cache_requests_uncached", 0) == 0, run_b.output
    assert stats_b.get("remote_cache_write_attempts", 0) == 0, run_b.output
    assert outputs(repo_b.root) == outputs(repo_a.root)

    for name in MODELS:
        digest = repo_b.read(f"dist/models.{name}/image.digest").strip()
        deployment, service = yaml.safe_load_all(repo_b.read(f"dist/deploy/{name}.yaml"))
        for doc in (deployment, service):
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"registry.example.com/ml/{name}@{digest}"

    # The cache down: B, with one model edited, still passes and trains only that model.
    train = repo_b.read("models/tiny_a/train.py")
    repo_b.write("models/tiny_a/train.py", train + "# edited with the cache down\n")
    run_down, seconds_down = b.package(_dead_port())
    print(_figures("B, cache down", run_down, seconds_down))
    assert run_down.returncode == 0, run_down.output
    assert run_down.trained == ["models/tiny_a:tiny_a"], run_down.output
    # remote_cache_warnings = "first_only": one warning for reads, at most one for writes.
    assert run_down.output.count("Failed to read from remote cache") == 1, run_down.output
    assert run_down.output.count("Failed to write to remote cache") <= 1, run_down.output
