"""what-will-rebuild, end to end: a scratch git repository with this repo's Pants set-up and plugin,
two tiny models sharing a library, and real Pants runs (three of them, ~15 s each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.ci.git_testing import git
from infra.ci.what_will_rebuild import RangeError, resolve_base, select

BUILDROOT = Path.cwd()
SCRIPT = BUILDROOT / "infra/ci/what-will-rebuild"
MODEL_BUILD = """\
python_source(name="train", source="train.py", resolve="torch")

ml_model(
    name="model",
    framework="torch",
    entry_point="train.py",
    config="config.json",
    dataset="//data:ds",
    thresholds={"accuracy": 0.5},
    dependencies=[":train", "//data:ds"],
)

model_image(name="image", model=":model", server="//server:srv", base="//base:debs")
"""


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("scratch")
    for name in ("pants", "pants.toml", "ruff.toml"):
        shutil.copy2(BUILDROOT / name, repo / name)
    shutil.copytree(BUILDROOT / "3rdparty", repo / "3rdparty")
    shutil.copytree(
        BUILDROOT / "pants-plugins",
        repo / "pants-plugins",
        ignore=shutil.ignore_patterns("*_test.py", "BUILD", "__pycache__"),
    )
    files = {
        ".gitignore": "/.pants.d/\n/dist/\n",
        "data/BUILD": f'ml_dataset(name="ds", source="ds.npz", sha256="{"0" * 64}")\n',
        "data/ds.npz": "",
        # The plugin wants a model's code in its framework's resolve.
        "shared/BUILD": 'python_sources(resolve="torch")\n',
        "shared/lib.py": "def scale(x):\n    return x * 2\n",
        "base/BUILD": 'debian_packages(name="debs", source="pins.json")\n',
        "base/pins.json": '{"packages": []}\n',
        "server/BUILD": 'python_sources()\n\npex_binary(name="srv", entry_point="main.py")\n',
        "server/main.py": "print('serving')\n",
    }
    for model in ("alpha", "beta"):
        files[f"models/{model}/BUILD"] = MODEL_BUILD
        files[f"models/{model}/config.json"] = '{"seed": 0, "epochs": 1}\n'
        files[f"models/{model}/train.py"] = "from shared.lib import scale\n\nprint(scale(1))\n"
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "initial")
    return repo


def what_will_rebuild(repo: Path, ref_range: str) -> dict:
    env = {**os.environ, "PANTS_PANTSD": "false"}
    result = subprocess.run(
        [str(SCRIPT), "--json", "--repo", str(repo), ref_range],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_editing_one_models_config_lists_that_model_only(scratch: Path) -> None:
    (scratch / "models/alpha/config.json").write_text('{"seed": 1, "epochs": 1}\n')
    commit_all(scratch, "alpha: new seed")
    out = what_will_rebuild(scratch, "HEAD~1..HEAD")
    assert out["models"] == ["models/alpha:model"]
    assert out["images"] == ["models/alpha:image"]
    assert out["base"] == git(scratch, "rev-parse", "HEAD~1")
    assert out["dirty"] is False


def test_editing_the_shared_library_lists_its_dependents(scratch: Path) -> None:
    (scratch / "shared/lib.py").write_text("def scale(x):\n    return x * 3\n")
    commit_all(scratch, "shared: triple")
    out = what_will_rebuild(scratch, "HEAD~1")
    assert out["models"] == ["models/alpha:model", "models/beta:model"]
    assert out["images"] == ["models/alpha:image", "models/beta:image"]


def test_editing_the_server_lists_every_image_and_no_model(scratch: Path) -> None:
    (scratch / "server/main.py").write_text("print('serving v2')\n")
    commit_all(scratch, "server: v2")
    out = what_will_rebuild(scratch, "HEAD~1")
    assert out == {**out, "models": [], "images": ["models/alpha:image", "models/beta:image"]}


def test_symmetric_range_uses_the_merge_base(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f").write_text("1")
    commit_all(tmp_path, "one")
    fork = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "checkout", "-q", "-b", "feature")
    (tmp_path / "f").write_text("2")
    commit_all(tmp_path, "feature work")
    git(tmp_path, "checkout", "-q", "main")
    (tmp_path / "g").write_text("3")
    commit_all(tmp_path, "main moves on")
    git(tmp_path, "checkout", "-q", "feature")

    assert resolve_base(tmp_path, "main...HEAD") == fork
    assert resolve_base(tmp_path, "main..HEAD") == git(tmp_path, "rev-parse", "main")
    assert resolve_base(tmp_path, "main") == git(tmp_path, "rev-parse", "main")
    with pytest.raises(RangeError, match="must end at the checked-out HEAD"):
        resolve_base(tmp_path, "HEAD~1..main")
    with pytest.raises(RangeError, match="unknown revision"):
        resolve_base(tmp_path, "no-such-branch...HEAD")


def test_select_keeps_models_and_images_sorted() -> None:
    peeked = [
        {"address": "models/b:model", "target_type": "ml_model"},
        {"address": "shared/lib.py", "target_type": "python_source"},
        {"address": "models/a:model", "target_type": "ml_model"},
        {"address": "models/a:image", "target_type": "model_image"},
    ]
    assert select(peeked) == (("models/a:model", "models/b:model"), ("models/a:image",))
