"""The checker's view of chapter "Text to tokens": seeded cases and references for
count_pairs and merge_pair."""

from collections import Counter

import torch

from ..component import Case, Component, generator
from .hints import MISTAKES


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
    ),
    Component(
        "merge_pair", "tokens", "function", _merge_pair_cases,
        references={"tinyformer": lambda case: _merge_pair_reference(case.args[0], *case.args[1], case.args[2])},
        mistakes=MISTAKES["merge_pair"],
    ),
]
