"""Deliberately wrong implementations: one per classic mistake the checker names.

Each one is the reference solution with exactly one thing wrong, written the way
a reader would get it wrong. The checker recognises a mistake by running the
reader's code and the wrong version here on the same inputs: if the outputs
agree (and differ from the reference), the mistake is named. The book runs one
of these per chapter in a hidden cell to show what the checker says.
"""

import math

import torch
import torch.nn.functional as F

from .solutions import language_model, multihead, normalization
from .solutions.attention import softmax

# ----------------------------------------------------------------------- tokens


def count_pairs_misses_last_pair(ids):
    """Loops over range(len(ids) - 2), so the last pair is never counted."""
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_pair_first_only(ids, pair, new_id):
    """Finds the pair once (like list.index) and merges only that first occurrence."""
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


# -------------------------------------------------------------------- positions


def _sinusoidal(positions, D, halves=False):
    inv_freq = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    angles = positions.to(torch.float64)[:, None] * inv_freq  # (T, D/2)
    if halves:
        return torch.cat([angles.sin(), angles.cos()], dim=-1).float()
    pe = torch.empty(len(positions), D, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


def sinusoidal_positions_off_by_one(T, D):
    """Counts positions from 1 instead of 0."""
    return _sinusoidal(torch.arange(1, T + 1), D)


def sinusoidal_positions_halves(T, D):
    """Puts all the sines in the first D/2 columns and the cosines in the last D/2."""
    return _sinusoidal(torch.arange(T), D, halves=True)


def _rope(x, token_positions, theta, halves):
    d_head = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    angles = token_positions.to(torch.float64)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if halves:  # pairs (x[i], x[i + d/2]), the GPT-NeoX / Hugging Face "rotate_half" layout
        first, second = x[..., : d_head // 2], x[..., d_head // 2 :]
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def rope_halves(x, token_positions, theta=10000.0):
    """Rotates the pairs (x[i], x[i + d_head/2]) instead of the adjacent pairs (x[2i], x[2i+1])."""
    return _rope(x, token_positions, theta, halves=True)


def rope_positions_off_by_one(x, token_positions, theta=10000.0):
    """Rotates by position p + 1: the first token is already turned."""
    return _rope(x, token_positions + 1, theta, halves=False)


# -------------------------------------------------------------------- attention


def softmax_no_max_shift(x, dim=-1):
    """exp(x) / sum(exp(x)) without subtracting the max: exp overflows to inf at large x."""
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_ignores_dim(x, dim=-1):
    """Always normalises the last axis, whatever ``dim`` asks for."""
    return torch.softmax(x, dim=-1)


def attention_unscaled(q, k, v):
    """Forgets to divide the scores by sqrt(d_head)."""
    return softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def attention_softmax_over_queries(q, k, v):
    """Normalises each column (over the queries, dim=-2) instead of each row (over the keys)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return softmax(scores, dim=-2) @ v


# ------------------------------------------------------------------------ masks


def causal_mask_inverted(q_len, k_len=None):
    """True where attention is *blocked* (nn.MultiheadAttention's convention), not allowed."""
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len)[:, None] + (k_len - q_len)
    return ~(torch.arange(k_len)[None, :] <= q_pos)


def causal_mask_no_diagonal(q_len, k_len=None):
    """Strictly lower-triangular: a token may not attend to itself."""
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(q_len)[:, None] + (k_len - q_len)
    return torch.arange(k_len)[None, :] < q_pos


def causal_mask_unshifted(q_len, k_len=None):
    """torch.tril on a (q_len, k_len) grid: correct when square, but with k_len > q_len the
    queries are the *last* positions, and the diagonal must shift by k_len - q_len."""
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len).tril().bool()


def masked_attention_inverted(q, k, v, mask):
    """Blocks the keys the mask allows and lets through the ones it blocks."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v


def masked_attention_after_softmax(q, k, v, mask):
    """Zeroes the weights after the softmax: the rows no longer sum to 1."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = softmax(scores, dim=-1).masked_fill(~mask, 0.0)
    return weights @ v


# -------------------------------------------------------------------- multihead


class MultiHeadAttentionWrongSplit(multihead.MultiHeadAttention):
    """Splits heads with view(B, H, T, d_head): each "head" then holds pieces of several positions."""

    def split_heads(self, x):
        B, T, D = x.shape
        return x.view(B, self.n_heads, T, self.d_head)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = softmax(scores, dim=-1) @ v  # (B, H, T, d_head)
        return self.o_proj(out.reshape(B, T, D))  # the inverse of the wrong view


class MultiHeadAttentionScaledByD(multihead.MultiHeadAttention):
    """Divides the scores by sqrt(D) (the model width) instead of sqrt(d_head)."""

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = (softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        return self.o_proj(out)


class SwiGLUSwapped(multihead.SwiGLU):
    """Puts silu on the value branch (w3) instead of the gate (w1)."""

    def forward(self, x):
        return self.w2(self.w1(x) * F.silu(self.w3(x)))


# ---------------------------------------------------------------- normalization


class LayerNormUnbiased(normalization.LayerNorm):
    """Uses x.var() (unbiased, divides by D - 1) where LayerNorm divides by D."""

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + self.eps) * self.weight + self.bias


class LayerNormEpsOutsideRoot(normalization.LayerNorm):
    """Divides by sqrt(var) + eps instead of sqrt(var + eps)."""

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


class RMSNormSubtractsMean(normalization.RMSNorm):
    """Centres x first, which makes it LayerNorm without a bias, not RMSNorm."""

    def forward(self, x):
        x = x - x.mean(dim=-1, keepdim=True)
        return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class TransformerBlockPostNorm(normalization.TransformerBlock):
    """Normalises after the residual sum (x = norm(x + f(x))) instead of before the sublayer."""

    def forward(self, x):
        mask = normalization.causal_mask(x.shape[1])
        x = self.norm1(x + self.self_attn(x, mask))
        return self.norm2(x + self.ffn(x))


class TransformerBlockNoCausalMask(normalization.TransformerBlock):
    """Calls attention without the causal mask: every token sees the future."""

    def forward(self, x):
        x = x + self.self_attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


# --------------------------------------------------------------- language model


class TransformerLMNoFinalNorm(language_model.TransformerLM):
    """Feeds the last block's output straight into lm_head, skipping final_norm."""

    def forward(self, token_ids):
        x = self.token_embedding(token_ids) + self.positions[: token_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(x)


class TransformerLMNoPositions(language_model.TransformerLM):
    """Forgets to add the positions: the model cannot tell word order."""

    def forward(self, token_ids):
        x = self.token_embedding(token_ids)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))


