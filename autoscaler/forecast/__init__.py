"""Demand forecasting for predictive warm-pool sizing: pure functions over a regular demand series.

``forecast_demand(history, now_s=..., horizon_s=...)`` backtests a seasonal model (daily and weekly),
a short-horizon trend model and a robust recent-median fallback at the real horizon, keeps the one
with the lowest recent error, and returns its median and a conformal upper quantile. Nothing here
does IO, reads a clock, draws random numbers or mutates its inputs; the controller and the simulator
call the same function. See ``docs/forecasting.md`` for the method and its evaluation.

A controller forecasting every tick keeps a ``ForecastFit`` (``fit.py``): ``refresh_fit`` refits every
few minutes (staggered per target by ``refit_phase_s``), ``forecast_from_fit`` applies the fitted model
to the newest points in between, at a small fraction of the full forecast's cost.
"""

from autoscaler.forecast.fit import (
    FIT_LIFETIME_S,
    REFIT_EVERY_S,
    ForecastFit,
    fit_forecast,
    forecast_from_fit,
    refit_phase_s,
    refresh_fit,
)
from autoscaler.forecast.history import COARSE_STEP_S, DEFAULT_HISTORY_S, FULL_SPAN_S, CoarseTier, DemandHistory
from autoscaler.forecast.select import MIN_ERRORS, Forecast, forecast_demand

__all__ = [
    "COARSE_STEP_S",
    "DEFAULT_HISTORY_S",
    "FIT_LIFETIME_S",
    "FULL_SPAN_S",
    "MIN_ERRORS",
    "REFIT_EVERY_S",
    "CoarseTier",
    "DemandHistory",
    "Forecast",
    "ForecastFit",
    "fit_forecast",
    "forecast_demand",
    "forecast_from_fit",
    "refit_phase_s",
    "refresh_fit",
]
