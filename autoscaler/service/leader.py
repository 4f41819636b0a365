"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics and defaults.

* lease duration 15 s, renew deadline 10 s, retry period 2 s;
* a lease held by someone else counts as held until ``leaseDuration`` has passed *on our clock* since
  we last saw its record change (never trusting the other side's clock);
* the leader renews every retry period; if it cannot renew within the renew deadline it stops being
  leader at once: :meth:`LeaseElector.is_leader` turns False before anyone else can acquire, so a
  write guarded by it never overlaps another leader's;
* on shutdown the leader releases the lease (empty holder, 1 s duration) so a standby takes over
  without waiting for expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from autoscaler.service.kube import KubeClient, KubeConflict, KubeError, KubeNotFound

__all__ = ["LeaseElector", "LeaseSettings"]

log = logging.getLogger("autoscaler.leader")


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str = "inference-autoscaler"
    identity: str = ""
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


def _micro_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        settings: LeaseSettings,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not settings.identity:
            raise ValueError("a leader-election identity is required (e.g. the pod name)")
        self.settings = settings
        self.client = client
        self._wall = wall
        self._mono = monotonic
        self._on_change = on_change
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew: float | None = None
        self._leading = False

    @property
    def path(self) -> str:
        s = self.settings
        return f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}"

    def is_leader(self) -> bool:
        """True only while the last successful renew is within the renew deadline."""
        if not self._leading or self._last_renew is None:
            return False
        if self._mono() - self._last_renew >= self.settings.renew_deadline_s:
            self._set_leading(False)
            return False
        return True

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.info("leadership %s", "acquired" if leading else "lost", extra={"identity": self.settings.identity})
            if self._on_change is not None:
                self._on_change(leading)

    async def try_acquire_or_renew(self) -> bool:
        s = self.settings
        now_wall, now_mono = self._wall(), self._mono()
        try:
            lease: dict[str, Any] | None = await self.client.request("GET", self.path)
        except KubeNotFound:
            lease = None
        except KubeError as exc:
            log.warning("lease read failed: %s", exc)
            return self.is_leader()
        me = s.identity
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {
                    "holderIdentity": me,
                    "leaseDurationSeconds": int(s.lease_duration_s),
                    "acquireTime": _micro_time(now_wall),
                    "renewTime": _micro_time(now_wall),
                    "leaseTransitions": 0,
                },
            }
            try:
                await self.client.request(
                    "POST", f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases", body=body
                )
            except KubeError as exc:
                log.info("lease create lost: %s", exc)
                return self.is_leader()
            self._last_renew = now_mono
            self._set_leading(True)
            return True
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        duration = float(spec.get("leaseDurationSeconds") or s.lease_duration_s)
        if holder and holder != me and self._observed_at + duration > now_mono:
            self._set_leading(False)
            return False
        new_spec = dict(spec)
        new_spec.update(
            {"holderIdentity": me, "leaseDurationSeconds": int(s.lease_duration_s), "renewTime": _micro_time(now_wall)}
        )
        if holder != me:
            new_spec["acquireTime"] = _micro_time(now_wall)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        body = {**lease, "spec": new_spec}
        try:
            updated = await self.client.request("PUT", self.path, body=body)
        except KubeConflict:
            return self.is_leader()
        except KubeError as exc:
            log.warning("lease renew failed: %s", exc)
            return self.is_leader()
        self._observed = (me, str(updated.get("spec", {}).get("renewTime", "")))
        self._observed_at = now_mono
        self._last_renew = now_mono
        self._set_leading(True)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire, then keep renewing every retry period, until ``stop`` is set."""
        while not stop.is_set():
            await self.try_acquire_or_renew()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.retry_period_s)

    async def release(self) -> None:
        """Give the lease up (only if we hold it), so a standby acquires it at once."""
        if not self._leading:
            return
        self._set_leading(False)
        try:
            lease = await self.client.request("GET", self.path)
            if (lease.get("spec", {}).get("holderIdentity") or "") != self.settings.identity:
                return
            now = _micro_time(self._wall())
            spec = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
            }
            await self.client.request("PUT", self.path, body={**lease, "spec": spec})
        except KubeError as exc:
            log.warning("lease release failed: %s", exc)
