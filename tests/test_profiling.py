import time

import pytest
import torch

from tinyformer.profiling import machine_info, peak_memory_mib, time_call


def test_time_call_measures_the_median():
    assert 0.009 < time_call(lambda: time.sleep(0.01), repeats=3, warmup=0) < 0.05


def test_peak_memory_sees_a_temporary_allocation():
    def allocate():
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, freed on return
        return float(x[0])

    assert 60 <= peak_memory_mib(allocate) <= 80
    assert peak_memory_mib(lambda: None) < 8


def test_machine_info_names_the_versions():
    info = machine_info()
    assert info["torch"] == torch.__version__ and info["cores"] >= 1


def test_peak_memory_needs_linux(monkeypatch):
    import tinyformer.profiling as profiling

    monkeypatch.setattr(profiling.os.path, "exists", lambda path: False)
    with pytest.raises(OSError, match="needs Linux"):
        peak_memory_mib(lambda: None)
