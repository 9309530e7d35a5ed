"""The book's masked-LM experiment: a bidirectional encoder against a causal model of the same size.

A tiny :class:`~tinyformer.mlm.MaskedLM` learns to fill in a masked character from both
sides; a :class:`~tinyformer.TransformerLM` of the same size and training budget, which sees
only the left context, is the baseline. Both then guess the same hidden middle-of-word
characters of held-out text (:func:`train_masked_lm`, :class:`MLMRun`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import load_kjv
from ..mlm import MaskedLM, bert_mask, masked_lm_loss
from ..model import TransformerConfig, TransformerLM
from ..tokenizer import CharTokenizer
from ..batches import get_batch
from ..losses import cross_entropy
from .demo_training import train_steps

__all__ = ["MLMRun", "default_mlm_config", "middle_of_word_positions", "train_masked_lm"]


def default_mlm_config(vocab_size: int) -> TransformerConfig:
    """Tiny enough to train in seconds on two CPU cores; the book's modern block choices."""
    return TransformerConfig(vocab_size=vocab_size, context_length=16, d_model=64, n_layers=2, n_heads=4, d_ff=128)


def middle_of_word_positions(text: str, n: int, margin: int, generator: torch.Generator) -> np.ndarray:
    """``n`` positions of ``text`` whose character is a letter with a letter on each side,
    at least ``margin`` characters from either end, drawn without replacement."""
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    is_letter = np.array([chr(c).isalpha() for c in range(128)] + [False])[np.minimum(chars, 128)]
    middle = np.zeros_like(is_letter)
    middle[1:-1] = is_letter[:-2] & is_letter[1:-1] & is_letter[2:]
    middle[:margin] = middle[len(middle) - margin:] = False
    candidates = np.flatnonzero(middle)
    if len(candidates) < n:
        raise ValueError(f"the text has only {len(candidates)} middle-of-word positions, asked for {n}")
    pick = torch.randperm(len(candidates), generator=generator)[:n].numpy()
    return np.sort(candidates[pick])


