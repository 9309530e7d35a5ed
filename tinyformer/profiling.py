"""Measuring speed and memory on CPU, for the benchmarks and the "Making it fast" chapter."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["time_call", "peak_memory_mib", "machine_info"]


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def peak_memory_mib(fn: Callable[[], object], warmup: bool = True) -> float:
    """Extra resident memory (MiB) at the peak of ``fn()``, above what was resident before.

    Linux only: resets the process's high-water mark through /proc/self/clear_refs and reads
    VmHWM afterwards. CPU tensors large enough to matter are mmap-ed and returned to the OS on
    free, so the high-water mark sees each allocation. A warm-up call first keeps one-off
    allocations (thread pools, kernels) out of the number.
    """
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("peak_memory_mib needs Linux (/proc/self/clear_refs)")
    if warmup:
        fn()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_bytes("VmRSS")
    fn()
    return max(0, _status_bytes("VmHWM") - before) / 2**20


def machine_info() -> dict:
    """What a timing depends on: processor, threads, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
