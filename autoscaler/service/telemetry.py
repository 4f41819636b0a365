"""Observability: the service's Prometheus metrics, structured JSON logs, and the small HTTP server for
``/metrics``, ``/healthz`` and ``/readyz``.

``inference_autoscaler_desired_replicas{namespace,policy,target}`` is also the KEDA path: a KEDA
ScaledObject with a Prometheus trigger on it drives the target without our APIService
(``examples/keda-scaledobject.yaml``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["JsonFormatter", "Telemetry", "configure_logging", "health_app"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Telemetry:
    """Every metric the service exports, on its own registry (no globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ("namespace", "policy", "target")
        self.desired = Gauge("inference_autoscaler_desired_replicas", "Replicas the core decided.", labels, registry=r)
        self.current = Gauge("inference_autoscaler_current_replicas", "The target's spec.replicas.", labels, registry=r)
        self.ready = Gauge("inference_autoscaler_ready_replicas", "The target's ready pods.", labels, registry=r)
        self.metric_value = Gauge(
            "inference_autoscaler_metric_value",
            "Each metric's value as the core sees it.",
            ("namespace", "policy", "metric"),
            registry=r,
        )
        self.metric_target = Gauge(
            "inference_autoscaler_metric_target", "Each metric's target.", ("namespace", "policy", "metric"), registry=r
        )
        self.metric_proposal = Gauge(
            "inference_autoscaler_metric_proposal",
            "Each metric's own replica proposal.",
            ("namespace", "policy", "metric"),
            registry=r,
        )
        pl = ("namespace", "policy")
        self.forecast = Gauge(
            "inference_autoscaler_forecast_demand", "Forecast demand (median) one horizon ahead.", pl, registry=r
        )
        self.forecast_upper = Gauge(
            "inference_autoscaler_forecast_demand_upper",
            "Forecast demand at the policy's quantile, one horizon ahead.",
            pl,
            registry=r,
        )
        self.forecast_horizon = Gauge(
            "inference_autoscaler_forecast_horizon_seconds",
            "The forecast horizon: load time + interval.",
            pl,
            registry=r,
        )
        self.predictive_replicas = Gauge(
            "inference_autoscaler_predictive_replicas",
            "Replicas the forecast alone asks for (with the warm pool's spares).",
            pl,
            registry=r,
        )
        self.placeholder_pods = Gauge(
            "inference_autoscaler_placeholder_pods",
            "Placeholder (balloon) pods holding nodes for the warm pool.",
            pl,
            registry=r,
        )
        self.decisions = Counter(
            "inference_autoscaler_decisions", "Decisions by reason.", ("namespace", "policy", "reason"), registry=r
        )
        self.scale_writes = Counter(
            "inference_autoscaler_scale_writes",
            "Scale subresource writes by outcome.",
            ("namespace", "policy", "outcome"),
            registry=r,
        )
        self.unavailable = Counter(
            "inference_autoscaler_signal_unavailable",
            "Unavailable signals by reason.",
            ("namespace", "policy", "metric", "reason"),
            registry=r,
        )
        self.tick_seconds = Histogram(
            "inference_autoscaler_tick_duration_seconds",
            "One control-loop tick.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.prometheus_seconds = Histogram(
            "inference_autoscaler_prometheus_query_duration_seconds",
            "Signal reads from Prometheus per tick.",
            registry=r,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.prometheus_errors = Counter("inference_autoscaler_prometheus_errors", "Failed signal reads.", registry=r)
        self.kube_seconds = Histogram(
            "inference_autoscaler_kubernetes_request_duration_seconds",
            "Kubernetes API requests.",
            ("verb", "code"),
            registry=r,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.kube_errors = Counter(
            "inference_autoscaler_kubernetes_errors", "Kubernetes API errors.", ("verb", "code"), registry=r
        )
        self.leader = Gauge("inference_autoscaler_leader", "1 while this replica holds the lease.", registry=r)
        self.shards = Gauge(
            "inference_autoscaler_shards", "Shards the policies are split into (1: one leader).", registry=r
        )
        self.shards_held = Gauge(
            "inference_autoscaler_shards_held", "Shards whose Lease this replica holds (with shards).", registry=r
        )
        self.shard_leader = Gauge(
            "inference_autoscaler_shard_leader", "1 while this replica holds the shard's Lease.", ("shard",), registry=r
        )
        self.lease_conflict = Gauge(
            "inference_autoscaler_lease_conflict",
            "1 while live Leases of replicas running another --shards value keep this replica from leading.",
            registry=r,
        )
        self.policies = Gauge("inference_autoscaler_policies", "Policies loaded.", registry=r)
        self.policy_errors = Gauge("inference_autoscaler_policy_errors", "Errors in the policy files.", registry=r)
        self.paused = Gauge(
            "inference_autoscaler_paused",
            "1 while the policy's annotations freeze its writes (paused, or paused at paused-replicas).",
            ("namespace", "policy"),
            registry=r,
        )
        self.target_conflicts = Counter(
            "inference_autoscaler_target_conflicts",
            "Reports of a policy refused because another policy already scales its target.",
            ("namespace", "policy"),
            registry=r,
        )

    def forget(self, policy: Any) -> None:
        """Drop a removed (or retargeted) policy's series, so nothing keeps acting on a stale gauge."""
        ns, name, target = policy.namespace, policy.name, policy.target.name
        per_policy = (
            self.forecast,
            self.forecast_upper,
            self.forecast_horizon,
            self.predictive_replicas,
            self.placeholder_pods,
        )
        for gauge in (self.desired, self.current, self.ready):
            with contextlib.suppress(KeyError):
                gauge.remove(ns, name, target)
        for gauge in per_policy:
            with contextlib.suppress(KeyError):
                gauge.remove(ns, name)
        for metric in policy.metrics:
            for gauge in (self.metric_value, self.metric_target, self.metric_proposal):
                with contextlib.suppress(KeyError):
                    gauge.remove(ns, name, metric.name)

    def observe_kube(self, verb: str, seconds: float, outcome: str) -> None:
        self.kube_seconds.labels(verb, outcome).observe(seconds)
        if outcome == "error" or (outcome.isdigit() and int(outcome) >= 400):
            self.kube_errors.labels(verb, outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def health_app(telemetry: Telemetry, *, ready: Callable[[], bool], alive: Callable[[], bool]) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=telemetry.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok" if alive() else "stalled", status=200 if alive() else 500)

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok" if ready() else "not ready", status=200 if ready() else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    return app
