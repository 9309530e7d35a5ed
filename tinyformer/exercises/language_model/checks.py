"""The checker's view of chapter "The full language model": seeded cases and weights for
TransformerLM, and how the reader's parameter names map onto tinyformer's."""

import torch

import tinyformer as tf

from ..component import DEEP, Case, Component, generator, seeded_module
from ..probes import ablate, causal
from .hints import MISTAKES


def _blocks_off(module):
    """Every block's attention and feed-forward outputs zeroed: each block is then x -> x."""
    for name, p in module.named_parameters():
        if name.endswith(("o_proj.weight", "w2.weight")):
            p.zero_()


def _lm_cases():
    g = generator(10)
    return [
        Case(
            "V=11, context 8, D=16, 2 layers, H=4, d_ff=32; ids (B=2, T=6)",
            (torch.randint(0, 11, (2, 6), generator=g),),
            init=(11, 8, 16, 2, 4, 32),
            dtype=torch.float32,
        ),
        Case(
            "V=7, context 5, D=8, 1 layer, H=2, d_ff=16; ids (B=3, T=5) float64",
            (torch.randint(0, 7, (3, 5), generator=g),),
            init=(7, 5, 8, 1, 2, 16),
            dtype=torch.float64,
        ),
    ]


def _tinyformer_lm(vocab_size, context_length, d_model, n_layers, n_heads, d_ff):
    config = tf.TransformerConfig(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_ff=d_ff,
        positions="sinusoidal",
    )
    return tf.TransformerLM(config)


def _lm_names(case):
    ref = _tinyformer_lm(*case.init)
    names = {name: name for name, _ in ref.named_parameters()}
    names["token_embedding.weight"] = names.pop("embed.token_embedding.weight")
    return names


COMPONENTS = [
    Component(
        "TransformerLM", "language_model", "class", _lm_cases,
        references={"tinyformer": None},
        mistakes=MISTAKES["TransformerLM"],
        probes=[
            causal(message="changing the last token changes your logits at earlier positions: position t may see "
                           "tokens 0..t only (a causal mask in every block)"),
            ablate(_blocks_off, "with every block switched off yours is right: the mistake is in the blocks, or in "
                                "how they are applied (each once, in order: x = block(x))"),
            ablate(_blocks_off, "even with every block switched off yours differs: the mistake is in the token "
                                "embedding + positions, the final norm or the LM head", when_right=False),
        ],
        atol=DEEP,
        reference_module=seeded_module(_tinyformer_lm),
        param_names=_lm_names,
    ),
]
