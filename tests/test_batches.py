"""tinyformer.batches: random windows and their next-token targets."""

import numpy as np
import pytest
import torch

from tinyformer.batches import get_batch


def test_get_batch_windows_and_targets():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = get_batch(tokens, 8, 5, device="cpu", generator=torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (8, 5) and x.dtype == torch.long
    assert (y == x + 1).all()  # arange: each target is the next token
    assert (x[:, 1:] == x[:, :-1] + 1).all()
    assert x.min() >= 0 and y.max() <= 99


def test_get_batch_is_reproducible_and_covers_every_start():
    tokens = torch.arange(12)
    a = get_batch(tokens, 200, 4, generator=torch.Generator().manual_seed(3))
    b = get_batch(tokens, 200, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
    assert set(a[0][:, 0].tolist()) == set(range(8))  # starts 0..len-T-1


def test_get_batch_reads_memmap(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(50, dtype=np.uint16).tofile(path)
    x, y = get_batch(np.memmap(path, dtype=np.uint16, mode="r"), 2, 4)
    assert (y == x + 1).all()


def test_get_batch_rejects_short_data():
    with pytest.raises(ValueError, match="need at least context_length \\+ 1 = 9 tokens"):
        get_batch(np.arange(8), 2, 8)
