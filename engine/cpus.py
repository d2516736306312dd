"""How many CPUs this process may really use, and the one place thread counts come from.

``os.cpu_count()`` counts the machine's CPUs, not the process's: under ``taskset`` (affinity) or in a
container with a CPU quota (cgroup v1 ``cpu.cfs_quota_us`` / v2 ``cpu.max``) it over-counts, and
every pool sized from it oversubscribes the cores (OpenBLAS and OpenMP threads then spin-wait for
each other: 20x slower scans measured on the shared box, ``engine.index.flat``). So scan shards,
BLAS and numba threads and micro-batch sizes are all sized from :func:`threads`:

* an explicit override: :func:`set_threads` (the ``[engine] threads`` setting, ``NASNAME_THREADS``,
  ``--threads`` of the benchmarks), else
* :func:`available_cpus`: the affinity mask, capped by the cgroup CPU quota (rounded up).

Detection reads files under ``/proc`` and ``/sys/fs/cgroup``; tests pass other roots in.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError

__all__ = ["available_cpus", "cgroup_cpu_limit", "numba_threads", "set_threads", "threads"]

_override: int | None = None
_detected: int | None = None
_lock = threading.Lock()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, dict[str, str]]:
    """(v2 path, {v1 controller: path}) of this process, from ``/proc/self/cgroup`` lines
    ``hierarchy-id:controllers:path`` (v2 is the line with id 0 and no controllers)."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v2, v1


def _ancestors(root: Path, rel: str) -> list[Path]:
    """``root/rel`` and each parent up to ``root``. Inside a container the cgroup namespace often
    shows the path as seen from the host while ``root`` is already the container's own cgroup, so
    ``root`` itself is always included."""
    out: list[Path] = []
    parts = [p for p in rel.split("/") if p]
    for i in range(len(parts), 0, -1):
        out.append(root.joinpath(*parts[:i]))
    out.append(root)
    return out


def cgroup_cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup"),
                     proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (e.g. 1.5), the tightest along the cgroup's ancestors;
    None when there is no quota (or no cgroup file system)."""
    v2, v1 = _cgroup_paths(proc_cgroup)
    limits: list[float] = []
    if v2 is not None:
        for d in _ancestors(cgroup_root, v2):
            text = _read(d / "cpu.max")
            if text is None:
                continue
            fields = text.split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    quota, period = int(fields[0]), int(fields[1])
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    path = v1.get("cpu")
    bases = [cgroup_root / name for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
    base = next((b for b in bases if b.is_dir()), None)
    if path is not None and base is not None:
        for d in _ancestors(base, path):
            try:
                quota = int(_read(d / "cpu.cfs_quota_us") or "-1")
                period = int(_read(d / "cpu.cfs_period_us") or "0")
            except ValueError:
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def available_cpus(affinity: set[int] | None = None, *, cgroup_root: Path = Path("/sys/fs/cgroup"),
                   proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process can use: the affinity mask (``os.sched_getaffinity``), capped by the cgroup
    CPU quota rounded up; at least 1. ``affinity`` and the paths are for tests."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not Linux
            affinity = set(range(os.cpu_count() or 1))
    n = max(1, len(affinity))
    limit = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if limit is not None:
        n = min(n, max(1, math.ceil(limit - 1e-9)))
    return n


def set_threads(n: int | None) -> None:
    """Override the detected count for the whole process (``None`` or 0: detect again). Pools that
    already exist keep their size: set it before opening indexes."""
    global _override
    if n is not None and n < 0:
        raise ConfigurationError(f"threads must be >= 0 (0 = detect), got {n}")
    with _lock:
        _override = n or None


def threads() -> int:
    """Threads to size CPU-bound pools with: the override, ``NASNAME_THREADS``, else the detected
    :func:`available_cpus` (cached)."""
    global _detected
    with _lock:
        if _override is not None:
            return _override
        env = os.environ.get("NASNAME_THREADS", "").strip()
        if env and env != "0":
            try:
                value = int(env)
            except ValueError:
                raise ConfigurationError(f"NASNAME_THREADS must be an integer, got {env!r}") from None
            if value < 0:
                raise ConfigurationError(f"NASNAME_THREADS must be >= 0, got {value}")
            return value
        if _detected is None:
            _detected = available_cpus()
        return _detected


def numba_threads() -> int:
    """Threads for numba's parallel kernels: :func:`threads`, within the pool numba started with
    (``NUMBA_NUM_THREADS``, which numba sizes from the machine). numba's count is per calling thread,
    so kernels call ``numba.set_num_threads(numba_threads())`` before each parallel region."""
    import numba

    config: Any = numba.config  # attributes set at run time from the environment
    return max(1, min(threads(), int(config.NUMBA_NUM_THREADS)))
