"""Chapter "Text to tokens": one step of byte-pair encoding (BPE)."""

from collections import Counter


def count_pairs(ids):
    """How often each adjacent pair occurs in ``ids``.

    ids: list[int] of length T  ->  dict {(a, b): count}, with T - 1 pairs counted in all.
    """
    return dict(Counter(zip(ids, ids[1:])))


def merge_pair(ids, pair, new_id):
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

    ids: list[int] of length T, pair: (a, b), new_id: int  ->  list[int] of length <= T.
    Occurrences do not overlap: in [a, a, a] the pair (a, a) is merged once, at the start.
    """
    a, b = pair
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            merged.append(new_id)
            i += 2  # both halves of the pair are used up
        else:
            merged.append(ids[i])
            i += 1
    return merged
