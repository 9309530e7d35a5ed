import time

import pytest
import torch

from tinyformer.book.profiling import attention_peak_memory, machine_info, peak_memory_mib, run_isolated, time_call


def test_time_call_measures_the_median():
    assert 0.009 < time_call(lambda: time.sleep(0.01), repeats=3, warmup=0) < 0.05


def _allocate_64_mib():
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, freed on return
    return float(x[0])


def _nothing():
    return None


def test_peak_memory_sees_a_temporary_allocation():
    # In a fresh process, as the benchmarks measure: this one has allocated too much already.
    assert 60 <= run_isolated(peak_memory_mib, _allocate_64_mib) <= 80
    assert run_isolated(peak_memory_mib, _nothing) < 8


def test_machine_info_names_the_versions():
    info = machine_info()
    assert info["torch"] == torch.__version__ and info["cores"] >= 1


def test_peak_memory_needs_linux(monkeypatch):
    import tinyformer.book.profiling as profiling

    monkeypatch.setattr(profiling.os.path, "exists", lambda path: False)
    with pytest.raises(OSError, match="needs Linux"):
        peak_memory_mib(lambda: None)


def test_attention_memory_in_a_fresh_process_grows_quadratically_for_the_written_out_path():
    naive, fused = run_isolated(attention_peak_memory, [512, 1024], 1, 4, 32)
    # one (1, 4, T, T) float32 matrix is 4 MiB at T=512 and 16 MiB at T=1024; several are alive at once
    assert naive[1] >= 16 and naive[1] > 3 * naive[0]
    assert fused[1] < naive[1] / 4


def test_profile_training_step_breaks_a_step_down():
    from tinyformer.model import TransformerConfig
    from tinyformer.book.profiling import op_family, profile_training_step

    assert op_family("aten::addmm") == "matmul"
    assert op_family("aten::native_layer_norm_backward") == "norm kernels"
    assert op_family("aten::_scaled_dot_product_flash_attention_for_cpu") == "fused attention"
    assert op_family("aten::_log_softmax") == "loss kernels" and op_family("aten::_softmax") == "softmax"
    assert op_family("aten::mul") == "element-wise & reductions" and op_family("phase::loss") == "other"
    assert op_family("aten::_foreach_lerp_") == "optimizer (multi-tensor)"
    config = TransformerConfig(vocab_size=20, context_length=8, d_model=16, n_layers=1, n_heads=2, impl="fused")
    result = profile_training_step(config, batch_size=2, steps=1)
    assert set(result["by_phase"]) == {"forward", "loss", "backward", "clip", "optimizer"}
    assert result["by_op_family"]["matmul"] > 0 and "optimizer (multi-tensor)" in result["by_op_family"]
    # the families are self times, so together they cannot exceed the step's wall time by much
    assert sum(result["by_op_family"].values()) <= 1.5 * result["total"]


_PROFILE_A_STEP = """
from tinyformer.model import TransformerConfig
from tinyformer.book.profiling import profile_training_step
config = TransformerConfig(vocab_size=20, context_length=8, d_model=16, n_layers=1, n_heads=2, impl="fused")
profile_training_step(config, batch_size=2, steps=1)
"""


def test_profiling_writes_nothing_to_stderr():
    # What "Making it fast" runs: the strict build fails on any stderr, and PyTorch's profiler
    # writes "USDT: ... profiler_start" lines from C++ on some machines.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _PROFILE_A_STEP], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_filtered_stderr_keeps_real_native_messages(capfd):
    # Only the profiler's status lines are dropped: a real message written to fd 2 by native code
    # (here os.write, as C++ would) still reaches stderr.
    import os

    from tinyformer.book.profiling import native_stderr_filtered

    with native_stderr_filtered():
        os.write(2, b"USDT:2026-12-04 14:19:38 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"[W thread_pool.cpp:1] a real warning\n")
        os.write(2, b"USDT:2026-12-04 14:19:38 1:1 SyncActivityProfilerHandler.cpp:59] profiler_stop\n")
    assert capfd.readouterr().err == "[W thread_pool.cpp:1] a real warning\n"
