"""The ``ScalingPolicy`` and ``PolicyDefaults`` CustomResourceDefinitions, generated from the schema the
file loader validates with (:mod:`.documents`), so that the API server and the loader cannot disagree
about a field's type, bounds, enum or pattern.

apiextensions accepts only a *structural* OpenAPI v3 schema, which differs from the editors' JSON
Schema (:func:`autoscaler.policy.documents.document_json_schema`) in ways this module takes care of:

* Every node has a ``type``; an ``enum`` is a ``type: string`` node.
* No ``additionalProperties: false`` next to ``properties``: the API server *prunes* unknown fields
  instead (``kubectl`` warns about them with its default server-side field validation). The loader
  still checks what it is given, so an object built by hand (or by a test) with an unknown field is
  reported, as a file would be.
* A quantity (``averageValue: 500m``, ``tolerance``) is ``x-kubernetes-int-or-string`` with
  ``anyOf: [{type: integer}, {type: string}]``, as every Kubernetes ``Quantity`` in a CRD: in an
  object a fractional amount is written as a string (``"0.5"`` or ``"500m"``), a file accepts a bare
  ``0.5`` too. The string pattern refuses a sign: a quantity here is never negative.
* ``exclusiveMinimum`` is OpenAPI 3.0's boolean beside ``minimum``, not JSON Schema 2020's number.
* Nothing is required in a ``ScalingPolicy``'s spec beyond what no ``PolicyDefaults`` can supply (the
  loader checks the merged policy): only ``spec.target``. ``metadata`` is the API's own.

:func:`structural_problems` checks the rules this relies on (a test runs it on the generated CRDs), and
``inference-autoscaler schema --crd`` prints them; ``deploy/helm/inference-autoscaler/crds/`` holds the
shipped copies (``scripts/render_manifests.py`` rewrites them; a test fails when they drift).

The status is written by the leader (:mod:`autoscaler.service.status` builds it); its schema is here,
next to the printer columns that read it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from autoscaler.core.policy import API_GROUP
from autoscaler.policy.documents import DEFAULTS_DOCUMENT, POLICY_DOCUMENT
from autoscaler.policy.schema import (
    MAX_TEXT_CHARS,
    Boolean,
    Enum,
    Field,
    Integer,
    ListOf,
    Number,
    Obj,
    Quantity,
    StringMap,
    Text,
)

__all__ = [
    "CONDITION_TYPES",
    "CRD_FILES",
    "VERSION",
    "crd_documents",
    "crd_yaml",
    "openapi_schema",
    "policy_defaults_crd",
    "scaling_policy_crd",
    "structural_problems",
]

VERSION = "v1alpha1"
CONDITION_TYPES = ("Ready", "Active", "Fallback", "Paused")
CATEGORIES = ["inference-autoscaler"]
CRD_FILES = {
    "scalingpolicies": f"scalingpolicies.{API_GROUP}.yaml",
    "policydefaults": f"policydefaults.{API_GROUP}.yaml",
}
"""The file each CRD is shipped in (``deploy/helm/inference-autoscaler/crds/``), by plural."""

# A quantity as a string, never negative (the loader's bound); RE2 (Go) syntax, as the API server uses.
_QUANTITY_PATTERN = r"^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$"
_QUANTITY_CHARS = 64


# ------------------------------------------------------------------------------ Field -> OpenAPI v3


def openapi_schema(spec: Field) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one field of the policy format (see the module docstring)."""
    schema = _node(spec)
    if spec.description:
        schema["description"] = spec.description
    return schema


def _node(spec: Field) -> dict[str, Any]:  # one case per kind of field
    if isinstance(spec, Obj):
        out: dict[str, Any] = {"type": "object", "properties": {k: openapi_schema(v) for k, v in spec.fields.items()}}
        if spec.enforce_required and spec.required:
            out["required"] = list(spec.required)
        return out
    if isinstance(spec, Text):
        text: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": spec.max_length}
        if spec.pattern:
            text["pattern"] = spec.pattern
        return text
    if isinstance(spec, Enum):
        return {"type": "string", "enum": list(spec.choices)}
    if isinstance(spec, Boolean):
        return {"type": "boolean"}
    if isinstance(spec, Integer):
        integer: dict[str, Any] = {"type": "integer"}
        if spec.maximum is not None and spec.maximum <= 2**31 - 1 and (spec.minimum or 0) >= -(2**31):
            integer["format"] = "int32"
        if spec.minimum is not None:
            integer["minimum"] = spec.minimum
        if spec.maximum is not None:
            integer["maximum"] = spec.maximum
        return integer
    if isinstance(spec, Number):
        number: dict[str, Any] = {"type": "number"}
        if spec.exclusive_minimum is not None:
            number["minimum"], number["exclusiveMinimum"] = spec.exclusive_minimum, True
        elif spec.minimum is not None:
            number["minimum"] = spec.minimum
        if spec.maximum is not None:
            number["maximum"] = spec.maximum
        return number
    if isinstance(spec, Quantity):
        quantity: dict[str, Any] = {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_PATTERN,
            "maxLength": _QUANTITY_CHARS,
            "minimum": 1 if spec.positive else 0,  # integers; a string's bound is the loader's
        }
        if spec.maximum is not None:
            quantity["maximum"] = int(spec.maximum)
        return quantity
    if isinstance(spec, StringMap):
        return {
            "type": "object",
            "maxProperties": spec.max_entries,
            "additionalProperties": {"type": "string", "maxLength": MAX_TEXT_CHARS},
        }
    if isinstance(spec, ListOf):
        array: dict[str, Any] = {"type": "array", "items": openapi_schema(spec.item), "maxItems": spec.max_items}
        if spec.min_items:
            array["minItems"] = spec.min_items
        return array
    raise TypeError(f"no OpenAPI form for a {type(spec).__name__} field")


