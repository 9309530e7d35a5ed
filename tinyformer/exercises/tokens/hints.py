"""The classic mistakes of chapter "Text to tokens", each a wrong implementation the checker
recognises by its outputs, with the hint it prints."""

from ..component import Mistakes

MISTAKES = Mistakes()


@MISTAKES.add(
    "count_pairs", "the last pair is not counted",
    hint="a sequence of T ids has T - 1 adjacent pairs: loop over range(len(ids) - 1)",
)
def count_pairs_misses_last_pair(ids):
    """Loops over range(len(ids) - 2), so the last pair is never counted."""
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@MISTAKES.add(
    "merge_pair", "only the first occurrence is merged",
    hint="keep scanning after a merge: every non-overlapping occurrence, left to right",
)
def merge_pair_first_only(ids, pair, new_id):
    """Finds the pair once (like list.index) and merges only that first occurrence."""
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("merge_pair", merge_pair_first_only)
