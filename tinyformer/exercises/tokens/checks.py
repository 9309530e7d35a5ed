"""The checker's view of chapter "Text to tokens": seeded cases and references for
count_pairs and merge_pair."""

from collections import Counter

import torch

from ..component import Case, Component, generator
from ..probes import Finding
from .hints import MISTAKES


def _count_pairs_probe(ctx):
    """The counts of a list of T ids add up to T - 1, and each key is an adjacent (left, right) pair."""
    for case, got in zip(ctx.cases, ctx.outputs):
        ids = case.args[0]
        if not isinstance(got, dict):
            continue
        total = sum(got.values())
        if total != max(len(ids) - 1, 0):
            return Finding("offbyone" if abs(total - (len(ids) - 1)) == 1 else "invariant",
                           f"your counts add up to {total}; {len(ids)} ids have {len(ids) - 1} adjacent pairs ({case.label})")
        pairs = set(zip(ids, ids[1:]))
        if set(got) != pairs:
            if set(got) == {(b, a) for a, b in pairs}:
                return Finding("axis", "your keys are (right, left): each pair is (ids[i], ids[i + 1])")
            return Finding("invariant", f"your keys are not the adjacent pairs (ids[i], ids[i + 1]) ({case.label})")
    return None


def _merge_pair_probe(ctx):
    """Unmerging (new_id -> a, b) gives back ids; the number of merges is the greedy, left-to-right one."""
    for case, got, want in zip(ctx.cases, ctx.outputs, ctx.expected):
        ids, (a, b), new_id = case.args
        if not isinstance(got, list) or got == want:
            continue
        unmerged = [t for token in got for t in ((a, b) if token == new_id else (token,))]
        if unmerged != ids:
            return Finding("invariant", f"replacing each new_id in yours by ({a}, {b}) should give back ids, and it does not "
                                        f"({case.label}): every token not merged is kept, in order")
        n, n_ref = got.count(new_id), want.count(new_id)
        if n < n_ref:
            return Finding("invariant", f"you merge {n} occurrences where there are {n_ref} ({case.label}): scan the whole "
                                        "list, and after a merge go on right after the pair")
        return Finding("invariant", f"you merge {n} occurrences where there are {n_ref} ({case.label}): occurrences may "
                                    "not overlap (in [a, a, a] the pair (a, a) is merged once, at the start)")
    return None


def _count_pairs_cases():
    g = generator(0)
    return [
        Case("ids=[1, 2, 3, 1, 2]", ([1, 2, 3, 1, 2],)),
        Case('bytes of "aaabdaaabac"', (list(b"aaabdaaabac"),)),
        Case("40 random ids in 0..4", (torch.randint(0, 5, (40,), generator=g).tolist(),)),
        Case("a single id", ([7],)),
    ]


def _merge_pair_reference(ids, a, b, new_id):
    """The BPE merge rule on a plain list, written independently of the solution: scan left to
    right and merge an (a, b) occurrence unless its first token was just consumed by the
    previous merge (tinyformer's trainer applies the same rule to its linked token cells)."""
    out, skip = [], False
    for i, token in enumerate(ids):
        if skip:
            skip = False
            continue
        if token == a and i + 1 < len(ids) and ids[i + 1] == b:
            out.append(new_id)
            skip = True
        else:
            out.append(token)
    return out


def _merge_pair_cases():
    g = generator(1)
    return [
        Case('bytes of "aaabdaaabac", pair (97, 97)', (list(b"aaabdaaabac"), (97, 97), 256)),
        Case("[5, 5, 5, 5, 5], pair (5, 5)", ([5, 5, 5, 5, 5], (5, 5), 9)),
        Case("60 random ids in 0..2, pair (1, 2)", (torch.randint(0, 3, (60,), generator=g).tolist(), (1, 2), 3)),
        Case("pair absent", ([1, 2, 3], (3, 1), 4)),
    ]


COMPONENTS = [
    Component(
        "count_pairs", "tokens", "function", _count_pairs_cases,
        references={"collections.Counter": lambda case: dict(Counter(zip(case.args[0], case.args[0][1:])))},
        mistakes=MISTAKES["count_pairs"],
        probes=[_count_pairs_probe],
    ),
    Component(
        "merge_pair", "tokens", "function", _merge_pair_cases,
        references={"tinyformer": lambda case: _merge_pair_reference(case.args[0], *case.args[1], case.args[2])},
        mistakes=MISTAKES["merge_pair"],
        probes=[_merge_pair_probe],
    ),
]
