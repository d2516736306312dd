"""CPU detection (engine.cpus): affinity and cgroup v1/v2 quotas read from fake files passed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import cpus
from engine.errors import ConfigurationError
from engine.index.face import FaceIndexOptions


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NASNAME_THREADS", raising=False)
    cpus.set_threads(None)
    yield
    cpus.set_threads(None)


def _v2(tmp: Path, cpu_max: str | None, rel: str = "user.slice/job") -> tuple[Path, Path]:
    root = tmp / "cgroup"
    (root / rel).mkdir(parents=True)
    if cpu_max is not None:
        (root / rel / "cpu.max").write_text(cpu_max + "\n")
    proc = tmp / "proc_cgroup"
    proc.write_text(f"0::/{rel}\n")
    return root, proc


def _v1(tmp: Path, quota: int, period: int, controller: str = "cpu,cpuacct") -> tuple[Path, Path]:
    root = tmp / "cgroup"
    d = root / controller / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (d / "cpu.cfs_period_us").write_text(f"{period}\n")
    proc = tmp / "proc_cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n")
    return root, proc


def test_affinity_alone_without_cgroup_files(tmp_path: Path) -> None:
    assert cpus.cgroup_cpu_limit(tmp_path / "none", tmp_path / "none") is None
    assert cpus.available_cpus({0, 1, 2}, cgroup_root=tmp_path / "none", proc_cgroup=tmp_path / "none") == 3


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("150000 100000", 2),   # 1.5 CPUs: rounded up
    ("100000 100000", 1),
    ("50000 100000", 1),    # below one CPU: still one thread
    ("800000 100000", 4),   # quota above the affinity: affinity wins
    ("max 100000", 4),      # no quota
])
def test_cgroup_v2_quota_caps_the_affinity(tmp_path: Path, cpu_max: str, expected: int) -> None:
    root, proc = _v2(tmp_path, cpu_max)
    assert cpus.available_cpus({0, 1, 2, 3}, cgroup_root=root, proc_cgroup=proc) == expected


def test_cgroup_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, "400000 100000", rel="a/b")
    (root / "a" / "cpu.max").write_text("200000 100000\n")
    assert cpus.cgroup_cpu_limit(root, proc) == pytest.approx(2.0)


def test_cgroup_v2_namespaced_path_falls_back_to_root(tmp_path: Path) -> None:
    # In a container /proc/self/cgroup may show a host path absent below the container's root.
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("300000 100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/kubepods/pod1/c1\n")
    assert cpus.cgroup_cpu_limit(root, proc) == pytest.approx(3.0)


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root, proc = _v1(tmp_path, 250000, 100000)
    assert cpus.cgroup_cpu_limit(root, proc) == pytest.approx(2.5)
    assert cpus.available_cpus(set(range(16)), cgroup_root=root, proc_cgroup=proc) == 3


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    root, proc = _v1(tmp_path, -1, 100000, controller="cpu")
    assert cpus.cgroup_cpu_limit(root, proc) is None


def test_garbage_files_are_ignored(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, "lots 100000")
    assert cpus.cgroup_cpu_limit(root, proc) is None


def test_override_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    detected = cpus.threads()
    assert detected >= 1
    monkeypatch.setenv("NASNAME_THREADS", "5")
    assert cpus.threads() == 5
    cpus.set_threads(3)  # explicit setting beats the environment
    assert cpus.threads() == 3
    cpus.set_threads(0)
    monkeypatch.setenv("NASNAME_THREADS", "0")
    assert cpus.threads() == detected
    monkeypatch.setenv("NASNAME_THREADS", "many")
    with pytest.raises(ConfigurationError):
        cpus.threads()
    with pytest.raises(ConfigurationError):
        cpus.set_threads(-1)


def test_index_pools_are_sized_from_the_override() -> None:
    cpus.set_threads(6)
    o = FaceIndexOptions()
    assert (o.exact_shards, o.shards, o.batch_max) == (6, 6, 192)
    cpus.set_threads(1)
    o = FaceIndexOptions()
    assert (o.exact_shards, o.shards, o.batch_max) == (1, 1, 32)
    # machine-dependent sizes are not written into snapshots
    assert not {"exact_shards", "shards", "batch_max"} & set(o.to_json())
