"""Closed forms the simulator is checked against: M/M/c (Erlang C) waiting and response times.

With ``c`` servers, arrival rate ``lam`` and service rate ``mu`` (a = lam/mu, rho = a/c < 1):
P(wait) = C(c, a); the wait is 0 with probability 1 - C and exponential with rate theta = c mu - lam
otherwise; the response is the wait plus an independent Exp(mu) service.
"""

from __future__ import annotations

import math

from autoscaler.core.slo import erlang_c  # the one Erlang C (the core sizes SLO fleets with it)

__all__ = ["erlang_c", "mmc_mean_response_s", "mmc_response_quantile_s", "mmc_response_survival"]


def mmc_mean_response_s(lam: float, mu: float, c: int) -> float:
    return erlang_c(c, lam / mu) / (c * mu - lam) + 1.0 / mu


def mmc_response_survival(t: float, lam: float, mu: float, c: int) -> float:
    """P(response > t)."""
    p_wait = erlang_c(c, lam / mu)
    theta = c * mu - lam
    no_wait = math.exp(-mu * t)
    if abs(theta - mu) < 1e-12:
        waited = math.exp(-mu * t) * (1 + mu * t)
    else:
        waited = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1 - p_wait) * no_wait + p_wait * waited


def mmc_response_quantile_s(q: float, lam: float, mu: float, c: int) -> float:
    """The response-time quantile, by bisection on the survival function."""
    lo, hi = 0.0, 1.0 / mu
    while mmc_response_survival(hi, lam, mu, c) > 1 - q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mmc_response_survival(mid, lam, mu, c) > 1 - q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