def _spec_schema(document: Obj, *, required: tuple[str, ...]) -> dict[str, Any]:
    spec = document.fields["spec"]
    assert isinstance(spec, Obj)
    schema = openapi_schema(spec.optional())
    if required:
        schema["required"] = list(required)
    return schema


# ---------------------------------------------------------------------------------------- status


def _condition() -> dict[str, Any]:
    """metav1.Condition, as ``controller-gen`` writes it for every operator's CRDs."""
    return {
        "type": "object",
        "description": "One aspect of the policy's state (Ready, Active, Fallback, Paused).",
        "required": ["type", "status", "reason", "message", "lastTransitionTime"],
        "properties": {
            "type": {"type": "string", "enum": list(CONDITION_TYPES), "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed (not when the condition was last written).",
            },
            "reason": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1024,
                "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                "description": "CamelCase, for machines: e.g. ScaleUp, Fallback, InvalidSpec, TargetConflict.",
            },
            "message": {"type": "string", "maxLength": 32768},
        },
    }


def _status_schema() -> dict[str, Any]:
    replicas = {"type": "integer", "format": "int32", "minimum": 0}
    return {
        "type": "object",
        "description": "Written by the autoscaler's leader after each tick (only when something changed).",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "The metadata.generation this status describes.",
            },
            "conditions": {
                "type": "array",
                "maxItems": 8,
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "description": "Ready: loaded and its target readable. Active: the last decision came from "
                "metrics (not fallback, hold or unavailable signals). Fallback: the fallback rule is in force. "
                "Paused: writes frozen by the paused annotations.",
            },
            "desiredReplicas": {**replicas, "description": "The last decision's replica count."},
            "currentReplicas": {**replicas, "description": "The target's spec.replicas when it decided."},
            "readyReplicas": {**replicas, "description": "The target's ready pods when it decided."},
            "mode": {"type": "string", "enum": ["patch", "external", "shadow"], "description": "Effective mode."},
            "lastScaleTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the autoscaler last changed the target's replicas.",
            },
            "lastDecision": {
                "type": "object",
                "properties": {
                    "time": {"type": "string", "format": "date-time"},
                    "reason": {"type": "string", "maxLength": 1024},
                    "message": {"type": "string", "maxLength": 4096},
                },
            },
            "capacity": {
                "type": "object",
                "description": "An SLO policy's learned per-replica capacity.",
                "properties": {
                    "perReplica": {"type": "number", "minimum": 0},
                    "basis": {
                        "type": "string",
                        "enum": ["default", "prior", "observed"],
                        "description": "default: nothing seen yet; prior: spec.slo.concurrencyPerReplica; "
                        "observed: learned from saturation.",
                    },
                    "message": {"type": "string", "maxLength": 4096},
                },
            },
            "forecast": {
                "type": "object",
                "description": "The demand forecast the last decision used, when there was one.",
                "properties": {
                    "point": {"type": "number"},
                    "upper": {"type": "number"},
                    "quantile": {"type": "number", "minimum": 0, "maximum": 1},
                    "horizonSeconds": {"type": "number", "minimum": 0},
                    "model": {"type": "string", "maxLength": 253},
                },
            },
        },
    }


# ------------------------------------------------------------------------------------------- CRDs


def _root(spec: dict[str, Any], status: dict[str, Any] | None, description: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    return {"type": "object", "description": description, "required": ["spec"], "properties": properties}


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    status: bool,
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "inference-autoscaler"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "versions": [version],
        },
    }


