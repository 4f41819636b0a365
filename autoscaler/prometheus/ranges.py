"""Long range reads: a matrix query split into chunks that each stay under Prometheus's 11,000-point
limit per series, with the returned series summed per timestamp (a target's total).

Used by the forecast warm start and by backtests, which read days of history at the tick's step.

A timestamp at which any series is NaN, infinite or negative is left out (a gap, not a total): broken
data is never load, and a sum that leaves a series out would under-count it. A total that overflows
is left out the same way. Summing cannot raise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Protocol

from autoscaler.prometheus.client import RangeResult

__all__ = ["MAX_POINTS_PER_QUERY", "RangeClient", "summed_range"]

MAX_POINTS_PER_QUERY = 10_000


class RangeClient(Protocol):
    async def query_range(
        self, expr: str, *, start_s: float, end_s: float, step_s: float, context: str = ""
    ) -> RangeResult: ...


async def summed_range(
    client: RangeClient, expr: str, *, start_s: float, end_s: float, step_s: float, context: str = ""
) -> dict[float, float]:
    """``timestamp -> sum over the returned series`` from ``start_s`` to ``end_s`` at ``step_s``."""
    parts: dict[float, list[float]] = defaultdict(list)
    broken: set[float] = set()
    chunk = MAX_POINTS_PER_QUERY * step_s
    begin = start_s
    while begin <= end_s:
        stop = min(end_s, begin + chunk)
        result = await client.query_range(expr, start_s=begin, end_s=stop, step_s=step_s, context=context)
        for series in result.series:
            for t, value in series.points:
                if math.isfinite(value) and value >= 0:
                    parts[t].append(value)
                else:
                    broken.add(t)
        begin = stop + step_s
    totals: dict[float, float] = {}
    for t, values in parts.items():
        if t in broken:
            continue
        try:
            total = math.fsum(values)
        except OverflowError:
            continue
        if math.isfinite(total):
            totals[t] = total
    return totals
