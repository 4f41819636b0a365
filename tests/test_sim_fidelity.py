"""The fleet model against closed-form queueing results.

Case matrix:
  M/M/c (Erlang C), c = 32 single-sequence replicas, fixed seed:
    rho 0.5 (300k requests), 0.8 (300k), 0.95 (2M: heavy traffic needs the samples)
    x mean response and p95 response, each within 5% of the closed form.
  Closed forms themselves: Erlang C against known values (c=1 is rho; a textbook c=2 case).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.sim.controllers import StaticController
from autoscaler.sim.fleet import FleetConfig
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.queueing import erlang_c, mmc_mean_response_s, mmc_response_quantile_s
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.trace import TokenDistribution, poisson

SERVERS = 32
TOKENS = 1000.0  # exponential output tokens (ceil: geometric) x 1 ms per token = 1 s mean service
MEAN_SERVICE_S = (TOKENS + 0.5) * 0.001  # E[ceil(Exp(m))] = 1 / (1 - e^(-1/m)) ~ m + 1/2


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    # c = 2, a = 1: C = (a^2/2 * 2/(2-1)) / (1 + a + a^2/2 * 2) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # M/M/1 response is exponential with rate mu - lambda: p95 = ln(20) / (mu - lambda)
    assert mmc_response_quantile_s(0.95, 0.5, 1.0, 1) == pytest.approx(math.log(20) / 0.5, rel=1e-9)


@pytest.mark.parametrize(("rho", "requests"), [(0.5, 300_000), (0.8, 300_000), (0.95, 2_000_000)])
def test_mmc_matches_erlang_c(rho: float, requests: int) -> None:
    mu = 1.0 / MEAN_SERVICE_S
    lam = rho * SERVERS * mu
    trace = poisson(
        rate_per_s=lam, duration_s=requests / lam, tokens_in=TokenDistribution("fixed", value=1),
        tokens_out=TokenDistribution("exponential", mean=TOKENS), rng=np.random.default_rng(1),
    )
    fleet = FleetConfig(max_concurrency=1, prefill_tokens_per_s=math.inf, per_token_s=(0.001, 0.001),
                        initial_replicas=SERVERS)
    result = simulate(trace, StaticController("static", SERVERS), fleet_config=fleet,
                      pipeline_config=PipelineConfig(scrape_interval_s=600, dcgm_collect_s=600, rate_window_s=1200),
                      slo=Slo(), rng=np.random.default_rng(2), progress=None)
    mean = mmc_mean_response_s(lam, mu, SERVERS)
    p95 = mmc_response_quantile_s(0.95, lam, mu, SERVERS)
    assert result.summary["dropped"] == 0
    assert result.summary["latencyMean"] == pytest.approx(mean, rel=0.05)
    assert result.summary["latencyP95"] == pytest.approx(p95, rel=0.05)
