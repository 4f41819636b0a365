"""``inference-autoscaler convert keda FILE...``: KEDA ScaledObjects to ScalingPolicies.

Each ``keda.sh/v1alpha1`` ScaledObject becomes one ScalingPolicy (printed as YAML documents, or written
to ``--out DIR`` as ``<namespace>/<name>.yaml``), and every field that does not carry over is named on
standard error with what to do instead. The result goes through the same loader as any policy file, so
what is printed validates.

How it maps (KEDA's defaults where a field is absent):

* ``scaleTargetRef`` -> ``spec.target`` (kind Deployment, ``apps/v1``); ``minReplicaCount`` (0) and
  ``maxReplicaCount`` (100) -> ``minReplicas``/``maxReplicas``; ``pollingInterval`` (30) ->
  ``intervalSeconds``;
* each ``prometheus`` trigger -> a metric with ``source.query`` (the service confines it to the
  policy's namespace) and the trigger's ``threshold`` as the ``AverageValue`` target (``metricType:
  Value`` -> a ``Value`` target), as the HPA KEDA creates uses them;
* ``minReplicaCount: 0`` (KEDA activates on the query) -> ``minReplicas: 0`` with ``spec.wake`` on the
  first trigger's metric: its series must exist at zero replicas, as KEDA's activation needs too;
* ``fallback`` -> ``fallback`` (KEDA's behavior ``static`` by default; ``currentReplicas`` is ``hold``);
* ``advanced.horizontalPodAutoscalerConfig.behavior`` -> ``spec.behavior`` (the same HPA fields).

Not mapped, and said so: other trigger types, ``cooldownPeriod`` (KEDA applies it only to the last
replica -> 0 step; here the scale-down stabilization window applies to every step),
``activationThreshold``, ``idleReplicaCount``, ``serverAddress``/``authenticationRef`` (the service reads
one Prometheus, set by ``--prometheus``), ``ignoreNullValues`` (a missing value is always "unavailable"
here, never 0), ``initialCooldownPeriod`` and ``scalingModifiers``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from autoscaler.commands.common import Exit
from autoscaler.core.policy import API_VERSION
from autoscaler.errors import InputError

KEDA_API = "keda.sh/v1alpha1"
FALLBACK_BEHAVIORS = {
    "static": "static",
    "currentReplicas": "hold",
    "currentReplicasIfHigher": "currentReplicasIfHigher",
    "currentReplicasIfLower": "currentReplicasIfLower",
}
_METRIC_NAME = re.compile(r"[^a-z0-9_-]+")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert KEDA ScaledObjects to ScalingPolicies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", choices=("keda",), help="what to convert from")
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files holding ScaledObjects")
    parser.add_argument("--out", metavar="DIR", help="write <namespace>/<name>.yaml here instead of printing")
    parser.add_argument("--namespace", default="default", help="for objects without one (default: default)")
    parser.set_defaults(run=run)


def _metric_name(trigger: Mapping[str, Any], index: int) -> str:
    given = str(trigger.get("name") or (trigger.get("metadata") or {}).get("metricName") or f"trigger-{index}")
    name = _METRIC_NAME.sub("-", given.lower()).strip("-_")[:63]
    return name if name and name != "slo" else f"trigger-{index}"


def _number(value: Any, where: str) -> int | float:
    """KEDA writes thresholds as strings ("100"): the number, an int when it is whole."""
    try:
        number = float(str(value))
    except ValueError:
        raise InputError(f"{where} = {value!r}: not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{where} = {value!r}: not a finite number")
    return int(number) if number.is_integer() else number


def convert_scaled_object(
    obj: Mapping[str, Any], where: str, default_namespace: str
) -> tuple[dict[str, Any], list[str]]:
    """One ScaledObject as a ScalingPolicy document, and what could not be carried over."""
    notes: list[str] = []
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name = str(meta.get("name") or "")
    if not name:
        raise InputError(f"{where}: metadata.name is required")
    namespace = str(meta.get("namespace") or default_namespace)
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("name"):
        raise InputError(f"{where}: spec.scaleTargetRef.name is required")
    target = {
        "apiVersion": str(ref.get("apiVersion", "apps/v1")),
        "kind": str(ref.get("kind", "Deployment")),
        "name": str(ref["name"]),
    }
    metrics: list[dict[str, Any]] = []
    for index, trigger in enumerate(spec.get("triggers") or []):
        kind = trigger.get("type")
        at = f"{where}: spec.triggers[{index}]"
        if kind != "prometheus":
            notes.append(f"{at}: type {kind} is not mapped (only prometheus triggers are)")
            continue
        data = trigger.get("metadata") or {}
        if "query" not in data or "threshold" not in data:
            raise InputError(f"{at}.metadata: a prometheus trigger needs query and threshold")
        metric_type = str(trigger.get("metricType", "AverageValue"))
        threshold = _number(data["threshold"], f"{at}.metadata.threshold")
        if metric_type == "Value":
            target_spec = {"type": "Value", "value": threshold}
        elif metric_type == "AverageValue":
            target_spec = {"type": "AverageValue", "averageValue": threshold}
        else:
            notes.append(f"{at}: metricType {metric_type} is not mapped (a Prometheus value has no utilization)")
            continue
        metrics.append(
            {"name": _metric_name(trigger, index), "source": {"query": str(data["query"])}, "target": target_spec}
        )
        for key, why in (
            ("activationThreshold", "activation is the wake metric's proposal being above 0 here"),
            ("serverAddress", "the service reads the one Prometheus given by --prometheus"),
            ("ignoreNullValues", "a missing value is unavailable here, never 0"),
            ("unsafeSsl", "set --ca-file for the Prometheus instead"),
        ):
            if key in data:
                notes.append(f"{at}.metadata.{key}: not mapped ({why})")
        if trigger.get("authenticationRef"):
            notes.append(f"{at}.authenticationRef: not mapped (--bearer-token-file / --basic-auth on the service)")
    if not metrics:
        raise InputError(f"{where}: ScaledObject {namespace}/{name} has no prometheus trigger to convert")
    minimum = int(spec.get("minReplicaCount", 0))
    policy_spec: dict[str, Any] = {
        "target": target,
        "minReplicas": minimum,
        "maxReplicas": int(spec.get("maxReplicaCount", 100)),
        "intervalSeconds": int(spec.get("pollingInterval", 30)),
        "metrics": metrics,
    }
    if minimum == 0:
        policy_spec["wake"] = {"metric": metrics[0]["name"]}
        notes.append(
            f"{where}: minReplicaCount 0: wakes on {metrics[0]['name']}; its series must exist at zero "
            "replicas (a gateway's or a queue's, not the pods' own)"
        )
    fallback = spec.get("fallback")
    if fallback:
        behavior = str(fallback.get("behavior", "static"))
        if behavior not in FALLBACK_BEHAVIORS:
            raise InputError(f"{where}: spec.fallback.behavior = {behavior}: one of {', '.join(FALLBACK_BEHAVIORS)}")
        policy_spec["fallback"] = {
            "failureThreshold": int(fallback.get("failureThreshold", 3)),
            "behavior": FALLBACK_BEHAVIORS[behavior],
        }
        if "replicas" in fallback and FALLBACK_BEHAVIORS[behavior] != "hold":
            policy_spec["fallback"]["replicas"] = int(fallback["replicas"])
    behavior_spec = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior")
    if behavior_spec:
        policy_spec["behavior"] = behavior_spec
    for key, why in (
        (
            "cooldownPeriod",
            "KEDA applies it to the last step to zero only; here behavior.scaleDown's "
            "stabilizationWindowSeconds applies to every step down",
        ),
        ("idleReplicaCount", "no idle count here: minReplicas 0 with spec.wake"),
        ("initialCooldownPeriod", "not mapped"),
    ):
        if key in spec:
            notes.append(f"{where}: spec.{key}: not mapped ({why})")
    if (spec.get("advanced") or {}).get("scalingModifiers"):
        notes.append(
            f"{where}: spec.advanced.scalingModifiers: not mapped (each trigger is its own metric; the "
            "largest proposal wins, as with KEDA's default)"
        )
    document = {
        "apiVersion": API_VERSION,
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": policy_spec,
    }
    return document, notes


def _scaled_objects(paths: list[str]) -> Iterator[tuple[Mapping[str, Any], str]]:
    for given in paths:
        path = Path(given)
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{given}: cannot read: {exc}") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{given}: not YAML: {exc}") from None
        found = False
        for index, document in enumerate(documents):
            if isinstance(document, Mapping) and document.get("kind") == "ScaledObject":
                found = True
                if document.get("apiVersion") != KEDA_API:
                    raise InputError(
                        f"{given}: document {index + 1}: apiVersion {document.get('apiVersion')}: expected {KEDA_API}"
                    )
                yield document, f"{given}: document {index + 1}"
        if not found:
            raise InputError(f"{given}: no ScaledObject in it")


def run(args: argparse.Namespace) -> int:
    from autoscaler.policy import load_policies

    converted: list[dict[str, Any]] = []
    for obj, where in _scaled_objects(args.files):
        document, notes = convert_scaled_object(obj, where, args.namespace)
        for note in notes:
            print(note, file=sys.stderr)
        converted.append(document)
    with tempfile.TemporaryDirectory() as scratch:  # what is printed must load as any policy file does
        for i, document in enumerate(converted):
            (Path(scratch) / f"{i:04d}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        errors = load_policies([scratch]).errors
        if errors:
            raise InputError("the converted policies do not validate:\n" + "\n".join(str(e) for e in errors))
    if args.out:
        for document in converted:
            meta = document["metadata"]
            path = Path(args.out) / meta["namespace"] / f"{meta['name']}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    else:
        print(yaml.safe_dump_all(converted, sort_keys=False), end="")
    return Exit.OK
