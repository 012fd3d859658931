"""The torch harness: its Adam equals torch.optim.Adam bit for bit, its training never imports the
compiler stack, and `build` writes the three steps' outputs from one interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from models.common.harness import run
from models.common.torch_framework import Adam, TorchFramework

DATASET = "models/datasets/digits.npz"
DIGITS_SHA256 = "aa0266383e99f4be23c4d287fdf1932181874f48822e18c35fc52675ae0ac154"


def _python(*args: str) -> str:
    """Runs this interpreter, with this test's import path, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, env=env
    ).stdout


def build_model(config, spec):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, spec.num_classes),
    )


def _train_steps(make_optimizer, steps: int = 25) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    optimizer = make_optimizer(model.parameters())
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 1, 8, 8, generator=data)
        y = torch.randint(0, 10, (16,), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_adam_is_bit_identical_to_torch_optim_adam() -> None:
    ours = _train_steps(lambda params: Adam(params, lr=0.003))
    theirs = _train_steps(lambda params: torch.optim.Adam(params, lr=0.003))
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine, reference)


def test_adam_skips_parameters_without_gradients() -> None:
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = Adam([used, unused], lr=0.1)
    (used * torch.tensor([1.0, -1.0])).sum().backward()
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2))
    assert not torch.equal(used.detach(), torch.ones(2))
    assert optimizer.steps == [1, 0]


def test_seeding_makes_torch_deterministic_without_importing_the_compiler() -> None:
    # A fresh interpreter: this test process may have imported torch._dynamo already.
    script = (
        "import sys, torch\n"
        "from models.common.torch_framework import TorchFramework\n"
        "TorchFramework(None).seed(0)\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'torch._inductor'))))\n"
    )
    assert _python("-c", script).strip() == "[]"


def test_seeding_falls_back_to_the_public_call_on_a_torch_without_the_private_setter() -> None:
    # (The public call itself uses the private setter, so it is recorded here, not run.)
    script = (
        "import torch\n"
        "del torch._C._set_deterministic_algorithms\n"
        "calls = []\n"
        "torch.use_deterministic_algorithms = lambda mode, **kwargs: calls.append(mode)\n"
        "from models.common.torch_framework import TorchFramework\n"
        "TorchFramework(None).seed(0)\n"
        "print(calls)\n"
    )
    assert _python("-c", script).strip() == "[True]"


def test_build_trains_evaluates_and_exports_into_one_output(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "epochs": 1, "batch_size": 64, "learning_rate": 0.01}))
    out = tmp_path / "model"
    argv = ["build", "--config", str(config), "--dataset", DATASET]
    run(TorchFramework(build_model), [*argv, "--dataset-sha256", DIGITS_SHA256, "--out", str(out)])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "evaluate/metrics.json",
        "export/export.json",
        "export/model.onnx",
        "train/checkpoint.pt",
        "train/training.json",
    ]
    metrics = json.loads((out / "evaluate/metrics.json").read_text())
    export = json.loads((out / "export/export.json").read_text())
    assert metrics["samples"] == export["verified_samples"] > 0
    assert export["max_abs_diff"] <= export["tolerance"]

    # The same checkpoint evaluated and exported in their own interpreters: the same bytes.
    alone = tmp_path / "alone"
    for step in ("evaluate", "export"):
        _python(
            "-c",
            "import sys; from models.common.torch_framework_test import main; main(sys.argv[1:])",
            *(step, "--config", str(config), "--dataset", DATASET),
            *("--checkpoint", str(out / "train"), "--out", str(alone / step)),
        )
    for path in ("evaluate/metrics.json", "export/export.json", "export/model.onnx"):
        assert (alone / path).read_bytes() == (out / path).read_bytes(), path


def test_the_command_line_build_ends_without_the_interpreters_teardown(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "epochs": 1, "batch_size": 64, "learning_rate": 0.01}))
    out = tmp_path / "model"
    script = (
        "import atexit\n"
        "atexit.register(lambda: print('interpreter teardown'))\n"
        "from models.common.torch_framework_test import build_model\n"
        "from models.common.harness import run\n"
        "from models.common.torch_framework import TorchFramework\n"
        "run(TorchFramework(build_model))\n"
    )
    argv = ["build", "--config", str(config), "--dataset", DATASET, "--out", str(out)]
    printed = _python("-c", script, *argv, "--dataset-sha256", DIGITS_SHA256)
    # Its output, written to a pipe (block-buffered), all flushed; no teardown after it.
    assert [line.split(" ")[0] for line in printed.splitlines()] == ["trained", "test", "exported;"]
    assert (out / "export/model.onnx").stat().st_size > 0
    assert json.loads((out / "evaluate/metrics.json").read_text())["samples"] > 0


def test_a_failed_build_leaves_no_output(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 0, "epochs": 1, "batch_size": 64, "learning_rate": 0.01}))
    out = tmp_path / "model"
    argv = ["build", "--config", str(config), "--dataset", DATASET, "--out", str(out)]
    try:
        run(TorchFramework(build_model), [*argv, "--dataset-sha256", "0" * 64])
    except SystemExit as e:
        assert "sha256" in str(e)
    else:
        raise AssertionError("a dataset with the wrong sha256 was accepted")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def main(argv: list[str]) -> None:
    run(TorchFramework(build_model), argv)
