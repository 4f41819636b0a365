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
from autoscaler.policy.schema import NO_VALUE

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


def _int(spec: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"{where}: {key} = {value!r}: must be a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: {key} = {value!r}: must be a whole number") from None


def _mapping(value: Any, where: str, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: {key} must be a mapping, not {type(value).__name__}")
    return value


def convert_scaled_object(
    obj: Mapping[str, Any], where: str, default_namespace: str
) -> tuple[dict[str, Any], list[str]]:
    """One ScaledObject as a ScalingPolicy document, and what could not be carried over."""
    notes: list[str] = []
    meta = _mapping(obj.get("metadata"), where, "metadata")
    spec = _mapping(obj.get("spec"), where, "spec")
    name = str(meta.get("name") or "")
    if not name:
        raise InputError(f"{where}: metadata.name is required")
    namespace = str(meta.get("namespace") or default_namespace)
    ref = _mapping(spec.get("scaleTargetRef"), where, "spec.scaleTargetRef")
    if not ref.get("name"):
        raise InputError(f"{where}: spec.scaleTargetRef.name is required")
    target = {
        "apiVersion": str(ref.get("apiVersion", "apps/v1")),
        "kind": str(ref.get("kind", "Deployment")),
        "name": str(ref["name"]),
    }
    metrics: list[dict[str, Any]] = []
    triggers = spec.get("triggers") or []
    if not isinstance(triggers, list):
        raise InputError(f"{where}: spec.triggers must be a list")
    used: set[str] = set()
    for index, trigger in enumerate(triggers):
        trigger = _mapping(trigger, f"{where}: spec.triggers[{index}]", "the trigger")
        kind = trigger.get("type")
        at = f"{where}: spec.triggers[{index}]"
        if kind != "prometheus":
            notes.append(f"{at}: type {kind} is not mapped (only prometheus triggers are)")
            continue
        data = _mapping(trigger.get("metadata"), f"{where}: spec.triggers[{index}]", "metadata")
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
        metric = _metric_name(trigger, index)
        metric = metric if metric not in used else f"{metric[:55]}-{index}"  # "Queue Depth" and "queue-depth"
        used.add(metric)
        metrics.append({"name": metric, "source": {"query": str(data["query"])}, "target": target_spec})
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
    minimum = _int(spec, "minReplicaCount", 0, f"{where}: spec")
    policy_spec: dict[str, Any] = {
        "target": target,
        "minReplicas": minimum,
        "maxReplicas": _int(spec, "maxReplicaCount", 100, f"{where}: spec"),
        "intervalSeconds": _int(spec, "pollingInterval", 30, f"{where}: spec"),
        "metrics": metrics,
    }
    if minimum == 0:
        policy_spec["wake"] = {"metric": metrics[0]["name"]}
        notes.append(
            f"{where}: minReplicaCount 0: wakes on {metrics[0]['name']}; its series must exist at zero "
            "replicas (a gateway's or a queue's, not the pods' own)"
        )
    fallback = _mapping(spec.get("fallback"), where, "spec.fallback")
    if fallback:
        behavior = str(fallback.get("behavior", "static"))
        if behavior not in FALLBACK_BEHAVIORS:
            raise InputError(f"{where}: spec.fallback.behavior = {behavior}: one of {', '.join(FALLBACK_BEHAVIORS)}")
        policy_spec["fallback"] = {
            "failureThreshold": _int(fallback, "failureThreshold", 3, f"{where}: spec.fallback"),
            "behavior": FALLBACK_BEHAVIORS[behavior],
        }
        if "replicas" in fallback and FALLBACK_BEHAVIORS[behavior] != "hold":
            policy_spec["fallback"]["replicas"] = _int(fallback, "replicas", 0, f"{where}: spec.fallback")
    advanced = _mapping(spec.get("advanced"), where, "spec.advanced")
    config = _mapping(
        advanced.get("horizontalPodAutoscalerConfig"), where, "spec.advanced.horizontalPodAutoscalerConfig"
    )
    behavior_spec = config.get("behavior")
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
    if advanced.get("scalingModifiers"):
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
        expanded: list[Any] = []
        for document in documents:  # `kubectl get scaledobjects -o yaml` prints a List
            if isinstance(document, Mapping) and document.get("kind") == "List":
                expanded.extend(document.get("items") or [])
            else:
                expanded.append(document)
        for index, document in enumerate(expanded):
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
    sources: list[str] = []
    for obj, where in _scaled_objects(args.files):
        document, notes = convert_scaled_object(obj, where, args.namespace)
        for note in notes:
            print(note, file=sys.stderr)
        converted.append(document)
        sources.append(where)
    with tempfile.TemporaryDirectory() as scratch:  # what is printed must load as any policy file does
        for i, document in enumerate(converted):
            (Path(scratch) / f"{i:04d}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        errors = load_policies([scratch]).errors
        if errors:  # named by the ScaledObject each came from, in the converted policy's field names
            lines = []
            for error in errors:
                stem = Path(error.file).stem
                source = sources[int(stem)] if stem.isdigit() and int(stem) < len(sources) else error.file
                what = (
                    f"{error.path} = {error.value}: "
                    if error.path and error.value is not NO_VALUE
                    else (f"{error.path}: " if error.path else "")
                )
                lines.append(f"{source}: the converted policy's {what}{error.message}")
            raise InputError("\n".join(lines))
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
