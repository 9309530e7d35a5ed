"""Measuring speed and memory on CPU, for the benchmarks and the "Making it fast" chapter."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from ..attention import causal_mask, scaled_dot_product_attention
from ..model import TransformerLM
from ..losses import lm_loss
from ..optim import clip_gradients, make_optimizer

__all__ = [
    "time_call",
    "pin_mmap_threshold",
    "peak_memory_mib",
    "run_isolated",
    "attention_peak_memory",
    "machine_info",
    "op_family",
    "profile_training_step",
    "native_stderr_filtered",
]


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


_M_MMAP_THRESHOLD = -3


def pin_mmap_threshold() -> None:
    """Pin glibc's mmap threshold at 128 KiB, for memory measurements.

    By default the threshold rises after large frees; big blocks then come from the heap
    and stay resident once freed, so later peaks hide in memory that is already resident.
    Pinned, every tensor above 128 KiB is mmap-ed and returned on free. Call it before the
    process allocates anything large (see run_isolated); it slows allocation-heavy code, so
    time things in a process where it was never called.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: measurements may undercount reused memory


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def peak_memory_mib(fn: Callable[[], object], warmup: bool = True) -> float:
    """Extra resident memory (MiB) at the peak of ``fn()``, above what was resident before.

    Linux only: resets the process's high-water mark through /proc/self/clear_refs and reads
    VmHWM afterwards. Accurate in a process that called :func:`pin_mmap_threshold` before its
    first large allocation (run_isolated does both): then tensors above 128 KiB are mmap-ed and
    returned on free, and the high-water mark sees each one. A warm-up call first keeps one-off
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


def _pinned_call(func, args):
    pin_mmap_threshold()
    return func(*args)


def run_isolated(func, *args):
    """``func(*args)`` in a fresh (spawned) Python process with the mmap threshold pinned,
    for memory measurements that earlier work in this process cannot distort. ``func`` must
    be importable (defined in a module, not in a notebook cell)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_pinned_call, (func, args))


def attention_peak_memory(lengths, batch: int, heads: int, d_head: int) -> tuple[list[float], list[float]]:
    """Extra peak MiB of one causal attention call, written out vs fused, for each length.
    Meant for run_isolated."""
    naive, fused = [], []
    for T in lengths:
        q, k, v = (torch.randn(batch, heads, T, d_head) for _ in range(3))
        mask = causal_mask(T)
        naive.append(peak_memory_mib(lambda: scaled_dot_product_attention(q, k, v, mask)))
        fused.append(peak_memory_mib(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    return naive, fused


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


# op family -> substrings of aten op names, checked in this order (the first match wins), for
# profile_training_step. Our from-scratch pieces run as many small element-wise ops, so they land
# in "element-wise & reductions"; PyTorch's fused kernels have families of their own.
_OP_FAMILIES = {
    "optimizer (multi-tensor)": ("_foreach",),
    "loss kernels": ("cross_entropy", "log_softmax", "nll_loss"),
    "fused attention": ("scaled_dot_product", "flash_attention", "efficient_attention"),
    "softmax": ("softmax",),
    "norm kernels": ("layer_norm", "rms_norm"),
    "activation kernels": ("gelu", "silu", "relu", "threshold_backward"),
    "matmul": ("mm", "matmul", "linear"),
    "embedding": ("embedding", "index_select", "index_add"),
}


def op_family(name: str) -> str:
    """The family of one profiler event name (``aten::addmm`` -> ``"matmul"``); aten ops that
    belong to none of the named kernels are ``"element-wise & reductions"``."""
    op = name.split("::", 1)[-1]
    for family, parts in _OP_FAMILIES.items():
        if any(part in op for part in parts):
            return family
    if name.startswith("aten::"):
        return "element-wise & reductions"
    return "other"


# Status lines that PyTorch's profiler (Kineto) writes from C++ straight to file descriptor 2 when
# it starts and stops, e.g. "USDT:2026-12-04 14:19:38 4236:4236 SyncActivityProfilerHandler.cpp:52]
# profiler_start". Whether they appear depends on the build and the machine, and the strict book
# build fails on any stderr, so they are dropped; every other line written there is kept.
PROFILER_NOISE = re.compile(r"^USDT:.*\bprofiler_(start|stop)\s*$|^STAGE:.*ActivityProfilerController")


@contextmanager
def native_stderr_filtered(noise: re.Pattern = PROFILER_NOISE) -> Iterator[None]:
    """Capture what C/C++ code writes to file descriptor 2 inside the block, then write every
    line that does not match ``noise`` to ``sys.stderr``.

    Python's own warnings go through ``sys.stderr`` and are untouched; only the descriptor is
    redirected, so a real message from native code still reaches the reader, after the block.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not noise.search(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def profile_training_step(config, batch_size: int = 12, steps: int = 3, impl: str | None = None,
                          weight_decay: float = 0.1, seed: int = 0) -> dict:
    """Where one training step's milliseconds go, measured with ``torch.profiler`` on CPU.

    Builds ``TransformerLM(config)`` and trains it on random tokens with the training pieces
    of ``impl`` (default: ``config.impl``): loss, backward, clipping, AdamW. After one warm-up
    step it profiles ``steps`` steps and returns milliseconds per step:

        {"total": ..., "by_phase": {"forward", "loss", "backward", "clip", "optimizer"},
         "by_op_family": {"matmul", "fused attention", "softmax", ..., "element-wise & reductions"}}

    ``by_op_family`` sums each aten op's *self* time, so the families add up to the time spent
    in aten ops (Python overhead between ops is the rest of ``total``).
    """
    impl = impl or config.impl
    torch.manual_seed(seed)
    model = TransformerLM(config)
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=weight_decay, impl=impl)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, config.vocab_size, (batch_size, config.context_length), generator=g)
    y = torch.randint(0, config.vocab_size, (batch_size, config.context_length), generator=g)

    def step():
        with record_function("phase::forward"):
            logits = model(x)
        with record_function("phase::loss"):
            loss = lm_loss(logits, y, impl)
        optimizer.zero_grad(set_to_none=True)
        with record_function("phase::backward"):
            loss.backward()
        with record_function("phase::clip"):
            clip_gradients(model.parameters(), 1.0, impl)
        with record_function("phase::optimizer"):
            optimizer.step()

    step()  # warm-up: optimizer state, thread pools
    start = time.perf_counter()
    with native_stderr_filtered(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total = (time.perf_counter() - start) / steps
    by_phase: dict[str, float] = {}
    by_family: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("phase::"):
            by_phase[event.key.split("::", 1)[1]] = event.cpu_time_total / 1000 / steps
        elif event.key.startswith("aten::"):
            family = op_family(event.key)
            by_family[family] = by_family.get(family, 0.0) + event.self_cpu_time_total / 1000 / steps
    by_family = dict(sorted(by_family.items(), key=lambda kv: -kv[1]))
    return {"total": 1000 * total, "by_phase": by_phase, "by_op_family": by_family}
