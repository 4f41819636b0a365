"""PromQL text built from policies and presets, with every substituted value escaped.

Two builders:

* :func:`fleet_query`: one query per (preset, window) for ALL targets that use the preset. It returns
  one series per pod (per GPU for DCGM, per bucket for histograms) grouped by ``namespace`` and
  ``pod``, restricted to the namespaces of the policies that use it, plus the newest raw-sample
  timestamp per pod (marked ``signal_field="ts"``) for staleness and, for ratios, the denominators
  (``signal_field="den"``). Its size depends on the namespaces, never on the number of targets.
  Series exported with ``exported_namespace``/``exported_pod`` (a scrape with ``honor_labels: false``)
  are renamed to ``namespace``/``pod`` with ``label_replace`` so both forms group alike.
  With ``pods=`` it reads only those pods (the bounded per-pod read behind :func:`owner_query`).
* :func:`owner_query`: the same read for a HISTOGRAM preset, with the buckets summed per owner inside
  Prometheus (one series per owner and bucket instead of one per pod and bucket), plus one series per pod
  (its ``+Inf`` bucket rate, marked ``signal_field="pods"``) and the per-pod timestamps, so that coverage
  is still judged pod by pod (:mod:`autoscaler.signals.owners`).
* :func:`render_custom`: a team's ``query:`` template with ``{{namespace}}``, ``{{target}}`` and
  ``{{selector}}`` (or ``${...}`` / ``<<...>>``, which survive Helm's templating when a team ships its
  policy in its own chart). Placeholders inside a string literal are escaped for that literal; outside one,
  ``{{namespace}}``/``{{target}}`` become quoted literals and ``{{selector}}`` a matcher list (it must sit
  inside ``{...}``). Then **every** vector selector in the result gets ``namespace="<own namespace>"``
  added, so the query can only ever see its own namespace, whatever it says: matchers are ANDed, so
  an added matcher can only narrow. This needs a PromQL tokenizer (below), not a regex over the text.

:func:`target_expr` picks, for one signal of one target, the per-target PromQL: the preset's
:func:`target_query` or the team's rendered template. Range reads (the forecast warm start, backtests)
use it, so that history is read exactly as one target's signal is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.errors import PolicyError
from autoscaler.presets import PRESETS, Aggregation, Preset, SignalKind
from autoscaler.signals.targets import OWNER_STEM, pod_pattern, re2_escape

__all__ = [
    "FIELD_LABEL",
    "OWNER_LABEL",
    "PromQLTemplateError",
    "fleet_query",
    "inject_namespace",
    "owner_query",
    "quote",
    "render_custom",
    "target_expr",
    "target_query",
]

FIELD_LABEL = "signal_field"
"""Marks the timestamp (``ts``), denominator (``den``) and per-pod (``pods``) series in a fleet query's answer."""

OWNER_LABEL = "autoscaler_owner"
"""The owner stem (:data:`~autoscaler.signals.targets.OWNER_STEM`) an :func:`owner_query` groups by."""

