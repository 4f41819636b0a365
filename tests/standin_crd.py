"""What the API stand-in (``kube_standin``) needs to serve CustomResourceDefinitions the apiserver's way.

Kept apart from the stand-in's request handling because it is plain data work with no state: checking a
CRD, the status the apiserver gives it, structural pruning of unknown fields, validation against
``openAPIV3Schema`` (with the ``jsonschema`` library) turned into the apiserver's field errors, the
``meta.k8s.io/v1`` Table built from printer columns (with the small JSONPath subset CRDs use), discovery
entries and the OpenAPI v3 documents kubectl reads to learn that the server validates fields itself.

Caveats: CEL rules (``x-kubernetes-validations``), ``format`` checks, defaulting and list-type/map-type
semantics are not modelled; the error texts follow apiextensions-apiserver 1.32 for the keywords listed
in ``_convert``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jsonschema

if TYPE_CHECKING:
    from kube_standin import ResourceType

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class FieldError:
    """One field error as apimachinery's ``field.Error`` prints it: ``<field>: <body>``."""

    reason: str  # FieldValueInvalid, FieldValueRequired, ...
    field: str
    body: str  # "Invalid value: -1: spec.x in body should be ..."

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


# ---------------------------------------------------------------------------- versions and discovery


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key for Kubernetes versions, highest priority first: GA, then beta, then alpha (higher
    numbers first), then anything else alphabetically - the order discovery prefers them in."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m[2]]
    return (stage, -int(m[1]), -int(m[3] or 0), version)


