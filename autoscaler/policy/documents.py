"""The schema of our document kinds (``ScalingPolicy``, ``PolicyDefaults``) in the DSL of
:mod:`autoscaler.policy.schema`. Field names and HPA ``behavior`` semantics follow autoscaling/v2.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from autoscaler.core.policy import API_VERSION
from autoscaler.policy.schema import (
    INT32_MAX,
    Boolean,
    Enum,
    Integer,
    ListOf,
    Number,
    Obj,
    Quantity,
    StringMap,
    Text,
)
from autoscaler.presets import PRESETS

__all__ = ["DEFAULTS_DOCUMENT", "KINDS", "POLICY_DOCUMENT", "document_json_schema"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_METRIC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
# apimachinery: a kind is CamelCase (its lower-case form a DNS-1035 label); an apiVersion is
# ``group/version`` (the core group: ``version`` alone).
_KIND = re.compile(r"^[A-Za-z]([-A-Za-z0-9]*[A-Za-z0-9])?$")
_API_VERSION = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
)


def _dns_label(value: str) -> str | None:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        return "must be a DNS label: lower-case letters, digits and '-', at most 63 characters"
    return None


def _dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return "must be a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters"
    return None


def _kind(value: str) -> str | None:
    if len(value) > 63 or not _KIND.match(value):
        return "must be a kind such as Deployment: letters and digits, at most 63 characters (the group and " \
            "version go in apiVersion)"
    return None


def _api_version(value: str) -> str | None:
    if len(value) > 253 + 64 or not _API_VERSION.match(value):
        return "must be group/version (e.g. apps/v1), or a version alone for the core group"
    return None


RESERVED_METRIC_NAMES = frozenset({"slo"})  # an SLO policy's own proposal is named so in every decision


def _metric_name(value: str) -> str | None:
    if len(value) > 63 or not _METRIC_NAME.match(value):
        return "must be lower-case letters, digits, '-' or '_', at most 63 characters"
    if value in RESERVED_METRIC_NAMES:
        return "is reserved: a decision names the SLO's own proposal so; choose another name"
    return None


_METADATA = Obj(
    fields={
        "name": Text(
            pattern_check=_dns_subdomain,
            pattern=_DNS_SUBDOMAIN.pattern,
            description="Policy name, unique in its namespace.",
        ),
        "namespace": Text(
            pattern_check=_dns_label, pattern=_DNS_LABEL.pattern,
            description="The team's namespace. The policy can only act on objects in this namespace.",
        ),
        "labels": StringMap(description="Free-form labels, e.g. team: search."),
        "annotations": StringMap(),
    },
    required=("name", "namespace"),
)

_SCALING_RULE = Obj(
    fields={
        "type": Enum(choices=("Pods", "Percent")),
        "value": Integer(
            minimum=1, maximum=INT32_MAX, description="Pods, or percent of the replicas at the period's start."
        ),
        "periodSeconds": Integer(minimum=1, maximum=1800),
    },
    required=("type", "value", "periodSeconds"),
    description="An HPAScalingPolicy.",
)

_SCALING_RULES = Obj(
    fields={
        "stabilizationWindowSeconds": Integer(minimum=0, maximum=3600),
        "selectPolicy": Enum(choices=("Max", "Min", "Disabled")),
        "policies": ListOf(item=_SCALING_RULE, min_items=1, max_items=16),
        "tolerance": Quantity(
            positive=False, maximum=Decimal(1), description="Ratio band around 1 inside which nothing changes (0..1)."
        ),
    },
    description="HPAScalingRules: same fields and defaults as autoscaling/v2.",
)

_SOURCE = Obj(
    fields={
        "preset": Enum(
            choices=tuple(PRESETS),
            what="preset",
            where_listed="`inference-autoscaler schema` lists them",
            description="A named signal; see `inference-autoscaler schema`.",
        ),
        "query": Text(
            description="A PromQL template with {{namespace}}, {{target}} and {{selector}} placeholders "
            "(or ${namespace} / <<namespace>>, which survive Helm templating)."
        ),
        "matchLabels": StringMap(description="Extra label matchers that select the target's series."),
    },
)

_TARGET_VALUE = Obj(
    fields={
        "type": Enum(choices=("AverageValue", "Value", "Utilization")),
        "averageValue": Quantity(description="Per replica: the value is a total over the target's pods."),
        "value": Quantity(description="For the whole target: the ratio multiplies the ready replicas."),
        "averageUtilization": Integer(minimum=1, maximum=100, description="Percent, averaged over the target's GPUs."),
    },
    required=("type",),
)

_METRIC = Obj(
    fields={
        "name": Text(pattern_check=_metric_name, pattern=_METRIC_NAME.pattern),
        "source": _SOURCE,
        "target": _TARGET_VALUE,
    },
    required=("name", "source", "target"),
)

_SPEC = Obj(
    fields={
        "target": Obj(
            fields={
                "apiVersion": Text(
                    pattern_check=_api_version,
                    pattern=_API_VERSION.pattern,
                    description="e.g. apps/v1 or serving.kserve.io/v1beta1",
                ),
                "kind": Text(
                    pattern_check=_kind, pattern=_KIND.pattern,
                    description="Deployment, StatefulSet, InferenceService, ... (needs a scale subresource)",
                ),
                "name": Text(pattern_check=_dns_subdomain, pattern=_DNS_SUBDOMAIN.pattern),
            },
            required=("apiVersion", "kind", "name"),
            forbidden={
                "namespace": "a policy can only target objects in its own metadata.namespace; "
                "remove spec.target.namespace",
            },
        ),
        "minReplicas": Integer(minimum=0, maximum=INT32_MAX),
        "maxReplicas": Integer(minimum=1, maximum=INT32_MAX),
        "mode": Enum(choices=("patch", "external", "shadow")),
        "intervalSeconds": Integer(minimum=1, maximum=3600),
        "metrics": ListOf(item=_METRIC, min_items=1, max_items=64),
        "slo": Obj(
            fields={
                "objective": Enum(
                    choices=("ttft", "e2e", "queue"),
                    description="The latency bounded: time to first token, end-to-end, or queue wait.",
                ),
                "percentile": Number(minimum=50, maximum=99.9, description="e.g. 95 for p95."),
                "seconds": Number(exclusive_minimum=0, maximum=3600, description="The bound on that percentile."),
                "engine": Enum(
                    choices=("vllm", "sglang"),
                    description="The model server: picks the running, waiting and latency presets (default vllm).",
                ),
                "signal": Enum(
                    choices=tuple(name for name, p in PRESETS.items() if p.quantile is not None),
                    what="latency preset",
                    where_listed="`inference-autoscaler schema` lists them",
                    description="The latency preset the objective is read from (default: the engine's).",
                ),
                "concurrencyPerReplica": Number(
                    exclusive_minimum=0,
                    maximum=100000,
                    description="A prior: requests in flight one replica serves within the objective. Learned.",
                ),
                "forecastQuantile": Number(
                    minimum=0.5, maximum=0.999, description="Upper quantile of the demand forecast (default 0.9)."
                ),
                "seasonality": ListOf(
                    item=Enum(choices=("daily", "weekly")), max_items=2, description="Seasonal periods."
                ),
                "historyDays": Number(exclusive_minimum=0, maximum=60),
            },
            required=("objective", "percentile", "seconds"),
            description="A latency objective: replicas are sized from demand and a learned per-replica capacity.",
        ),
        "behavior": Obj(fields={"scaleUp": _SCALING_RULES, "scaleDown": _SCALING_RULES}),
        "coldStart": Obj(
            fields={
                "loadTimeSeconds": Number(
                    exclusive_minimum=0, maximum=7200, description="Override the measured pod creation -> Ready time."
                ),
                "schedulingDelaySeconds": Number(
                    minimum=0, maximum=3600, description="Added to an overridden load time."
                ),
                "loadTimeQuantile": Number(
                    exclusive_minimum=0, maximum=1, description="High quantile of measured load times (default 0.9)."
                ),
            },
            description="How long a new replica takes to serve: sets the forecast horizon.",
        ),
        "predictive": Obj(
            fields={
                "enabled": Boolean(),
                "metric": Text(description="A metric of spec.metrics with an AverageValue target (its capacity)."),
                "quantile": Number(minimum=0.5, maximum=0.999, description="Upper quantile kept (default 0.95)."),
                "seasonality": ListOf(
                    item=Enum(choices=("daily", "weekly")), max_items=2, description="Seasonal periods."
                ),
                "historyDays": Number(exclusive_minimum=0, maximum=60),
            },
            required=("metric",),
            description="Forecast demand one load time ahead and keep capacity for it.",
        ),
        "warmPool": Obj(
            fields={
                "minSpare": Integer(
                    minimum=0, maximum=INT32_MAX, description="Replicas always kept on top of the forecast."
                ),
                "maxSpare": Integer(
                    minimum=0, maximum=INT32_MAX, description="Cap on predictive headroom above the reactive proposal."
                ),
                "placeholder": Obj(
                    fields={
                        "name": Text(pattern_check=_dns_subdomain, pattern=_DNS_SUBDOMAIN.pattern),
                        "podsPerReplica": Integer(minimum=1, maximum=1000),
                    },
                    required=("name",),
                    description="A Deployment of low-priority pause pods holding GPU nodes (balloon pattern).",
                ),
            },
        ),
        "wake": Obj(
            fields={"metric": Text(description="A metric of spec.metrics that exists at zero replicas.")},
            required=("metric",),
            description="Scale to zero: required with minReplicas 0.",
        ),
        "fallback": Obj(
            fields={
                "failureThreshold": Integer(minimum=0, maximum=10000),
                "behavior": Enum(
                    choices=("hold", "static", "currentReplicasIfHigher", "currentReplicasIfLower", "currentReplicas"),
                    description="Default static when replicas is given (as KEDA), else hold; KEDA's "
                    "currentReplicas is hold.",
                ),
                "replicas": Integer(minimum=0, maximum=INT32_MAX),
            },
        ),
    },
    required=("target", "maxReplicas"),
    forbidden={  # KEDA's ScaledObject names, pointed to ours (`inference-autoscaler convert keda` converts)
        "pollingInterval": "KEDA's pollingInterval is spec.intervalSeconds here",
        "cooldownPeriod": "KEDA's cooldownPeriod (before the last step to zero) has no twin here: "
        "spec.behavior.scaleDown.stabilizationWindowSeconds holds every step down",
        "minReplicaCount": "KEDA's minReplicaCount is spec.minReplicas here",
        "maxReplicaCount": "KEDA's maxReplicaCount is spec.maxReplicas here",
        "scaleTargetRef": "KEDA's scaleTargetRef is spec.target here",
        "triggers": "KEDA's triggers are spec.metrics here (a prometheus trigger: source.query and an "
        "AverageValue target); inference-autoscaler convert keda converts a ScaledObject",
        "advanced": "KEDA's advanced.horizontalPodAutoscalerConfig.behavior is spec.behavior here",
        "idleReplicaCount": "no idle count here: minReplicas 0 with spec.wake scales to zero",
    },
)

POLICY_DOCUMENT = Obj(
    fields={
        "apiVersion": Enum(choices=(API_VERSION,)),
        "kind": Enum(choices=("ScalingPolicy",)),
        "metadata": _METADATA,
        "spec": _SPEC,
    },
    required=("apiVersion", "kind", "metadata", "spec"),
    description="A team's scaling policy for one target.",
)

DEFAULTS_DOCUMENT = Obj(
    fields={
        "apiVersion": Enum(choices=(API_VERSION,)),
        "kind": Enum(choices=("PolicyDefaults",)),
        "metadata": Obj(
            fields={
                "name": Text(pattern_check=_dns_subdomain, pattern=_DNS_SUBDOMAIN.pattern),
                "namespace": Text(pattern_check=_dns_label, pattern=_DNS_LABEL.pattern),
                "labels": StringMap(),
                "annotations": StringMap(),
            },
            required=("name",),
        ),
        "spec": _SPEC.optional(),
    },
    required=("apiVersion", "kind", "metadata", "spec"),
    description="Defaults layered under the policies in this folder and below (and, with "
    "metadata.namespace, only that namespace's).",
)

KINDS = {"ScalingPolicy": POLICY_DOCUMENT, "PolicyDefaults": DEFAULTS_DOCUMENT}


def document_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for our files, for yaml-language-server and other editors."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://inference-autoscaler.io/schemas/v1alpha1.json",
        "title": "inference-autoscaler policy documents",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}},
                "then": spec.schema(),
            }
            for kind, spec in KINDS.items()
        ],
        "properties": {"kind": {"enum": list(KINDS)}},
        "x-presets": {
            name: {"description": p.description, "unit": p.unit, "aggregation": p.aggregation.value}
            for name, p in PRESETS.items()
        },
    }
