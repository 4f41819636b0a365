"""The core's state, persisted so that a restart or a new leader never causes a scale-down burst.

Every policy's :class:`~autoscaler.core.step.TargetState` (recommendations inside the stabilization
windows, scale events inside the policy periods, the failure count, the measured load times; not the
demand history, which is warm-started from Prometheus) is stored in one ConfigMap in the
autoscaler's own namespace, ``<lease name>-state``, as zlib-compressed JSON under ``binaryData``.
Only the leader writes it, once per tick in which some state changed; a replica reads it when it
starts and whenever it becomes leader. A policy whose state is missing starts as the HPA does, by
recording the current replica count as its first recommendation, which blocks scale-down for one
stabilization window: conservative, never a burst. Compressed, a policy's state is ~100-300 bytes, so
one ConfigMap (1 MiB) holds several thousand policies.

Conflicts. A save is a PUT with the ``resourceVersion`` we last read or wrote. A 409 means someone else
wrote since: we read the ConfigMap again and retry only when its content is still what we know (a
write of metadata only); another writer's content is never overwritten unread. The store then refuses
to save until :meth:`ConfigMapStateStore.load` reads it again (``stale``), and the caller re-reads.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.step import TargetState
from autoscaler.service.kube import KubeClient, KubeConflict, KubeError, KubeNotFound

__all__ = ["ConfigMapStateStore", "StateStore", "decode_states", "encode_states"]

log = logging.getLogger("autoscaler.state")

KEY = "states.json.z"
MAX_BYTES = 900 * 1024


def encode_states(states: Mapping[str, TargetState]) -> str:
    raw = json.dumps({key: state.to_json() for key, state in sorted(states.items())}, separators=(",", ":"))
    return base64.b64encode(zlib.compress(raw.encode(), 9)).decode()


def decode_states(blob: str) -> dict[str, TargetState]:
    """The persisted states; an unreadable entry is reported and skipped (that target starts fresh, as
    the HPA does after a restart), and an unreadable blob raises ``ValueError``."""
    try:
        data = json.loads(zlib.decompress(base64.b64decode(blob)))
    except Exception as exc:  # corrupt base64, zlib or JSON: any of them is "unreadable"
        raise ValueError(f"not a persisted state blob: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"persisted states are a {type(data).__name__}, not an object")
    out: dict[str, TargetState] = {}
    for key, value in data.items():
        try:
            if not isinstance(value, dict):
                raise TypeError(f"a {type(value).__name__}, not an object")
            out[str(key)] = TargetState.from_json(value)
        except Exception as exc:  # hostile or corrupt values (inf counts, wrong types): start that one fresh
            log.warning("ignoring unreadable persisted state of %s: %s", key, exc)
    return out


class StateStore:
    """In-memory store (tests, dry runs): the same interface as the ConfigMap store."""

    def __init__(self) -> None:
        self.saved: dict[str, TargetState] = {}

    async def load(self) -> dict[str, TargetState]:
        return dict(self.saved)

    async def save(self, states: Mapping[str, TargetState], *, guard: Callable[[], bool] | None = None) -> bool:
        """Persist; True when written (False: not persisted, and the caller keeps it pending)."""
        if guard is not None and not guard():
            return False
        self.saved = dict(states)
        return True

    def restorable(self, key: str, policy: ScalingPolicy) -> bool:
        """Whether the state last loaded for ``key`` may be applied to ``policy`` (with shards: only
        when it was read from the policy's shard)."""
        return True


class ConfigMapStateStore(StateStore):
    def __init__(
        self, client: KubeClient, *, namespace: str, name: str, labels: Mapping[str, str] | None = None
    ) -> None:
        super().__init__()
        self.client = client
        self.namespace, self.name = namespace, name
        self.labels = {"app.kubernetes.io/name": "inference-autoscaler", **(labels or {})}
        self._rv: str | None = None
        self.blob: str | None = None
        """The content we last read or wrote (None: absent or empty)."""
        self.found_labels: dict[str, str] = {}
        """The labels of the ConfigMap as last read."""
        self.stale = False
        """Another writer's content is there, unread: no save until :meth:`load`."""

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    async def load(self) -> dict[str, TargetState]:
        try:
            body = await self.client.request("GET", self.path)
        except KubeNotFound:
            self._rv, self.blob, self.found_labels, self.stale = None, None, {}, False
            return {}
        meta = body.get("metadata") or {}
        self._rv = meta.get("resourceVersion")
        labels = meta.get("labels")
        self.found_labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        blob = (body.get("binaryData") or {}).get(KEY)
        self.blob, self.stale = blob or None, False
        if not blob:
            return {}
        try:
            return decode_states(blob)
        except (ValueError, zlib.error) as exc:
            log.error(
                "persisted state in ConfigMap %s/%s is unreadable, starting fresh: %s", self.namespace, self.name, exc
            )
            return {}

    async def save(self, states: Mapping[str, TargetState], *, guard: Callable[[], bool] | None = None) -> bool:
        """Write the states. Every attempt is guarded (only a leader writes). After a conflict, it
        retries only if the content is still what we read or wrote (see the module docstring)."""
        if self.stale:
            log.warning("state not persisted: ConfigMap %s/%s must be read again first", self.namespace, self.name)
            return False
        blob = encode_states(states)
        if len(blob) > MAX_BYTES:
            log.error(
                "state of %d policies is %d bytes, over the ConfigMap budget; not persisted", len(states), len(blob)
            )
            return False
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
            },
            "binaryData": {KEY: blob},
        }
        for _ in range(3):
            try:
                if self._rv is None:
                    done = await self.client.request(
                        "POST", f"/api/v1/namespaces/{self.namespace}/configmaps", body=body, guard=guard
                    )
                else:
                    body["metadata"]["resourceVersion"] = self._rv
                    done = await self.client.request("PUT", self.path, body=body, guard=guard)
                self._rv = done.get("metadata", {}).get("resourceVersion")
                self.saved, self.blob = dict(states), blob
                return True
            except (KubeConflict, KubeNotFound):
                if not await self._same_content():
                    return False
            except KubeError as exc:
                log.warning("state not persisted: %s", exc)
                return False
        return False

    async def _same_content(self) -> bool:
        """After a 409 or 404: read the ConfigMap again; True (and its version taken) when it still holds
        what we know, so that the retry overwrites nothing unread. A deleted one is re-created only if
        we knew it empty or absent."""
        try:
            current = await self.client.request("GET", self.path)
        except KubeNotFound:
            current = None
        blob = ((current.get("binaryData") or {}).get(KEY) or None) if current is not None else None
        if blob != self.blob:
            log.error(
                "state not persisted: ConfigMap %s/%s was written by another writer since we read it; "
                "reading it again before any save",
                self.namespace,
                self.name,
            )
            self.stale = True
            return False
        self._rv = (current.get("metadata") or {}).get("resourceVersion") if current is not None else None
        return True