def discovery_entries(rtype: ResourceType) -> list[dict[str, Any]]:
    """The APIResource entries one type contributes to ``/apis/<group>/<version>``."""
    main: dict[str, Any] = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": ALL_VERBS,
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    entries = [main]
    if rtype.status_subresource:
        entries.append(
            {
                "name": f"{rtype.plural}/status",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if rtype.scale_spec:
        entries.append(
            {
                "name": f"{rtype.plural}/scale",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }
        )
    return entries


# ---------------------------------------------------------------------------- CRDs


def check_crd(crd: dict[str, Any]) -> list[FieldError]:
    """The checks of apiextensions' CRD validation that a typo in a test's CRD would hit."""
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, name = spec.get("group", ""), names.get("plural", ""), crd["metadata"].get("name", "")
    if name != f"{plural}.{group}":
        errors.append(
            FieldError("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    for field, value in (("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", names.get("kind"))):
        if not value:
            errors.append(FieldError("FieldValueRequired", field, "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(
            FieldError(
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        errors.append(FieldError("FieldValueInvalid", "spec.versions", "Invalid value: null: must have exactly one version marked as storage version"))
    elif sum(bool(v.get("storage")) for v in versions) != 1:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "spec.versions",
                f"Invalid value: {json.dumps(versions)}: must have exactly one version marked as storage version",
            )
        )
    for i, version in enumerate(versions):
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            errors.append(FieldError("FieldValueRequired", f"spec.versions[{i}].schema.openAPIV3Schema", "Required value: schemas are required"))
    return errors


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    """The status the apiserver's naming and establishing controllers give an accepted CRD."""
    names = dict((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ],
        "storedVersions": [v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")],
    }


# ---------------------------------------------------------------------------- pruning


def prune(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Drop, in place, every field the structural schema does not declare; return their paths
    (``spec.foo``, ``spec.items[0].bar``). ``apiVersion``, ``kind`` and ``metadata`` always stay."""
    unknown: list[str] = []
    props = schema.get("properties") or {}
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key in props:
            _prune_value(obj[key], props[key], key, unknown)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            del obj[key]
            unknown.append(key)
    return sorted(unknown)  # the apiserver sorts them too


def _prune_value(value: Any, schema: dict[str, Any], path: str, unknown: list[str]) -> None:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune_value(item, schema["items"], f"{path}[{i}]", unknown)
        return
    if not isinstance(value, dict) or schema.get("x-kubernetes-int-or-string"):
        return
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    for key in list(value):
        child = f"{path}.{key}"
        if props is not None and key in props:
            _prune_value(value[key], props[key], child, unknown)
        elif isinstance(extra, dict):
            _prune_value(value[key], extra, child, unknown)
        elif preserve or extra is True or (embedded and key in ("apiVersion", "kind", "metadata")):
            continue
        else:
            del value[key]
            unknown.append(child)


# ---------------------------------------------------------------------------- validation


def schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[FieldError]:
    """``obj`` against an ``openAPIV3Schema``: the apiserver's field errors, in field order."""
    body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    root = dict(schema)
    root["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k not in ("metadata", "apiVersion", "kind")}
    validator = jsonschema.Draft4Validator(_to_jsonschema(root))
    errors = [e for err in validator.iter_errors(body) for e in _convert(err)]
    return sorted(errors, key=lambda e: e.field)


def _to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 schema (Kubernetes' dialect) -> a draft-4 JSON schema with the same meaning."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_jsonschema(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "format", "default", "example", "externalDocs", "title"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _value(value: Any) -> str:
    """A bad value as field.Error prints it: strings quoted, numbers bare, null as null."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(_json_type(value))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _convert(err: jsonschema.ValidationError) -> list[FieldError]:
    """One jsonschema error -> the apiserver's field errors (apiextensions' ConvertToFieldErrors)."""
    path, value, limit, keyword = _path(err.absolute_path), err.instance, err.validator_value, err.validator
    where = path or "body"
    if keyword == "required":
        missing = re.match(r"'(.*)' is a required property", err.message)
        name = missing[1] if missing else str(limit)
        return [FieldError("FieldValueRequired", f"{path}.{name}" if path else name, "Required value")]
    if keyword == "type" or (keyword == "anyOf" and not isinstance(value, int | str)):
        want = ",".join(limit) if isinstance(limit, list) else str(limit)
        if isinstance(limit, list):
            want = next((t for t in limit if t != "null"), want)
        actual = _json_type(value)
        return [FieldError("FieldValueTypeInvalid", where, f'Invalid value: "{actual}": {where} in body must be of type {want}: "{actual}"')]
    if keyword == "enum":
        allowed = ", ".join(_value(v) for v in limit if v is not None)
        return [FieldError("FieldValueNotSupported", where, f"Unsupported value: {_value(value)}: supported values: {allowed}")]
    if keyword == "maxLength":
        return [FieldError("FieldValueTooLong", where, f"Too long: may not be more than {limit} bytes")]
    if keyword == "maxItems":
        return [FieldError("FieldValueTooMany", where, f"Too many: {len(value)}: must have at most {limit} items")]
    exclusive = bool(err.schema.get("exclusiveMinimum" if keyword == "minimum" else "exclusiveMaximum"))
    details = {
        "minimum": f"should be greater than {'' if exclusive else 'or equal to '}{limit}",
        "maximum": f"should be less than {'' if exclusive else 'or equal to '}{limit}",
        "minLength": f"should be at least {limit} chars long",
        "pattern": f"should match '{limit}'",
        "minItems": f"should have at least {limit} items",
        "multipleOf": f"should be a multiple of {limit}",
        "minProperties": f"should have at least {limit} properties",
        "maxProperties": f"should have at most {limit} properties",
        "uniqueItems": "shouldn't contain duplicates",
    }
    detail = details.get(str(keyword))
    if detail is None:
        return [FieldError("FieldValueInvalid", where, f"Invalid value: {_value(value)}: {err.message}")]
    shown = len(value) if keyword == "minItems" else value
    return [FieldError("FieldValueInvalid", where, f"Invalid value: {_value(shown)}: {where} in body {detail}")]


# ---------------------------------------------------------------------------- JSONPath and tables

_STEP = re.compile(
    r"\.(?P<name>[A-Za-z0-9_\-]+)"
    r"|\[(?P<index>-?\d+|\*)\]"
    r"|\[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=)\s*(?P<quote>[\"'])(?P<fvalue>.*?)(?P=quote)\)\]"
    r"|\[\?\(@\.(?P<fnum>[A-Za-z0-9_.\-]+)\s*(?P<nop>==|!=)\s*(?P<number>-?[\d.]+|true|false)\)\]"
)


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """The values a CRD printer-column JSONPath selects: ``.a.b``, ``.a[0].b``, ``.a[*].b`` and filters
    such as ``.status.conditions[?(@.type=="Ready")].status`` (``{...}`` braces are allowed)."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    current = [obj]
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {expr!r} at {text[pos:]!r}")
        pos = m.end()
        current = [out for value in current for out in _step(value, m)]
    return current


def _step(value: Any, m: re.Match[str]) -> list[Any]:
    if m["name"] is not None:
        return [value[m["name"]]] if isinstance(value, dict) and m["name"] in value else []
    if m["index"] is not None:
        if not isinstance(value, list):
            return []
        if m["index"] == "*":
            return list(value)
        index = int(m["index"])
        return [value[index]] if -len(value) <= index < len(value) else []
    fpath = m["fpath"] or m["fnum"]
    op = m["op"] or m["nop"]
    want: Any = m["fvalue"] if m["fpath"] else json.loads(m["number"])
    items = value if isinstance(value, list) else []
    out = []
    for item in items:
        found = jsonpath(item, "." + fpath)
        hit = bool(found) and found[0] == want
        if hit == (op == "=="):
            out.append(item)
    return out


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: what kubectl shows in an AGE column."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def _cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    """One cell, typed the way the apiserver's CRD table convertor types it (None when absent or of the
    wrong type)."""
    found = jsonpath(obj, column.get("jsonPath", ""))
    if not found or found[0] is None:
        return None
    value, kind = found[0], column.get("type", "string")
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if kind == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        try:
            then = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "<invalid>"
        return human_duration((datetime.now(UTC) - then).total_seconds())
    return None


def table(
    columns: Sequence[dict[str, Any]], objs: Sequence[dict[str, Any]], meta: dict[str, Any], include_object: str
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table: Name, then the printer columns; each row's object as
    PartialObjectMetadata (``includeObject=Metadata``, the default), whole (``Object``) or absent (``None``)."""
    definitions = [NAME_COLUMN] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in columns
    ]
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *(_cell(c, obj) for c in columns)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": definitions, "rows": rows}


# ---------------------------------------------------------------------------- OpenAPI v3


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_document(types: Sequence[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version: per type, the object path with a PATCH operation
    that declares the ``fieldValidation`` query parameter (what kubectl checks before leaving field
    validation to the server) and the type's schema."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for r in types:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        prefix = f"/{_gv_path(r.group, r.version)}" + ("/namespaces/{namespace}" if r.namespaced else "")
        schema_name = ".".join([*reversed(r.group.split(".")), r.version, r.kind]) if r.group else f"io.k8s.api.core.{r.version}.{r.kind}"
        schema = dict(r.schema or {"type": "object"})
        schema["x-kubernetes-group-version-kind"] = [gvk]
        schemas[schema_name] = schema
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if r.namespaced:
            params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        operation = {
            "operationId": f"patch{r.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            ],
            "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
        }
        paths[f"{prefix}/{r.plural}/{{name}}"] = {
            "get": {
                "operationId": f"read{r.kind}",
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
            },
            "patch": operation,
            "parameters": params,
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-standin"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_root(documents: Iterable[tuple[tuple[str, str], dict[str, Any]]]) -> dict[str, Any]:
    """``/openapi/v3``: each group-version's document URL, with a hash of its content (clients cache by
    URL, so a changed document gets a new one)."""
    paths = {}
    for (group, version), doc in documents:
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        paths[_gv_path(group, version)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}?hash={digest}"}
    return {"paths": paths}
