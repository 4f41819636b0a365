"""Which series belong to a target: the pod names its controller generates, plus label matchers.

By default a target's pods are the series in the policy's namespace whose pod name the target's
controller would generate:

* ``Deployment`` (and Argo ``Rollout``): ``<name>-<pod-template-hash>-<5 chars>``, both suffixes in the
  alphabet Kubernetes uses for generated names (no vowels, no 0/1/3). A long name is cut to 58
  characters before the random suffix, exactly as the API server's name generator does;
* ``StatefulSet``: ``<name>-<ordinal>``; ``LeaderWorkerSet``: ``<name>-<group>`` and ``<name>-<group>-<worker>``;
* KServe ``InferenceService``: its predictor pods, in raw-deployment mode (``<name>-predictor-<hash>-<x>``)
  and in serverless mode (``<name>-predictor[-default]-00001-deployment-<hash>-<x>``);
* any other kind: the Deployment or the StatefulSet shape.

The strict shape is what keeps ``chat`` from claiming the pods of ``chat-llm``. ``match_labels`` then
narrows further by exact label values. The same patterns are offered as RE2 text for custom
``{{selector}}`` templates (without the long-name truncation case).

:data:`OWNER_STEM` is coarser: it maps a pod name to the name its shape suggests (the Deployment shape's
``<name>``, else the StatefulSet shape's ``<name>``, else the pod name itself), so that Prometheus can sum a
histogram's buckets per owner. It is only a grouping key: a group is used for a target only when every pod
in it is one the target claims by :func:`pod_belongs` (see :mod:`autoscaler.signals.owners`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from autoscaler.core.policy import TargetRef

__all__ = ["OWNER_STEM", "labels_match", "owner_stem", "pod_belongs", "pod_pattern", "re2_escape"]

# k8s.io/apimachinery/pkg/util/rand: the alphabet of generated name suffixes and pod-template-hash.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_RS_SUFFIX = f"-{_SAFE}{{1,10}}-{_SAFE}{{5}}"
_GENERATED_NAME_PREFIX_MAX = 58  # names.maxGeneratedNameLength (63) - 5 random characters
_RE2_META = set("\\.+*?()|[]{}^$")

OWNER_STEM = f"(.+){_RS_SUFFIX}|(.+)-[0-9]+|(.+)"
"""RE2 (anchored by PromQL's ``label_replace``) whose groups ``$1$2$3`` give a pod's owner stem: exactly one
group matches (alternatives are tried in order, as Go's and Python's engines both do)."""


def re2_escape(text: str) -> str:
    """Escape ``text`` for an RE2 (and Python ``re``) pattern: only the metacharacters."""
    return "".join(f"\\{c}" if c in _RE2_META else c for c in text)


def pod_pattern(target: TargetRef) -> str:
    """The anchored-by-convention regex (PromQL regexes are fully anchored) of the target's pod names."""
    name = re2_escape(target.name)
    kind = target.kind
    if kind in ("Deployment", "Rollout"):
        return f"{name}{_RS_SUFFIX}"
    if kind == "StatefulSet":
        return f"{name}-[0-9]+"
    if kind == "LeaderWorkerSet":
        return f"{name}-[0-9]+(-[0-9]+)?"
    if kind == "InferenceService":
        return f"{name}-predictor(-default)?(-[0-9]{{5}}-deployment)?{_RS_SUFFIX}"
    return f"({name}{_RS_SUFFIX}|{name}-[0-9]+)"


@lru_cache(maxsize=65536)
def _compiled(kind: str, name: str) -> re.Pattern[str]:
    return re.compile(pod_pattern(TargetRef("", kind, name)))


def pod_belongs(target: TargetRef, pod: str) -> bool:
    """Whether the controller of ``target`` could have generated the pod name ``pod``."""
    if _compiled(target.kind, target.name).fullmatch(pod):
        return True
    return _truncated_deployment_pod(target, pod)


def _truncated_deployment_pod(target: TargetRef, pod: str) -> bool:
    """A long ReplicaSet name is cut to 58 characters before the 5-character random suffix."""
    if target.kind in ("StatefulSet", "LeaderWorkerSet"):
        return False
    limit = _GENERATED_NAME_PREFIX_MAX
    if len(pod) != limit + 5 or not re.fullmatch(f"{_SAFE}{{5}}", pod[limit:]):
        return False
    base, head = pod[:limit], f"{target.name}-"
    if target.kind == "InferenceService":
        head = f"{target.name}-predictor-"
    if len(head) >= limit:
        return base == head[:limit]
    rest = base.removeprefix(head)
    return rest != base and re.fullmatch(f"({_SAFE}{{0,10}}-?)", rest) is not None


def owner_stem(pod: str) -> str:
    """The owner stem Prometheus computes for ``pod`` with :data:`OWNER_STEM` (for tests and tools)."""
    match = _OWNER_STEM.fullmatch(pod)
    return "".join(group or "" for group in match.groups()) if match else ""


_OWNER_STEM = re.compile(OWNER_STEM)


def labels_match(labels: Mapping[str, str], match_labels: Mapping[str, str]) -> bool:
    """Exact matching of every ``match_labels`` entry (a missing label is the empty string, as in PromQL)."""
    return all(labels.get(key, "") == value for key, value in match_labels.items())
