"""A model trained on a ~1 GB dataset from the artifact store, through the whole path, with the
memory of each process measured.

Generates the dataset (`generate.py`; a new seed per run, so no cache holds it), starts a store
of its own (`infra/datastore/start`, a free port, a temporary directory), uploads the dataset,
and builds a scratch copy of this repo's build set-up (`tests/e2e/scratch_repo.py`) with one
torch CNN on it and its serving image. Then runs real `./pants package` twice:

  first   fetch from the store, train (1 epoch, streamed from the file a batch at a time), gate,
          export ONNX, image
  rerun   a new Pants session (pantsd restarted): nothing downloaded, nothing trained

and prints, per run, the wall time, the downloads the store served (bytes, seconds from nginx's
log), the trainings Pants reported, the peak resident memory (VmHWM) of the build process and of
pantsd. The build process is found by its `--dataset-sha256` argument and sampled every 0.1 s
from /proc, so a peak in its last 0.1 s could be missed.

    python3 infra/bench/large_dataset/bench.py [--samples 1000000] [--workdir DIR] [--keep]

Stdlib only (the generator runs through this repo's `./pants run`, for numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra.datastore.testing import SCRIPTS, RunningDatastore  # noqa: E402
from infra.service_testing import started_service  # noqa: E402
from tests.e2e.scratch_repo import TINY_BUILD, ScratchRepo  # noqa: E402

NAME = "bigdigits"
MODEL = f"models/{NAME}_cnn:{NAME}_cnn"
IMAGE = f"models/{NAME}_cnn:image"

MODEL_SOURCE = """\
\"\"\"A small CNN on the 32x32 digit images of the large-data benchmark.\"\"\"

from torch import nn

from models.common.harness import run
from models.common.torch_framework import TorchFramework


def build_model(config, spec):
    params = config.architecture({"conv1_channels": 8, "conv2_channels": 16})
    c1, c2 = params["conv1_channels"], params["conv2_channels"]
    return nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=5, stride=2, padding=2),  # 32x32 -> 16x16
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 8x8
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 4x4
        nn.Flatten(),
        nn.Linear(c2 * 16, spec.num_classes),
    )


if __name__ == "__main__":
    run(TorchFramework(build_model))
