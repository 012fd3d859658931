from __future__ import annotations

from pathlib import Path

import pytest

from serving.cpu_limit import CgroupError, cgroup_cpu_limit, default_workers


def fake_v2(root: Path, cpu_max: dict[str, str], proc_path: str = "/") -> Path:
    """A cgroup v2 tree: `cpu_max` maps cgroup directories (relative to the mount) to cpu.max."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(f"0::{proc_path}\n")
    mount = root / "sys/fs/cgroup"
    mount.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for directory, value in cpu_max.items():
        (mount / directory).mkdir(parents=True, exist_ok=True)
        (mount / directory / "cpu.max").write_text(value + "\n")
    return root


def fake_v1(root: Path, quota: str, period: str = "100000", proc_path: str = "/") -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(
        f"12:memory:{proc_path}\n4:cpu,cpuacct:{proc_path}\n0::/\n"
    )
    directory = root / "sys/fs/cgroup/cpu,cpuacct" / proc_path.lstrip("/")
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (directory / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize(
    "cpu_max, limit, workers",
    [("200000 100000", 2.0, 2), ("150000 100000", 1.5, 1), ("50000 100000", 0.5, 1)],
)
def test_v2_quota(tmp_path, cpu_max, limit, workers):
    root = fake_v2(tmp_path, {".": cpu_max})
    assert cgroup_cpu_limit(root) == limit
    assert default_workers(root, cpus=16) == workers


def test_v2_unlimited_falls_back_to_the_cpus(tmp_path):
    root = fake_v2(tmp_path, {".": "max 100000"})
    assert cgroup_cpu_limit(root) is None
    assert default_workers(root, cpus=6) == 6


def test_v2_limit_never_exceeds_the_cpus_we_may_run_on(tmp_path):
    root = fake_v2(tmp_path, {".": "800000 100000"})
    assert default_workers(root, cpus=2) == 2


def test_v2_the_tightest_level_wins(tmp_path):
    # The pod's cgroup limits 3 cores, the container's below it none: the pod's binds.
    root = fake_v2(
        tmp_path,
        {"kubepods/pod1": "300000 100000", "kubepods/pod1/ctr": "max 100000"},
        proc_path="/kubepods/pod1/ctr",
    )
    assert cgroup_cpu_limit(root) == 3.0


def test_v2_host_path_missing_under_the_mount_reads_the_mount(tmp_path):
    # A container with its own cgroup namespace mount but the host's path in /proc/self/cgroup.
    root = fake_v2(tmp_path, {".": "400000 100000"}, proc_path="/docker/abc")
    assert cgroup_cpu_limit(root) == 4.0


def test_v1_quota_and_unlimited(tmp_path):
    assert cgroup_cpu_limit(fake_v1(tmp_path / "a", "250000")) == 2.5
    assert default_workers(fake_v1(tmp_path / "b", "250000"), cpus=8) == 2
    assert cgroup_cpu_limit(fake_v1(tmp_path / "c", "-1")) is None
    assert cgroup_cpu_limit(fake_v1(tmp_path / "d", "100000", proc_path="/kubepods/x")) == 1.0


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    assert default_workers(tmp_path, cpus=3) == 3


@pytest.mark.parametrize("bad", ["lots 100000", "100000", "100000 0"])
def test_malformed_v2_file_is_an_error_naming_it(tmp_path, bad):
    root = fake_v2(tmp_path, {".": bad})
    with pytest.raises(CgroupError, match=r"sys/fs/cgroup/cpu\.max: expected"):
        cgroup_cpu_limit(root)


def test_malformed_v1_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(CgroupError, match=r"cpu\.cfs_quota_us: expected an integer"):
        cgroup_cpu_limit(fake_v1(tmp_path, "many"))


def test_this_machine_gives_at_least_one_worker():
    assert default_workers() >= 1
