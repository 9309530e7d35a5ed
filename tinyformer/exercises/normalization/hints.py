"""The classic mistakes of chapter "Residuals and normalization", each a wrong implementation
the checker recognises by its outputs, with the hint it prints."""

import torch

from ..component import Mistakes
from ..masks.solution import causal_mask
from .solution import LayerNorm, RMSNorm, TransformerBlock

MISTAKES = Mistakes()


@MISTAKES.add(
    "LayerNorm", "LayerNorm with the unbiased variance",
    hint="x.var() divides by D - 1; LayerNorm divides by D: use ((x - mean)**2).mean(-1) "
    "or x.var(-1, unbiased=False)",
)
class LayerNormUnbiased(LayerNorm):
    """Uses x.var() (unbiased, divides by D - 1) where LayerNorm divides by D."""

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + self.eps) * self.weight + self.bias


@MISTAKES.add(
    "LayerNorm", "LayerNorm without ε inside the root",
    hint="sqrt(var + eps), not sqrt(var) + eps",
)
class LayerNormEpsOutsideRoot(LayerNorm):
    """Divides by sqrt(var) + eps instead of sqrt(var + eps)."""

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


@MISTAKES.add(
    "RMSNorm", "RMSNorm subtracting the mean",
    hint="RMSNorm divides x itself by its root mean square; it does not centre x",
)
class RMSNormSubtractsMean(RMSNorm):
    """Centres x first, which makes it LayerNorm without a bias, not RMSNorm."""

    def forward(self, x):
        x = x - x.mean(dim=-1, keepdim=True)
        return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


@MISTAKES.add(
    "TransformerBlock", "post-norm instead of pre-norm",
    hint="normalise the sublayer's input: x + f(norm(x)), not norm(x + f(x))",
)
class TransformerBlockPostNorm(TransformerBlock):
    """Normalises after the residual sum (x = norm(x + f(x))) instead of before the sublayer."""

    def forward(self, x):
        mask = causal_mask(x.shape[1])
        x = self.norm1(x + self.self_attn(x, mask))
        return self.norm2(x + self.ffn(x))


@MISTAKES.add(
    "TransformerBlock", "no causal mask in the block",
    hint="pass a causal mask to self-attention: a decoder must not see later tokens",
)
class TransformerBlockNoCausalMask(TransformerBlock):
    """Calls attention without the causal mask: every token sees the future."""

    def forward(self, x):
        x = x + self.self_attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("LayerNorm", LayerNormUnbiased)