INF_BOUND = "[+]?(?i:inf|infinity)"
"""RE2 for the ``le`` of the ``+Inf`` bucket, in every spelling Go's ``ParseFloat`` reads as +infinity."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class PromQLTemplateError(PolicyError):
    """A custom ``query:`` template cannot be rendered safely: the policy is wrong."""


def quote(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly ``value``."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _check_label_name(name: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise PromQLTemplateError(f"{name!r} is not a valid Prometheus label name")
    return name


def _in(label: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{label}={quote(values[0])}"
    return f"{label}=~{quote('|'.join(re2_escape(v) for v in sorted(values)))}"


def _relabel_exported(expr: str) -> str:
    inner = f'label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)")'
    return f'label_replace({inner}, "pod", "$1", "exported_pod", "(.+)")'


def _forms(
    preset: Preset, namespaces: Sequence[str], extra: str = "", pods: Sequence[str] | None = None
) -> list[tuple[str, bool]]:
    """The matcher blocks for each label form: ``(sel, exported)``; every pod, or only ``pods``."""
    pod, exported_pod = ('pod!=""', 'exported_pod!=""')
    if pods is not None:
        pod, exported_pod = _in("pod", pods), _in("exported_pod", pods)
    forms = [("{" + _in("namespace", namespaces) + "," + pod + extra + "}", False)]
    if preset.exported_labels:
        forms.append(("{" + _in("exported_namespace", namespaces) + "," + exported_pod + extra + "}", True))
    return forms


def _render(template: str, sel: str, window: str) -> str:
    return template.replace("{sel}", sel).replace("{window}", window)


def _union(parts: Iterable[str]) -> str:
    return " or ".join(parts)


def _per_pod(forms: Sequence[tuple[str, bool]], window: str) -> Callable[[Sequence[str], str, str], str]:
    """``per_pod(templates, how, grouping)``: each template under each label form, aggregated ``how by
    (grouping)``, the results united with ``or`` (the first template a pod has wins, label set by label set)."""

    def per_pod(templates: Sequence[str], how: str, grouping: str) -> str:
        return _union(
            f"{how} by ({grouping}) ({_relabel_exported(body) if exported else body})"
            for template in templates
            for sel, exported in forms
            for body in [_render(template, sel, window)]
        )

    return per_pod


def _extra_labels(group_labels: Iterable[str]) -> list[str]:
    return [_check_label_name(label) for label in sorted(set(group_labels)) if label not in ("namespace", "pod")]


def _stamps(preset: Preset, forms: Sequence[tuple[str, bool]], window: str) -> str:
    stamps = tuple(f"timestamp({template})" for template in preset.freshness)
    return f'label_replace({_per_pod(forms, window)(stamps, "max", "namespace, pod")}, "{FIELD_LABEL}", "ts", "", "")'


def fleet_query(
    preset: Preset,
    *,
    namespaces: Iterable[str],
    window: str,
    group_labels: Iterable[str] = (),
    pods: Iterable[str] | None = None,
) -> str:
    """The one query that reads ``preset`` for every target in ``namespaces`` (see the module doc); with
    ``pods``, only for the pods of those names."""
    spaces = sorted(set(namespaces))
    if not spaces:
        raise ValueError("fleet_query needs at least one namespace")
    names = None if pods is None else sorted(set(pods))
    if names is not None and not names:
        raise ValueError("fleet_query with pods= needs at least one pod")
    by = ["namespace", "pod", *preset.per_series, *_extra_labels(group_labels)]
    if preset.kind is SignalKind.HISTOGRAM:
        by.append("le")
    group = ", ".join(dict.fromkeys(by))
    agg = "avg" if preset.aggregation is Aggregation.AVERAGE and preset.kind is SignalKind.GAUGE else "sum"
    forms = _forms(preset, spaces, pods=names)
    per_pod = _per_pod(forms, window)
    parts = [per_pod(preset.templates, agg, group)]
    if preset.kind is SignalKind.RATIO:
        parts.append(f'label_replace({per_pod(preset.denominators, "sum", group)}, "{FIELD_LABEL}", "den", "", "")')
    parts.append(_stamps(preset, forms, window))
    return _union(f"({part})" for part in parts)


def owner_query(
    preset: Preset, *, namespaces: Iterable[str], window: str, group_labels: Iterable[str] = ()
) -> str:
    """The read of a HISTOGRAM preset for every target in ``namespaces``, buckets summed per owner.

    Three parts, united with ``or`` so that Prometheus evaluates them on one snapshot of its data:

    * per pod, the rate of its ``+Inf`` bucket, with the pod's owner stem in :data:`OWNER_LABEL`
      (``signal_field="pods"``): which pods have buckets, and whether that bucket is usable;
    * per (namespace, owner, ``group_labels``, ``le``), the bucket rates summed over exactly those pods:
      the per-pod rates joined to the pods above (``* on (namespace, pod) group_left``, times 1, exact),
      so a pod without a ``+Inf`` bucket is in no sum;
    * per pod, the newest ``_count`` timestamp (``signal_field="ts"``), as in :func:`fleet_query`.

    The per-pod rates are the ones :func:`fleet_query` returns (the first template a pod has, per bucket);
    Prometheus reads each bucket series once, and answers with one series per owner and bucket instead of
    one per pod and bucket.
    """
    if preset.kind is not SignalKind.HISTOGRAM:
        raise ValueError(f"owner_query reads histograms; {preset.name} is a {preset.kind.value}")
    spaces = sorted(set(namespaces))
    if not spaces:
        raise ValueError("owner_query needs at least one namespace")
    extra = _extra_labels(group_labels)
    if OWNER_LABEL in extra or FIELD_LABEL in extra:
        raise PromQLTemplateError(f"matchLabels cannot name {OWNER_LABEL!r} or {FIELD_LABEL!r}: the query sets them")
    forms = _forms(preset, spaces)
    inf = _per_pod(_forms(preset, spaces, extra=f",le=~{quote(INF_BOUND)}"), window)(
        preset.templates, "sum", "namespace, pod"
    )
    owned = f'label_replace({inf}, "{OWNER_LABEL}", "$1$2$3", "pod", {quote(OWNER_STEM)})'
    if len(preset.templates) * len(forms) == 1:
        rates = _render(preset.templates[0], forms[0][0], window)  # one series set: no per-pod "or" to resolve
    else:
        rates = _per_pod(forms, window)(preset.templates, "sum", ", ".join(["namespace", "pod", *extra, "le"]))
    to_owner = f"group by (namespace, pod, {OWNER_LABEL}) ({owned})"  # 1 per pod: the join multiplies by 1
    joined = f"({rates}) * on (namespace, pod) group_left ({OWNER_LABEL}) {to_owner}"
    sums = f"sum by ({', '.join(['namespace', OWNER_LABEL, *extra, 'le'])}) ({joined})"
    pods = f'label_replace({owned}, "{FIELD_LABEL}", "pods", "", "")'
    return _union(f"({part})" for part in (sums, pods, _stamps(preset, forms, window)))


def target_query(preset: Preset, *, policy: ScalingPolicy, spec: MetricSpec, window: str) -> str:
    """The classic one-query-per-target PromQL for ``preset``: the baseline the fleet query replaces.

    Used for range reads (through :func:`target_expr`), by the benchmark, and by tests that check the
    fleet aggregation against Prometheus's own.
    """
    labels = "".join(f",{_check_label_name(k)}={quote(v)}" for k, v in sorted(spec.source.match_labels.items()))
    pods = quote(pod_pattern(policy.target))
    forms = [("{namespace=" + quote(policy.namespace) + ",pod=~" + pods + labels + "}", False)]
    if preset.exported_labels:
        forms.append(("{exported_namespace=" + quote(policy.namespace) + ",exported_pod=~" + pods + labels + "}", True))

    def union(templates: Sequence[str], how: str, by: str) -> str:
        return _union(
            f"{how} by ({by}) ({_relabel_exported(body) if exported else body})"
            for template in templates
            for sel, exported in forms
            for body in [_render(template, sel, window)]
        )

    per = ", ".join(["namespace", "pod", *preset.per_series])
    if preset.kind is SignalKind.HISTOGRAM:
        q = preset.quantile if preset.quantile is not None else 0.95
        return f"histogram_quantile({q:g}, sum by (le) ({union(preset.templates, 'sum', per + ', le')}))"
    if preset.kind is SignalKind.RATIO:
        num = union(preset.templates, "sum", per)
        den = union(preset.denominators, "sum", per)
        return f"(sum({num}) / sum({den})) * {preset.scale!r}"
    inner = union(preset.templates, "avg" if preset.aggregation is Aggregation.AVERAGE else "sum", per)
    outer = "avg" if preset.aggregation is Aggregation.AVERAGE else "sum"
    return f"{outer}({inner}) * {preset.scale!r}"


def target_expr(policy: ScalingPolicy, spec: MetricSpec, *, window: str) -> str:
    """The per-target PromQL for one of ``policy``'s signals: its preset's :func:`target_query`, or its
    own ``query:`` template rendered for the target (namespace-confined, like every custom query)."""
    if spec.source.preset is not None:
        return target_query(PRESETS[spec.source.preset], policy=policy, spec=spec, window=window)
    assert spec.source.query is not None, "the loader gives every signal a preset or a query"
    return render_custom(spec.source.query, policy=policy, match_labels=spec.source.match_labels)


# --- custom templates -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+
      | (?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>==|!=|>=|<=|=~|!~|[{}()\[\],@:=<>+\-*/%^])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "atan2", "inf", "nan",
})
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
})


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise PromQLTemplateError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def inject_namespace(expr: str, namespace: str) -> str:
    """``expr`` with ``namespace="<namespace>"`` added to every vector selector in it."""
    matcher = f"namespace={quote(namespace)}"
    tokens = _tokenize(expr)
    significant = [i for i, (kind, _) in enumerate(tokens) if kind != "ws"]
    nxt = {a: b for a, b in zip(significant, [*significant[1:], -1], strict=True)}
    prev = {b: a for a, b in zip([-1, *significant[:-1]], significant, strict=True)}

    def text(i: int) -> str:
        return tokens[i][1] if i >= 0 else ""

    out: list[str] = []
    i = 0
    label_list_depth = 0  # inside by(...)/on(...)/group_left(...): identifiers are label names
    while i < len(tokens):
        kind, tok = tokens[i]
        if kind == "punct" and tok == "{":
            # A matcher block: of the preceding metric name, or a bare selector. Copy it through.
            close = next((j for j in range(i + 1, len(tokens)) if tokens[j] == ("punct", "}")), None)
            if close is None:
                raise PromQLTemplateError("unclosed '{' in query")
            empty = nxt[i] == close
            out.append("{" + matcher + ("" if empty else ","))
            out.extend(t for _, t in tokens[i + 1 : close + 1])
            i = close + 1
            continue
        if kind == "punct" and tok == "[":
            # A range or subquery ``[5m:1m]``: durations only, copied through (``:1m`` is not a name).
            close = next((j for j in range(i + 1, len(tokens)) if tokens[j] == ("punct", "]")), None)
            if close is None:
                raise PromQLTemplateError("unclosed '[' in query")
            out.extend(t for _, t in tokens[i : close + 1])
            i = close + 1
            continue
        if kind == "punct" and tok == "(" and text(prev[i]).lower() in _LABEL_LISTS:
            label_list_depth = 1
        elif kind == "punct" and tok == ")" and label_list_depth:
            label_list_depth = 0
        elif kind == "ident" and not label_list_depth:
            follower = text(nxt[i])
            lowered = tok.lower()
            is_selector = not (
                lowered in _KEYWORDS
                or follower == "("
                or (lowered in _AGGREGATIONS and follower.lower() in ("by", "without"))
            )
            if is_selector and follower != "{":
                out.append(tok + "{" + matcher + "}")
                i += 1
                continue
        out.append(tok)
        i += 1
    return "".join(out)


# {{namespace}}, and two spellings that survive a Helm chart's own templating (a team may ship its policy
# inside its chart): ${namespace} and <<namespace>> (also <<.Namespace>>). PromQL has no "${" nor "<<".
_PLACEHOLDER_RE = re.compile(
    r"\{\{\s*([a-zA-Z_]+)\s*\}\}|\$\{\s*([a-zA-Z_]+)\s*\}|<<\s*\.?([a-zA-Z_]+)\s*>>"
)


_PLACEHOLDER = _PLACEHOLDER_RE


def _placeholder_name(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g is not None).lower()


def _escape_in_string(value: str, delimiter: str) -> str:
    if delimiter == "`":
        if "`" in value:
            raise PromQLTemplateError(f"{value!r} cannot go inside a `raw` string")
        return value
    return quote(value)[1:-1].replace("'", "\\'") if delimiter == "'" else quote(value)[1:-1]


def render_custom(template: str, *, policy: ScalingPolicy, match_labels: Mapping[str, str] | None = None) -> str:
    """A custom ``query:`` template rendered for ``policy``'s target, confined to its namespace.

    ``{{selector}}`` is the target's pod-name regex plus ``match_labels`` (the metric's ``matchLabels``).
    """
    labels = match_labels or {}
    selector = ",".join(
        [f"pod=~{quote(pod_pattern(policy.target))}"]
        + [f"{_check_label_name(k)}={quote(v)}" for k, v in sorted(labels.items())]
    )
    values = {"namespace": policy.namespace, "target": policy.target.name}
    out: list[str] = []
    pos = 0
    in_string: str | None = None
    while pos < len(template):
        ch = template[pos]
        if in_string is None:
            match = _PLACEHOLDER.match(template, pos)
            if match is not None:
                name = _placeholder_name(match)
                if name == "selector":
                    out.append(selector)
                elif name in values:
                    out.append(quote(values[name]))
                else:
                    raise PromQLTemplateError(
                        f"unknown placeholder {{{{{name}}}}}; use {{{{namespace}}}}, {{{{target}}}} or {{{{selector}}}}"
                    )
                pos = match.end()
                continue
            if ch in "\"'`":
                in_string = ch
            out.append(ch)
            pos += 1
            continue
        match = _PLACEHOLDER.match(template, pos)
        if match is not None:
            name = _placeholder_name(match)
            if name not in values:
                raise PromQLTemplateError(f"{{{{{name}}}}} cannot be used inside a string literal")
            out.append(_escape_in_string(values[name], in_string))
            pos = match.end()
            continue
        if ch == "\\" and in_string != "`" and pos + 1 < len(template):
            out.append(template[pos : pos + 2])
            pos += 2
            continue
        if ch == in_string:
            in_string = None
        out.append(ch)
        pos += 1
    if in_string is not None:
        raise PromQLTemplateError("unterminated string literal in query template")
    return inject_namespace("".join(out), policy.namespace)
