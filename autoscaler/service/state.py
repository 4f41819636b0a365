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
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any

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


class ConfigMapStateStore(StateStore):
    def __init__(self, client: KubeClient, *, namespace: str, name: str) -> None:
        super().__init__()
        self.client = client
        self.namespace, self.name = namespace, name
        self._rv: str | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    async def load(self) -> dict[str, TargetState]:
        try:
            body = await self.client.request("GET", self.path)
        except KubeNotFound:
            self._rv = None
            return {}
        self._rv = body.get("metadata", {}).get("resourceVersion")
        blob = (body.get("binaryData") or {}).get(KEY)
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
        """Write the states. Every attempt is guarded (only a leader writes): after a conflict with a
        write we did not make, it re-reads and overwrites only while the guard still holds."""
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
                "labels": {"app.kubernetes.io/name": "inference-autoscaler"},
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
                self.saved = dict(states)
                return True
            except (KubeConflict, KubeNotFound):
                # Someone else wrote (a previous leader) or it was deleted: take its version, overwrite.
                try:
                    current = await self.client.request("GET", self.path)
                    self._rv = current.get("metadata", {}).get("resourceVersion")
                except KubeNotFound:
                    self._rv = None
            except KubeError as exc:
                log.warning("state not persisted: %s", exc)
                return False
        return False
