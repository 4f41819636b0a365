"""Signals: from policies and presets to PromQL, from Prometheus's answer to one reading per target.

* :mod:`.targets` - which pods (series) belong to a target;
* :mod:`.promql` - batched fleet queries and safe custom templates;
* :mod:`.owners` - histogram buckets summed per owner inside Prometheus, used where exact;
* :mod:`.aggregate` - pure per-target aggregation (shared with the simulator);
* :mod:`.coverage` - partial is unavailable: every pod that should report must, or the reading holds;
* :mod:`.fleet` - the async per-tick reader.

Depends on the core's types and on the Prometheus edge's client types, never the reverse.
"""

from autoscaler.signals.aggregate import PodSample, aggregate, bucket_quantile, read_target
from autoscaler.signals.coverage import covered
from autoscaler.signals.fleet import FleetReader, FleetSignals, QueryClient, SignalSettings
from autoscaler.signals.promql import fleet_query, owner_query, render_custom, target_query

__all__ = [
    "FleetReader",
    "FleetSignals",
    "PodSample",
    "QueryClient",
    "SignalSettings",
    "aggregate",
    "bucket_quantile",
    "covered",
    "fleet_query",
    "owner_query",
    "read_target",
    "render_custom",
    "target_query",
]
