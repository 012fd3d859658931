"""A model artifact of >= 200 MB through the team cache: built on machine A (CI, writes the
cache), fetched on machine B (a developer's computer: own HOME, caches, checkout, interpreters,
toolchain root; reads only). Prints A's build seconds, what A uploaded, B's fetch seconds and
B's peak memory, and the machine's load.

    python3 -m infra.bench.large_artifact.bench [--width 800000] [--keep DIR]

Needs what tests/cicd/two_machines_test.py needs (a BuildGrid of its own via
tests/support/remote_cache.py, root or user namespaces). The model is one wide hidden layer:
64 * width + width * 10 float32 weights (width 800000: ~59M parameters, ~237 MB of ONNX), trained
one epoch on the committed digits set: cheap compute, a big artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.e2e.machines import Machine
from tests.e2e.scratch_repo import TINY_BUILD, TINY_MODEL, ScratchRepo
from tests.support.remote_cache import running_cache

MODEL = "wide"
ONNX = f"dist/models/{MODEL}/model.onnx"
# Runs a command and prints the peak resident memory of its process tree's largest member (KiB).
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def wide_model(repo: ScratchRepo, width: int) -> None:
    repo.write(f"models/{MODEL}/__init__.py", "")
    repo.write(
        f"models/{MODEL}/train.py",
        TINY_MODEL.format(nonce=repo.nonce, extra_import="", hidden=str(width)),
    )
    config = {"seed": 0, "epochs": 1, "batch_size": 256, "learning_rate": 0.01}
    repo.write(f"models/{MODEL}/config.json", json.dumps(config))
    repo.write(f"models/{MODEL}/BUILD", TINY_BUILD.format(name=MODEL, threshold=0.1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=800_000, help="hidden units")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="large-artifact-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        repo_a = ScratchRepo(work / "A" / "repo")
        wide_model(repo_a, args.width)
        repo_b = repo_a.clone(work / "B" / "x" / "y" / "checkout")
        a = Machine("A", work / "A", repo_a.root, depth=0, own_interpreters=False, isolated=False)
        b = Machine("B", work / "B", repo_b.root, depth=3, reverse_path=True, lang="de_DE.UTF-8")
        with running_cache(work / "cache") as cache:
            print(f"before A: {load()}", flush=True)
            cas_before = tree_bytes(cache.cas_dir)
            ci = ["--pants-config-files=pants.ci.toml", *cache.pants_options("ci")]
            run_a = a.run(["./pants", "--no-pantsd", *ci, "package", f"models/{MODEL}:"])
            if run_a.returncode != 0 or run_a.trained != [f"models/{MODEL}:{MODEL}"]:
                print(run_a.output, file=sys.stderr)
                return 1
            uploaded = tree_bytes(cache.cas_dir) - cas_before
            onnx_a = (repo_a.root / ONNX).read_bytes()
            print(
                f"A (CI, cold) built in {run_a.seconds:.1f} s; model.onnx {len(onnx_a) / 1e6:.1f} MB"
            )
            print(f"team cache CAS grew by {uploaded / 1e6:.1f} MB", flush=True)
            print(f"before B: {load()}", flush=True)
            options = cache.pants_options("developer")
            argv = [sys.executable, "-c", PEAK_RSS, "./pants", "--no-pantsd", *options]
            run_b = b.run([*argv, "package", f"models/{MODEL}:"])
            if run_b.returncode != 0 or run_b.trained:
                print(run_b.output, file=sys.stderr)
                return 1
            onnx_b = (repo_b.root / ONNX).read_bytes()
            same = hashlib.sha256(onnx_a).digest() == hashlib.sha256(onnx_b).digest()
            peak = int(run_b.output.rsplit("peak_rss_kib", 1)[1].split()[0])
            print(
                f"B (developer, warm team cache, own toolchain install) fetched in "
                f"{run_b.seconds:.1f} s; trained {run_b.trained}; model.onnx identical: {same}; "
                f"peak RSS of its largest process {peak / 1024:.0f} MiB"
            )
            print(f"after B: {load()}")
            return 0 if same else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
