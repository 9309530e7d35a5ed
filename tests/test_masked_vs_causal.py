"""The book's masked-LM experiment: middle-of-word positions, seeded training, fill-in."""

import pytest
import torch

from tinyformer import TransformerConfig
from tinyformer.book.masked_vs_causal import middle_of_word_positions, train_masked_lm

TINY = TransformerConfig(vocab_size=16, context_length=16, d_model=16, n_layers=1, n_heads=2, d_ff=32)
TEXT = "in the beginning god created the heaven and the earth. " * 40  # 15 distinct characters + [MASK]


def test_middle_of_word_positions_are_letters_between_letters():
    text = "and god said, let there be light: and there was light."
    pos = middle_of_word_positions(text, 10, 2, torch.Generator().manual_seed(0))
    assert len(set(pos.tolist())) == 10
    for p in pos:
        assert text[p - 1 : p + 2].isalpha()
    with pytest.raises(ValueError, match="only"):
        middle_of_word_positions(text, 1000, 2, torch.Generator().manual_seed(0))


def test_training_is_seeded_and_reproducible():
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    a = train_masked_lm(TEXT, config=TINY, steps=6, batch_size=4, n_eval=20)
    b = train_masked_lm(TEXT, config=TINY, steps=6, batch_size=4, n_eval=20)
    assert torch.equal(state, torch.get_rng_state()) and torch.get_num_threads() == threads
    assert a.losses == b.losses and a.accuracy == b.accuracy
    assert len(a.losses["bidirectional"]) == len(a.losses["causal"]) == 6
    assert set(a.accuracy) == {"bidirectional", "causal"} and a.mask_id == 15 == a.tokenizer.vocab_size
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)
    c = train_masked_lm(TEXT, config=TINY, steps=6, batch_size=4, n_eval=20, seed=1)
    assert c.losses != a.losses


def test_fill_in_shows_both_models():
    run = train_masked_lm(TEXT, config=TINY, steps=4, batch_size=4, n_eval=20)
    guesses = run.fill_in("the heaven", 5, k=3)
    assert len(guesses["bidirectional"]) == len(guesses["causal"]) == 3
    assert all(0 <= p <= 1 for _, p in guesses["bidirectional"] + guesses["causal"])
    text = run.show_fill_in("the heaven", 5)
    assert "'the h_aven'" in text and "hidden: 'e'" in text and "left only" in text
    with pytest.raises(ValueError, match="index"):
        run.fill_in("the heaven", 0)
    long = "in the beginning god created the heaven"  # longer than context_length: a window around 'g'
    assert run.fill_in(long, 17)["bidirectional"] == run.fill_in(long[9:25], 8)["bidirectional"]
    with pytest.raises(ValueError, match="vocab_size"):
        train_masked_lm(TEXT, config=TINY.replace(vocab_size=40), steps=1)