"""

# One pass over the training part; validation and test are read into memory, so they stay small.
CONFIG = {
    "seed": 0,
    "epochs": 1,
    "batch_size": 256,
    "learning_rate": 0.003,
    "validation_fraction": 0.01,
    "test_fraction": 0.02,
}

# What loader_memory.py needs to read the training part as the harness does.
LOADER_OPTIONS = ("batch_size", "validation_fraction", "test_fraction")

# The scratch repo's tiny-model BUILD, on this dataset.
BUILD = TINY_BUILD.format(name=f"{NAME}_cnn", threshold=0.9).replace(
    "//models/datasets:digits", f"//models/datasets:{NAME}"
)


class BenchFailure(Exception):
    """A step failed, or did not download or train what the case implies."""


@dataclass
class Run:
    case: str
    seconds: float
    trained: int
    downloads: int
    downloaded_bytes: int
    download_seconds: float
    build_peak_bytes: int  # VmHWM of the build process (python -m ... build), 0 if none ran
    build_anon_bytes: int  # the largest RssAnon sampled (its own memory)
    build_file_bytes: int  # the largest RssFile sampled (mapped files, e.g. the dataset)
    pantsd_peak_bytes: int
    pantsd_anon_bytes: int  # at the end of the run
    pantsd_file_bytes: int  # at the end of the run
    load1: float


def _memory(pid: str, field: str) -> int:
    """A memory figure of process pid from /proc/<pid>/status in bytes (0 once it is gone):
    VmHWM (peak resident), RssAnon (resident now, its own memory), RssFile (resident now, mapped
    files: page-cache pages, e.g. of an LMDB store or shared libraries)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class PeakMemory(threading.Thread):
    """Samples the memory of every process whose command line contains `marker`: the largest
    VmHWM, RssAnon and RssFile seen."""

    FIELDS = ("VmHWM", "RssAnon", "RssFile")

    def __init__(self, marker: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.marker, self.interval = marker.encode(), interval
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if self.marker in cmdline:
                    for field in self.FIELDS:
                        self.peak[field] = max(self.peak[field], _memory(pid, field))
            self._done.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peak


def pantsd_memory(repo: ScratchRepo, field: str) -> int:
    pids = [p.read_text().strip() for p in repo.root.glob(".pids/*/pantsd/pid")]
    return max((_memory(pid, field) for pid in pids), default=0)


def pants_run(script: str, *args: str) -> str:
    """Runs one of this directory's scripts through this repo's Pants (numpy's resolve), beside
    any other Pants run in this repo (PANTS_CONCURRENT); returns the last line it printed."""
    done = subprocess.run(
        ["./pants", "run", f"infra/bench/large_dataset/{script}", "--", *args],
        cwd=REPO,
        env={**os.environ, "PANTS_CONCURRENT": "True"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchFailure(f"{script} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def build_repo(root: Path, stanza: str) -> ScratchRepo:
    repo = ScratchRepo(root, source=REPO)
    repo.write("models/datasets/BUILD", repo.read("models/datasets/BUILD") + "\n" + stanza)
    model = f"models/{NAME}_cnn"
    repo.write(f"{model}/__init__.py", "")
    repo.write(f"{model}/train.py", MODEL_SOURCE)
    repo.write(f"{model}/config.json", json.dumps(CONFIG, indent=2) + "\n")
    repo.write(f"{model}/BUILD", BUILD)
    repo.add_image(f"{NAME}_cnn")
    return repo


def measure(case: str, repo: ScratchRepo, store: RunningDatastore, sha256: str, log) -> Run:
    before = store.transfers(f"{NAME}.npz")
    load1 = os.getloadavg()[0]
    sampler = PeakMemory(sha256)
    sampler.start()
    env = {
        "DATASTORE_NETRC": store.env["DATASTORE_NETRC"],
        "PANTS_CA_CERTS_PATH": store.env["DATASTORE_CA_BUNDLE"],
    }
    try:
        run = repo.pants("package", MODEL, IMAGE, env=env, timeout=3600)
    finally:
        build_peak = sampler.stop()
    if run.returncode != 0:
        raise BenchFailure(f"{case}: ./pants package failed:\n{run.output[-5000:]}")
    new = store.transfers(f"{NAME}.npz")[len(before) :]
    result = Run(
        case=case,
        seconds=round(run.seconds, 2),
        trained=len(run.trained),
        downloads=len(new),
        downloaded_bytes=sum(sent for sent, _ in new),
        download_seconds=round(sum(seconds for _, seconds in new), 2),
        build_peak_bytes=build_peak["VmHWM"],
        build_anon_bytes=build_peak["RssAnon"],
        build_file_bytes=build_peak["RssFile"],
        pantsd_peak_bytes=pantsd_memory(repo, "VmHWM"),
        pantsd_anon_bytes=pantsd_memory(repo, "RssAnon"),
        pantsd_file_bytes=pantsd_memory(repo, "RssFile"),
        load1=round(load1, 2),
    )
    log(f"{case}: {json.dumps(asdict(result))}")
    return result


def check(runs: list[Run]) -> None:
    first, rerun = runs
    if (first.downloads, first.trained) != (1, 1):
        raise BenchFailure(f"first run: expected 1 download and 1 training, got {first}")
    if (rerun.downloads, rerun.trained) != (0, 0):
        raise BenchFailure(f"re-run: expected no download and no training, got {rerun}")


def format_table(runs: list[Run], features_bytes: int) -> str:
    mib = 1 << 20
    lines = [
        "case | wall s | trained | downloads (MiB, s) | build process peak RSS MiB (anon, file) | "
        "pantsd peak RSS MiB (at the end: anon + file) | load1",
    ]
    for r in runs:
        lines.append(
            f"{r.case} | {r.seconds:.1f} | {r.trained} | {r.downloads} "
            f"({r.downloaded_bytes / mib:.0f}, {r.download_seconds:.1f}) | "
            f"{r.build_peak_bytes / mib:.0f} ({r.build_anon_bytes / mib:.0f}, "
            f"{r.build_file_bytes / mib:.0f}) | {r.pantsd_peak_bytes / mib:.0f} "
            f"({r.pantsd_anon_bytes / mib:.0f} + {r.pantsd_file_bytes / mib:.0f}) | {r.load1:.2f}"
        )
    lines.append(
        f"features: {features_bytes / mib:.0f} MiB uint8 in the file; read whole they would be "
        f"{4 * features_bytes / mib:.0f} MiB as float32, {8 * features_bytes / mib:.0f} MiB as float64"
    )
    return "\n".join(lines)


def run(samples: int, seed: int, workdir: Path, keep: bool, log=print) -> list[Run]:
    dataset = workdir / f"{NAME}.npz"
    started = time.perf_counter()
    log(pants_run("generate.py", str(dataset), "--samples", str(samples), "--seed", str(seed)))
    log(f"generated in {time.perf_counter() - started:.1f}s (including ./pants run start-up)")
    settings = {"DATASTORE_DIR": str(workdir / "store")}
    repo = None
    try:
        with started_service(SCRIPTS, settings) as exported:
            store = RunningDatastore(exported["DATASTORE_URL"], exported, workdir / "store")
            stanza = store.upload(dataset)
            sha256 = stanza.split('sha256="')[1].split('"')[0]
            dataset.unlink()  # from here on, only the store has it
            repo = build_repo(workdir / "repo", stanza)
            runs = [measure("first", repo, store, sha256, log)]
            model = json.loads(repo.read(f"dist/models/{NAME}_cnn/model.json"))
            log(
                f"model: trained on {model['training']['train_samples']} images in "
                f"{model['training']['seconds']} s, test accuracy {model['metrics']['accuracy']}"
            )
            repo.stop_pantsd()  # a new Pants session: only the local caches remain
            runs.append(measure("rerun", repo, store, sha256, log))
            check(runs)
            log(format_table(runs, samples * 32 * 32))
            # The loader's own share, without torch: one epoch over the store's copy of the file.
            [stored] = store.data.glob(f"datasets/{sha256}/{NAME}.npz")
            options = [f"--{key.replace('_', '-')}={CONFIG[key]}" for key in LOADER_OPTIONS]
            log(f"loader alone: {pants_run('loader_memory.py', str(stored), *options)}")
            return runs
    finally:
        if repo is not None:
            repo.stop_pantsd()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="images (1 KiB each)")
    parser.add_argument(
        "--seed",
        type=int,
        help="the dataset's seed (default: a new one, so that no cache on this machine holds it)",
    )
    parser.add_argument("--workdir", type=Path, help="where everything goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--out", type=Path, help="also write the runs as JSON here")
    args = parser.parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="mlbench-large-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        seed = args.seed if args.seed is not None else secrets.randbelow(1 << 31)
        print(f"dataset seed {seed}")
        runs = run(args.samples, seed, workdir, args.keep)
    except BenchFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
