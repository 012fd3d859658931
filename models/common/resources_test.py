from pathlib import Path

import pytest

from models.common.resources import (
    RESOURCES_ENV,
    MachineResources,
    MissingResources,
    machine_resources,
    require_resources,
    shortfalls,
)


def _machine(tmp_path: Path, gpus: int, mem_kb: int, limit: str | None) -> MachineResources:
    dev = tmp_path / "dev"
    dev.mkdir(parents=True)
    for i in range(gpus):
        (dev / f"nvidia{i}").touch()
    (dev / "nvidiactl").touch()  # a control node, not a GPU
    (dev / "nvidia-uvm").touch()
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        1 kB\n")
    cgroup = tmp_path / "memory.max"
    if limit is not None:
        cgroup.write_text(limit + "\n")
    return machine_resources(dev, meminfo, cgroup)


def test_the_machine_is_read_from_device_nodes_memory_and_cgroup_limit(tmp_path: Path) -> None:
    assert _machine(tmp_path / "a", 2, 32 * 1024 * 1024, "max") == MachineResources(2, 32.0)
    assert _machine(tmp_path / "b", 0, 32 * 1024 * 1024, str(8 * 1024**3)) == MachineResources(
        0, 8.0
    )
    assert _machine(tmp_path / "c", 1, 4 * 1024 * 1024, None) == MachineResources(1, 4.0)


def test_this_machine_is_read_without_error() -> None:
    here = machine_resources()
    assert here.gpu >= 0 and here.memory_gb > 0


def test_shortfalls_name_each_missing_resource() -> None:
    have = MachineResources(gpu=0, memory_gb=15.6)
    assert shortfalls({"gpu": 1, "memory_gb": 16}, have) == [
        "gpu: needs 1, this machine has 0 (/dev/nvidia<N>)",
        "memory_gb: needs 16, this machine has 15.6 (physical memory or cgroup limit)",
    ]
    assert shortfalls({"memory_gb": 15}, have) == []
    assert shortfalls({}, have) == []


def test_a_machine_without_the_resource_refuses_to_train() -> None:
    environ = {RESOURCES_ENV: '{"gpu": 1}'}
    with pytest.raises(MissingResources) as e:
        require_resources(environ, MachineResources(gpu=0, memory_gb=64))
    assert "Refusing to train" in str(e.value.code)
    assert "gpu: needs 1, this machine has 0" in str(e.value.code)
    assert e.value.code != 0  # SystemExit with a message: the step fails
    require_resources(environ, MachineResources(gpu=1, memory_gb=64))
    require_resources({}, MachineResources(gpu=0, memory_gb=1))  # nothing declared