def _column(name: str, path: str, kind: str = "string", *, description: str = "", priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if description:
        column["description"] = description
    if priority:
        column["priority"] = priority
    return column


def scaling_policy_crd() -> dict[str, Any]:
    """The ``ScalingPolicy`` CRD. Its Reason column is the Active condition's reason: while the policy
    runs that is the last decision's reason (ScaleUp, DesiredWithinRange, Fallback, ...), and when it
    cannot run Active is False with Ready's reason (InvalidSpec, TargetConflict, ...), so one column
    answers "what is it doing, or why not" (Ready's reason alone would say little while all is well)."""
    columns = [
        _column("Target", ".spec.target.name", description="The scaled object (its kind: -o wide)."),
        _column("Kind", ".spec.target.kind", priority=1),
        _column("Min", ".spec.minReplicas", "integer"),
        _column("Max", ".spec.maxReplicas", "integer"),
        _column("Desired", ".status.desiredReplicas", "integer"),
        _column("Current", ".status.currentReplicas", "integer"),
        _column("Mode", ".status.mode", description="The effective mode (defaults included)."),
        _column("Last Scale", ".status.lastScaleTime", "date"),
        _column(
            "Reason",
            '.status.conditions[?(@.type=="Active")].reason',
            description="What the last decision did, or why the policy does not run.",
        ),
        _column("Message", '.status.conditions[?(@.type=="Active")].message', priority=1),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    schema = _root(
        _spec_schema(POLICY_DOCUMENT, required=("target",)),
        _status_schema(),
        POLICY_DOCUMENT.description,
    )
    return _crd(
        kind="ScalingPolicy",
        plural="scalingpolicies",
        short_names=["spol", "sp"],
        schema=schema,
        columns=columns,
        status=True,
    )


def policy_defaults_crd() -> dict[str, Any]:
    """The ``PolicyDefaults`` CRD: a namespace's defaults, layered over the file defaults and under the
    namespace's ScalingPolicies. It has no status: a broken one is reported on the policies it blocks."""
    columns = [
        _column("Mode", ".spec.mode"),
        _column("Min", ".spec.minReplicas", "integer"),
        _column("Max", ".spec.maxReplicas", "integer"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    description = (
        "Defaults for the ScalingPolicies of its namespace: layered over the autoscaler's policy-file "
        "defaults, under each policy."
    )
    schema = _root(_spec_schema(DEFAULTS_DOCUMENT, required=()), None, description)
    return _crd(
        kind="PolicyDefaults",
        plural="policydefaults",
        short_names=["pdef"],
        schema=schema,
        columns=columns,
        status=False,
    )


def crd_documents() -> dict[str, dict[str, Any]]:
    """Both CRDs, by plural."""
    return {"scalingpolicies": scaling_policy_crd(), "policydefaults": policy_defaults_crd()}


def crd_yaml(crd: Mapping[str, Any]) -> str:
    """One CRD as the shipped file holds it (a header saying how to regenerate it, then the YAML)."""
    header = (
        "# GENERATED from autoscaler/policy/documents.py by autoscaler/policy/crd.py. Do not edit: change the\n"
        "# schema, then run .venv/bin/python scripts/render_manifests.py (or: inference-autoscaler schema --crd).\n"
    )
    return header + yaml.safe_dump(dict(crd), sort_keys=False, default_flow_style=False, width=120)


# -------------------------------------------------------------------------------- structural check

_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
_KNOWN = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "maxProperties",
    "minProperties",
    "format",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
    "nullable",
    "default",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "uniqueItems",
    "multipleOf",
    "x-kubernetes-embedded-resource",
}


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    """Where ``schema`` breaks the apiextensions rules this module relies on (empty: none), each as
    ``path: problem``. The rules: a type on every node (unless int-or-string or preserve-unknown-fields);
    ``properties`` and ``additionalProperties`` not together (nor ``additionalProperties: false``); no
    type, description, default, additionalProperties or nullable inside a junctor, except int-or-string's
    own ``anyOf: [{type: integer}, {type: string}]``; ``metadata`` restricted in nothing but name;
    ``exclusiveMinimum`` a boolean; list-map keys required; only OpenAPI keys this module knows."""
    return list(_walk(schema, "openAPIV3Schema", root=True))


def _walk(node: Mapping[str, Any], path: str, *, root: bool = False) -> Iterator[str]:
    unknown = set(node) - _KNOWN
    if unknown:
        yield f"{path}: unknown keys {sorted(unknown)}"
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if "type" not in node and not int_or_string and node.get("x-kubernetes-preserve-unknown-fields") is not True:
        yield f"{path}: no type"
    if int_or_string and node.get("anyOf") not in (None, _INT_OR_STRING):
        yield f"{path}: int-or-string with an anyOf other than [integer, string]"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties together"
    if node.get("additionalProperties") is False:
        yield f"{path}: additionalProperties: false (unknown fields are pruned instead)"
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            yield f"{path}: {key} must be a boolean in OpenAPI v3.0"
    for junctor in _JUNCTORS:
        if junctor not in node or (int_or_string and junctor == "anyOf"):
            continue
        branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
        for index, branch in enumerate(branches):
            for forbidden in _FORBIDDEN_IN_JUNCTORS:
                if forbidden in branch:
                    yield f"{path}.{junctor}[{index}]: {forbidden} inside a junctor"
    if node.get("x-kubernetes-list-type") == "map":
        keys = node.get("x-kubernetes-list-map-keys") or []
        item_required = set(node.get("items", {}).get("required", []))
        if not keys or not set(keys) <= item_required:
            yield f"{path}: list-map keys {keys} must be required fields of the items"
    for name, child in (node.get("properties") or {}).items():
        restricted = set(child) - {"type", "properties"} | set(child.get("properties") or {}) - {"name", "generateName"}
        if root and name == "metadata" and restricted:
            yield f"{path}.properties.metadata: only name and generateName may be restricted, not {sorted(restricted)}"
        yield from _walk(child, f"{path}.properties.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.additionalProperties")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}.items")
