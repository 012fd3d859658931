"""The committed lockfiles lock CPU builds only and hold no machine's paths."""

import json
import re
from pathlib import Path

import pytest

LOCKS = sorted(Path("3rdparty/python").glob("*.lock"))


def _locked_projects(lock: Path) -> dict[str, str]:
    body = "\n".join(line for line in lock.read_text().splitlines() if not line.startswith("//"))
    data = json.loads(body)
    return {
        req["project_name"]: req["version"]
        for resolve in data["locked_resolves"]
        for req in resolve["locked_requirements"]
    }


def test_all_resolves_are_locked():
    assert {lock.stem for lock in LOCKS} == {
        "default",
        "torch",
        "tensorflow",
        "pants-plugins",
        "ruff",
    }


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_no_gpu_package_is_locked(lock: Path):
    gpu = [p for p in _locked_projects(lock) if re.match(r"(nvidia|cuda|triton)", p)]
    assert gpu == []


def test_torch_is_the_cpu_wheel_from_the_find_links_directory():
    assert _locked_projects(Path("3rdparty/python/torch.lock"))["torch"] == "2.13.0+cpu"
    text = Path("3rdparty/python/torch.lock").read_text()
    assert "file://${WHEELS_DIR}/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl" in text


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_no_absolute_machine_path(lock: Path):
    assert re.findall(r"file:///|/(?:root|home|opt|tmp|Users)/", lock.read_text()) == []
