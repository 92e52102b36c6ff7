"""Honest summaries of small samples for the bench scripts (issue 18 item 6).

A percentile is named only when the sample can carry it: the nearest-rank pXX of N samples is a
real order statistic beyond the median only when N ≥ 100 / (100 − XX) (p99 needs 100 samples,
p90 needs 10). Below that the largest sample is reported and called what it is: "max of N".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

TAIL_QUANTILES = (0.99, 0.95, 0.9)


def nearest_rank(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q ≤ 1) of a non-empty sample."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def tail(samples: Sequence[float]) -> tuple[str, float]:
    """The highest percentile the sample supports, labelled with the sample size ("p90 of 20"),
    else its maximum ("max of 5")."""
    n = len(samples)
    for q in TAIL_QUANTILES:
        if n >= round(1 / (1 - q)):
            return f"p{round(q * 100)} of {n}", nearest_rank(samples, q)
    return f"max of {n}", max(samples)


def spread(samples: Sequence[float], fmt: str = "{:.2f}") -> str:
    """"median M (min A – max B, n = N)": the middle and the whole range of a small sample."""
    return (f"median {fmt.format(statistics.median(samples))} (min {fmt.format(min(samples))} – "
            f"max {fmt.format(max(samples))}, n = {len(samples)})")