@dataclass
class MLMRun:
    """What :func:`train_masked_lm` returns: both models, their losses, and the comparison."""

    model: MaskedLM
    causal: TransformerLM
    tokenizer: CharTokenizer
    mask_id: int
    losses: dict[str, list[float]]
    accuracy: dict[str, float]  # on masked middle-of-word characters of held-out text
    n_eval: int
    seconds: dict[str, float]
    seed: int
    config: TransformerConfig
    steps: int
    _val_text: str = field(repr=False, default="")

    @torch.no_grad()
    def fill_in(self, text: str, index: int, k: int = 3) -> dict[str, list[tuple[str, float]]]:
        """Hide ``text[index]`` and ask both models for it.

        Both read the same window of at most ``context_length`` characters around
        ``index`` (as in the accuracy comparison): the masked LM all of it with [MASK]
        at ``index``, the causal model only the part left of ``index`` (its prediction
        for the next character). Returns the ``k`` most likely characters with their
        probabilities for each.
        """
        T = self.config.context_length
        if not 0 < index < len(text):
            raise ValueError(f"index must be in 1..{len(text) - 1} (a character with left context), got {index}")
        start = max(0, min(index - T // 2, len(text) - T))
        text, index = text[start : start + T], index - start
        ids = torch.tensor([self.tokenizer.encode(text)])
        ids[0, index] = self.mask_id
        self.model.eval(), self.causal.eval()
        both = torch.softmax(self.model(ids)[0, index, : self.mask_id], -1)
        left = torch.softmax(self.causal(ids[:, :index])[0, -1, : self.mask_id], -1)

        def top(p):
            values, idx = p.topk(k)
            return [(self.tokenizer.decode([int(i)]), round(float(v), 3)) for v, i in zip(values, idx)]

        return {"bidirectional": top(both), "causal": top(left)}

    def show_fill_in(self, text: str, index: int, k: int = 3) -> str:
        """:meth:`fill_in` as readable lines, the hidden character shown as ``_``."""
        shown = text[:index] + "_" + text[index + 1:]
        guesses = self.fill_in(text, index, k)
        lines = [f"{shown!r}  (hidden: {text[index]!r})"]
        for who, sees in (("bidirectional", "both sides"), ("causal", "left only")):
            tops = ", ".join(f"{c!r} {p:.2f}" for c, p in guesses[who])
            lines.append(f"  {who} ({sees}): {tops}")
        return "\n".join(lines)


@torch.no_grad()
def _masked_accuracy(mlm: MaskedLM, causal: TransformerLM, tokens: np.ndarray, positions: np.ndarray,
                     mask_id: int, T: int) -> dict[str, float]:
    """Both models guess the character at each position from the same window around it.

    The window is ``[p - T//2, p + T - T//2)``: the masked LM sees it all with [MASK] at p;
    the causal model sees the same window's left part, ``[p - T//2, p)``.
    """
    half = T // 2
    windows = np.stack([tokens[p - half : p - half + T] for p in positions]).astype(np.int64)
    x = torch.from_numpy(windows)
    truth = x[:, half].clone()
    x[:, half] = mask_id
    both = mlm(x)[:, half, :mask_id].argmax(-1)
    left = causal(x[:, :half])[:, -1, :mask_id].argmax(-1)
    return {"bidirectional": (both == truth).float().mean().item(), "causal": (left == truth).float().mean().item()}


def train_masked_lm(
    text: str | None = None,
    *,
    config: TransformerConfig | None = None,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    n_eval: int = 1000,
    train_causal: bool = True,
    num_threads: int | None = 1,
    progress: bool = False,
) -> MLMRun:
    """Train a tiny masked LM (and, by default, a causal LM of the same size and budget).

    ``text`` defaults to the book's corpus, :func:`tinyformer.data.load_kjv`; its last
    10% is held out for the comparison: ``n_eval`` middle-of-word characters, each
    guessed by both models from the same window (see :class:`MLMRun`). Seeded:
    the same arguments give the same weights, losses and accuracies. The global
    random state is left untouched. ``num_threads`` sets torch's intra-op threads for
    the run (restored afterwards): a model this small gains nothing from a second
    thread, and on a busy two-core machine a second thread made training 18x slower.
    """
    if num_threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            return train_masked_lm(text, config=config, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                   n_eval=n_eval, train_causal=train_causal, num_threads=None, progress=progress)
        finally:
            torch.set_num_threads(previous)
    if text is None:
        text = load_kjv().text
    tokenizer = CharTokenizer.from_text(text)
    mask_id = tokenizer.vocab_size  # one id past the characters
    config = config or default_mlm_config(mask_id + 1)
    if config.vocab_size != mask_id + 1:
        raise ValueError(f"config.vocab_size must be the characters + [MASK] = {mask_id + 1}, "
                         f"got {config.vocab_size}")
    T = config.context_length
    tokens = np.asarray(tokenizer.encode(text), dtype=np.int64)
    cut = int(len(tokens) * 0.9)
    train_tokens, val_tokens = tokens[:cut], tokens[cut:]
    seconds: dict[str, float] = {}
    optimizer = {"betas": (0.9, 0.95), "weight_decay": 0.01}  # the same for both models

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlm = MaskedLM(config)
        causal = TransformerLM(config)

        data_gen = torch.Generator().manual_seed(seed)
        mask_gen = torch.Generator().manual_seed(seed + 1)

        def mlm_batches(step):
            x, _ = get_batch(train_tokens, batch_size, T, generator=data_gen)
            inputs, targets = bert_mask(x, mask_id, n_random=mask_id, generator=mask_gen)
            return (inputs,), targets

        start = time.perf_counter()
        losses = {"bidirectional": train_steps(mlm, mlm_batches, masked_lm_loss, steps, lr, **optimizer,
                                               desc="masked LM", progress=progress)}
        seconds["bidirectional"] = time.perf_counter() - start

        if train_causal:
            causal_gen = torch.Generator().manual_seed(seed)  # the same windows as the masked LM

            def causal_batches(step):
                x, y = get_batch(train_tokens, batch_size, T, generator=causal_gen)
                return (x,), y

            start = time.perf_counter()
            losses["causal"] = train_steps(causal, causal_batches, cross_entropy, steps, lr, **optimizer,
                                           desc="causal LM", progress=progress)
            seconds["causal"] = time.perf_counter() - start

        val_text = text[cut:]
        positions = middle_of_word_positions(val_text, n_eval, T, torch.Generator().manual_seed(seed + 2))
        accuracy = _masked_accuracy(mlm, causal, val_tokens, positions, mask_id, T)
        if not train_causal:
            accuracy.pop("causal")
    return MLMRun(mlm, causal, tokenizer, mask_id, losses, accuracy, n_eval, seconds, seed, config, steps, val_text)
