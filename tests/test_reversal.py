import torch

from tinyformer.book.reversal import BOS, greedy_decode, reversal_batch, sequence_accuracy, train_reversal


def test_reversal_batch_is_teacher_forced():
    src, decoder_in, target = reversal_batch(3, 5, torch.Generator().manual_seed(0))
    assert torch.equal(target, src.flip(1))
    assert (decoder_in[:, 0] == BOS).all() and torch.equal(decoder_in[:, 1:], target[:, :-1])


def test_encoder_decoder_learns_to_reverse():
    model, losses = train_reversal(length=4, steps=150, seed=0)
    assert losses[-1] < losses[0] / 10
    assert sequence_accuracy(model, length=4, n=200) > 0.9
    out = greedy_decode(model, torch.tensor([[1, 2, 3, 4]]))
    assert out.shape == (1, 4)
