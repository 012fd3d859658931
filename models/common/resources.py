"""What a model's training needs from the machine, checked before it trains.

The Train step gets the model's `resources` field as `ML_MODEL_RESOURCES` (JSON, set by the
plugin, part of the step's cache key). The runner declares nothing itself: the check reads the
machine it runs on, because a declaration could be wrong while the hardware cannot, and because
anything a runner passed in would enter the cache key and split the cache by runner. GPUs are the
NVIDIA device nodes `/dev/nvidia<N>` (what CUDA can use, also inside a container); memory is the
smaller of the physical memory and the cgroup's limit. A machine that falls short refuses to
train, rather than training a GPU model on CPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RESOURCES_ENV = "ML_MODEL_RESOURCES"
GIB = 1024**3


class MissingResources(SystemExit):
    """This machine lacks what the model declares (exits the step with the message)."""


@dataclass(frozen=True)
class MachineResources:
    gpu: int
    memory_gb: float


def machine_resources(
    dev: Path = Path("/dev"),
    meminfo: Path = Path("/proc/meminfo"),
    cgroup_limit: Path = Path("/sys/fs/cgroup/memory.max"),
) -> MachineResources:
    gpus = sum(1 for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name))
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.M)
    memory = int(match[1]) * 1024 if match else 0
    try:
        limit = cgroup_limit.read_text().strip()
    except OSError:
        limit = "max"
    if limit.isdigit():
        memory = min(memory, int(limit))
    return MachineResources(gpus, memory / GIB)


def shortfalls(needs: Mapping[str, int], have: MachineResources) -> list[str]:
    """What `have` lacks of `needs`, one line each (empty: enough)."""
    lines = []
    if needs.get("gpu", 0) > have.gpu:
        lines.append(f"gpu: needs {needs['gpu']}, this machine has {have.gpu} (/dev/nvidia<N>)")
    if needs.get("memory_gb", 0) > have.memory_gb:
        lines.append(
            f"memory_gb: needs {needs['memory_gb']}, this machine has {have.memory_gb:.1f} "
            "(physical memory or cgroup limit)"
        )
    return lines


def require_resources(environ: Mapping[str, str], have: MachineResources | None = None) -> None:
    """Refuses (MissingResources) to go on when the machine lacks the model's resources."""
    declared = environ.get(RESOURCES_ENV)
    if not declared:
        return
    needs = json.loads(declared)
    missing = shortfalls(needs, have or machine_resources())
    if missing:
        raise MissingResources(
            f"Refusing to train: the model's `resources` field asks for {declared}, and this "
            "machine lacks:\n  - "
            + "\n  - ".join(missing)
            + "\nIt is not trained on what is here instead (a GPU model on CPU, say). Train it on "
            "a runner of a class that offers this (infra/ci/runner-classes.json; "
            "infra/ci/shard-plan sends it there), or take its result from the team's cache."
        )
