"""Your turn, chapter "Text to tokens": one step of byte-pair encoding (BPE).

Replace each `raise NotImplementedError` with your code, then run
    python -m tinyformer.exercises check <this folder> --chapter tokens
"""


def count_pairs(ids):
    """How often each adjacent pair occurs in ``ids``.

    ids: list[int] of length T  ->  dict {(a, b): count}, with T - 1 pairs counted in all.
    Example: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    raise NotImplementedError


def merge_pair(ids, pair, new_id):
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

    ids: list[int] of length T, pair: (a, b), new_id: int  ->  a new list[int] of length <= T.
    Occurrences do not overlap: in [a, a, a] the pair (a, a) is merged once, at the start.
    Example: merge_pair([5, 6, 7, 5, 6], (5, 6), 9) -> [9, 7, 9]
    """
    raise NotImplementedError
