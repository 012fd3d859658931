"""How many server processes fit the CPUs this container may use: its cgroup CPU limit (what a
Kubernetes `limits.cpu` becomes), not the host's core count, which `os.cpu_count()` reports even
in a one-core pod on a 64-core node.

cgroup v2: `cpu.max` holds `<quota> <period>` (or `max <period>`: no limit). cgroup v1:
`cpu.cfs_quota_us` (-1: no limit) and `cpu.cfs_period_us`. Every level from the process's cgroup
up to the mount point is read and the smallest limit wins (a parent's limit binds its children).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


class CgroupError(Exception):
    """A cgroup file that cannot be read as a CPU limit; the message names the file."""


def _v2_limit(directory: Path) -> float | None:
    path = directory / "cpu.max"
    if not path.is_file():
        return None
    text = path.read_text().split()
    try:
        if len(text) != 2:
            raise ValueError
        quota, period = text
        if quota == "max":
            return None
        cores = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        raise CgroupError(
            f"{path}: expected '<quota> <period>' or 'max <period>', got {' '.join(text)!r}"
        ) from None
    return cores


def _v1_limit(directory: Path) -> float | None:
    quota_path, period_path = directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"
    if not quota_path.is_file():
        return None
    try:
        quota = int(quota_path.read_text())
    except ValueError:
        raise CgroupError(
            f"{quota_path}: expected an integer, got {quota_path.read_text()!r}"
        ) from None
    if quota < 0:
        return None
    try:
        return quota / int(period_path.read_text())
    except (OSError, ValueError, ZeroDivisionError):
        raise CgroupError(
            f"{period_path}: expected a positive integer next to {quota_path}"
        ) from None


def _levels(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory and its parents up to the mount point. Inside a container
    the mount is often the process's own cgroup while /proc/self/cgroup still shows the host's
    path, so a path that does not exist under the mount falls back to the mount itself."""
    here = mount / cgroup_path.lstrip("/")
    if not here.is_dir():
        return [mount]
    levels = [here]
    while levels[-1] != mount and mount in levels[-1].parents:
        levels.append(levels[-1].parent)
    return levels


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The CPU limit in cores (e.g. 1.5) of this process's cgroup, or None if there is none.
    `root` is "/" except in tests, which build fake /proc and /sys/fs/cgroup trees."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None  # not Linux, or no cgroups
    limits: list[float] = []
    cgroup_root = root / "sys/fs/cgroup"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (cgroup_root / "cgroup.controllers").is_file():  # v2
            limits += [lim for d in _levels(cgroup_root, path) if (lim := _v2_limit(d))]
        elif "cpu" in controllers.split(","):  # v1
            for name in (controllers, "cpu", "cpu,cpuacct"):
                if (cgroup_root / name).is_dir():
                    mount = cgroup_root / name
                    limits += [lim for d in _levels(mount, path) if (lim := _v1_limit(d))]
                    break
    return min(limits) if limits else None


def default_workers(root: Path = Path("/"), cpus: int | None = None) -> int:
    """One worker per whole CPU the process may use: the cgroup limit rounded down (workers
    busier than the quota are throttled by the kernel for the rest of each period, which hurts
    tail latency more than an idle fraction of a core costs), at least 1, and no more than the
    CPUs it may run on (its affinity mask: cpusets)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return max(1, cpus or 1)
    return max(1, min(cpus or 1, math.floor(limit + 1e-9)))
