"""The Prometheus edge: an async reader for any Prometheus-compatible HTTP API (Prometheus, Thanos
Query, Mimir, VictoriaMetrics). It knows HTTP, auth, retries and the response format; it knows nothing
about policies or presets (that is :mod:`autoscaler.signals`).
"""

from autoscaler.prometheus.client import (
    AiohttpTransport,
    HttpResponse,
    InstantResult,
    PrometheusClient,
    PrometheusConfig,
    RangeResult,
    RangeSeries,
    Sample,
    Transport,
)
from autoscaler.prometheus.errors import (
    PrometheusAuthError,
    PrometheusError,
    PrometheusHTTPError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachable,
)

__all__ = [
    "AiohttpTransport",
    "HttpResponse",
    "InstantResult",
    "PrometheusAuthError",
    "PrometheusClient",
    "PrometheusConfig",
    "PrometheusError",
    "PrometheusHTTPError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusUnreachable",
    "RangeResult",
    "RangeSeries",
    "Sample",
    "Transport",
]
