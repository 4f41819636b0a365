"""Demand forecasting for predictive warm-pool sizing: pure functions over a regular demand series.

``forecast_demand(history, now_s=..., horizon_s=...)`` backtests a seasonal model (daily and weekly),
a short-horizon trend model and a robust recent-median fallback at the real horizon, keeps the one
with the lowest recent error, and returns its median and a conformal upper quantile. Nothing here
does IO, reads a clock, draws random numbers or mutates its inputs; the controller and the simulator
call the same function. See ``docs/forecasting.md`` for the method and its evaluation.
"""

from autoscaler.forecast.history import COARSE_STEP_S, DEFAULT_HISTORY_S, FULL_SPAN_S, CoarseTier, DemandHistory
from autoscaler.forecast.select import MIN_ERRORS, Forecast, forecast_demand

__all__ = [
    "COARSE_STEP_S",
    "DEFAULT_HISTORY_S",
    "FULL_SPAN_S",
    "MIN_ERRORS",
    "CoarseTier",
    "DemandHistory",
    "Forecast",
    "forecast_demand",
]
