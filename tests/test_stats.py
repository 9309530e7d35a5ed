import math
import statistics

import pytest
import torch

from tinyformer.book.stats import difference, median, seeds_phrase, summarize


@pytest.mark.parametrize("values", [[3.0], [1.0, 2.0], [0.4, 0.61, 0.62, 0.9], [5, 1, 4, 2, 3], [2.0, 2.0, 7.0, 1.0]])
def test_median_and_spread_match_python_statistics(values):
    s = summarize(values)
    assert median(values) == pytest.approx(statistics.median(values))
    assert s.mean == pytest.approx(statistics.fmean(values))
    assert s.std == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0.0)
    assert (s.low, s.high, s.n) == (min(values), max(values), len(values))


def test_even_count_median_is_not_the_lower_middle():
    # torch.median returns the lower of the two middle values: the error the normalization chapter made
    values = [0.4, 0.51, 0.72, 0.9]
    assert torch.tensor(values).median().item() == pytest.approx(0.51)
    assert median(values) == pytest.approx(0.615)


def test_paired_difference_uses_the_per_seed_differences():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.5, 1.7, 2.4, 3.9]
    d = difference(a, b)
    diffs = [x - y for x, y in zip(a, b)]
    assert d.estimate == pytest.approx(statistics.fmean(diffs))
    assert d.se == pytest.approx(statistics.stdev(diffs) / math.sqrt(4))
    assert d.clear() == (abs(d.estimate / d.se) >= 2)


def test_unpaired_difference_is_welch():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    d = difference(a, b, paired=False)
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 4)
    assert d.estimate == pytest.approx(2.0 - 5.0) and d.se == pytest.approx(se)


def test_one_seed_never_ranks():
    d = difference([1.0], [0.0])
    assert d.se == 0 and not d.clear()
    assert seeds_phrase(1) == "from one seed" and seeds_phrase(10) == "over 10 seeds"


@pytest.mark.parametrize("call", [lambda: median([]), lambda: summarize([1.0, float("nan")]),
                                  lambda: difference([1.0, 2.0], [1.0]), lambda: seeds_phrase(0)])
def test_bad_input_is_refused(call):
    with pytest.raises(ValueError):
        call()
