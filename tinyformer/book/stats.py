"""The statistics the chapters quote about repeated runs: one place, tested against Python's own.

A chapter that runs an experiment over several seeds reports a centre, a spread and, when it
compares two configurations, their difference with its standard error, so a reader can judge
whether the ranking would survive another draw of seeds. A result from one seed is said to be
from one seed (:func:`seeds_phrase`).

    >>> s = summarize([0.40, 0.61, 0.62, 0.90])
    >>> s.median                       # the mean of the two middle values for an even count
    0.615
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "Difference", "median", "summarize", "difference", "seeds_phrase"]


def _floats(values: Sequence[float], what: str = "values") -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{what}: need at least one value, got none")
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{what}: NaN among {out}")
    return out


def median(values: Sequence[float]) -> float:
    """The middle value; for an even count the mean of the two middle values (not the lower one,
    which is what ``torch.median`` returns)."""
    xs = sorted(_floats(values))
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


@dataclass(frozen=True)
class Summary:
    """Centre and spread of one quantity measured over ``n`` seeds."""

    n: int
    mean: float
    median: float
    std: float  # sample standard deviation (n - 1); 0.0 for a single value
    low: float
    high: float

    @property
    def sem(self) -> float:
        """Standard error of the mean: std / sqrt(n)."""
        return self.std / math.sqrt(self.n)


def summarize(values: Sequence[float]) -> Summary:
    xs = _floats(values)
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return Summary(len(xs), mean, median(xs), std, min(xs), max(xs))


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with its standard error, paired (same seeds) or not."""

    estimate: float
    se: float
    n: int
    paired: bool

    @property
    def z(self) -> float:
        """How many standard errors the difference is from zero (inf when se is 0 and it is not)."""
        if self.se == 0:
            return 0.0 if self.estimate == 0 else math.copysign(math.inf, self.estimate)
        return self.estimate / self.se

    def clear(self, z: float = 2.0) -> bool:
        """True when the difference is at least ``z`` standard errors from zero: a ranking the
        chapter may state. Needs two or more seeds: one seed gives no standard error."""
        return self.n > 1 and abs(self.z) >= z


def difference(a: Sequence[float], b: Sequence[float], paired: bool = True) -> Difference:
    """The difference of two configurations' results over seeds.

    ``paired=True``: ``a[i]`` and ``b[i]`` come from the same seed, so the standard error is that
    of the per-seed differences. Otherwise Welch's: sqrt(var_a / n_a + var_b / n_b).
    """
    xa, xb = _floats(a, "a"), _floats(b, "b")
    if paired:
        if len(xa) != len(xb):
            raise ValueError(f"paired results need the same seeds: {len(xa)} values against {len(xb)}")
        d = summarize([x - y for x, y in zip(xa, xb)])
        return Difference(d.mean, d.sem, d.n, True)
    sa, sb = summarize(xa), summarize(xb)
    return Difference(sa.mean - sb.mean, math.sqrt(sa.sem ** 2 + sb.sem ** 2), min(sa.n, sb.n), False)


def seeds_phrase(n: int) -> str:
    """How a sentence says what a result rests on: "from one seed" or "over 10 seeds"."""
    if n < 1:
        raise ValueError(f"a result rests on at least one seed, got {n}")
    return "from one seed" if n == 1 else f"over {n} seeds"
