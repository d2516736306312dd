"""What the numbers were measured on: CPU model, cores, memory, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from engine.cpus import available_cpus, threads

__all__ = ["machine_info", "rss_bytes"]

PACKAGES = ("nasname", "numpy", "faiss-cpu", "hnswlib", "onnxruntime", "numba", "opencv-python-headless")


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def _mem_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Resident set size of this process now (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def machine_info() -> dict[str, Any]:
    cpu = _lscpu()
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu_model": cpu.get("Model name") or platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "cpus_available": available_cpus(),  # affinity and cgroup quota: what the scans are sized by
        "threads": threads(),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "memory_bytes": _mem_total_bytes(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average_at_start": [round(x, 2) for x in load],
    }