# --------------------------------------------------------------------- training


def cross_entropy_no_shift(logits, targets):
    """log(sum(exp(logits))) without subtracting the max: exp overflows at large logits."""
    logsumexp = torch.log(torch.exp(logits).sum(dim=-1))
    return (logsumexp - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


def cross_entropy_log_of_softmax(logits, targets):
    """log(softmax(x)): the softmax underflows to 0 for unlikely targets, and log(0) = -inf."""
    probs = torch.softmax(logits, dim=-1)
    return -torch.log(probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


def next_token_loss_unshifted(logits, token_ids):
    """Scores position t's logits against token t itself: the model learns to copy its input."""
    return F.cross_entropy(logits.flatten(0, -2), token_ids.flatten())


def next_token_loss_shifted_backwards(logits, token_ids):
    """Shifts the wrong way: logits[:, 1:] against token_ids[:, :-1] (predicts the previous token)."""
    return F.cross_entropy(logits[:, 1:].flatten(0, -2), token_ids[:, :-1].flatten())


def adamw_step_l2(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Adds weight_decay * param to the gradient (L2, i.e. Adam) instead of decaying param directly."""
    b1, b2 = betas
    grad = grad + weight_decay * param
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad**2
    denom = torch.sqrt(exp_avg_sq / (1 - b2**step)) + eps
    return param - lr * exp_avg / (1 - b1**step) / denom, exp_avg, exp_avg_sq


def adamw_step_no_bias_correction(
    param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
):
    """Uses m and v as they are: early steps are the wrong size, since m and v start at zero."""
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    exp_avg = b1 * exp_avg + (1 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * grad**2
    return param - lr * exp_avg / (torch.sqrt(exp_avg_sq) + eps), exp_avg, exp_avg_sq


# --------------------------------------------------------------------- sampling


def top_k_not_renormalised(logits, k, temperature=1.0):
    """Zeroes all but the k largest probabilities and stops there: the rest no longer sum to 1."""
    probs = torch.softmax(logits / temperature, dim=-1)
    kth = torch.topk(probs, k, dim=-1).values[..., -1:]
    return probs.masked_fill(probs < kth, 0.0)


def top_p_crossing_token_out(logits, p, temperature=1.0):
    """Keeps tokens while the running total (including themselves) stays below p, so the token
    that crosses p is dropped and the kept mass is < p."""
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = torch.cumsum(sorted_probs, dim=-1) < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)


def top_p_not_renormalised(logits, p, temperature=1.0):
    """Keeps the right tokens but forgets to renormalise them."""
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < p
    return probs * torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


# One classic mistake per chapter, for the book's hidden cell:
#     name, wrong = CLASSIC[chapter];  check(wrong, name)
CLASSIC = {
    "tokens": ("merge_pair", merge_pair_first_only),
    "positions": ("rope", rope_halves),
    "attention": ("scaled_dot_product_attention", attention_unscaled),
    "masks": ("masked_attention", masked_attention_after_softmax),
    "multihead": ("MultiHeadAttention", MultiHeadAttentionWrongSplit),
    "normalization": ("LayerNorm", LayerNormUnbiased),
    "language_model": ("TransformerLM", TransformerLMNoFinalNorm),
    "training": ("next_token_loss", next_token_loss_unshifted),
    "sampling": ("top_p_distribution", top_p_crossing_token_out),
}
