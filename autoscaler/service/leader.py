"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics and defaults.

* lease duration 15 s, renew deadline 10 s, retry period 2 s;
* a lease held by someone else counts as held until ``leaseDuration`` has passed *on our clock* since
  we last saw its record change (never trusting the other side's clock);
* the leader renews every retry period; if it cannot renew within the renew deadline it stops being
  leader at once: :meth:`LeaseElector.is_leader` turns False before anyone else can acquire, so a
  write guarded by it never overlaps another leader's;
* on shutdown the leader releases the lease (empty holder, 1 s duration) so a standby takes over
  without waiting for expiry.

Unreadable leases. A Lease whose spec is not an object, or whose holder, times, duration or
transition count have impossible types or values (``leaseDurationSeconds: -5`` or ``"abc"``), is
reported (an error log each time it is seen) and then *replaced* by a fresh acquire, with the same
restart safety as taking over an expired lease: the replacement is written only after the unreadable
record has stayed unchanged for a full lease duration on our own clock (a live holder, whatever it
writes, changes the record at least every retry period; an unreadable record that keeps changing is
never taken over), and only with the Lease's ``resourceVersion`` as precondition (a concurrent repair
wins by conflict; a Lease without one is never overwritten). A holder's duration is trusted up to
one hour (a garbage 10^9 s would otherwise block failover forever). Nothing read from the Lease can
raise out of :meth:`LeaseElector.try_acquire_or_renew`, and :meth:`LeaseElector.run` survives any
error of one round.

Read elsewhere. :meth:`LeaseElector.try_acquire_or_renew` reads its Lease with a GET; a caller that reads
many Leases at once (the shards of :mod:`autoscaler.service.shards`, one LIST per round) passes each one
to :meth:`LeaseElector.settle` instead, which applies the same rules to the Lease it is given and may be
told not to take a Lease it does not hold (``acquire=False``: renew only). :meth:`LeaseElector.standing`
says what a Lease is to us (ours, someone else's and live, open, unreadable) by the same clock rules.
``acquisitions`` counts the times we became holder: a holder's writes that depend on what it read
when it acquired (its persisted state) check that they belong to the current term. A renewal also
writes the Lease's labels (``settings.labels``: with shards they record the shard count).

Fence. With ``fence`` (``run --shards 1`` next to replicas that may run with shards, see
:class:`autoscaler.service.shards.SingleLeaseFence`), each round first asks the fence whether anything
forbids leading (live shard Leases: another writer of the same targets). Then we acquire nothing, step
down and release at once. A Lease we acquire counts as led only after the fence answered "clear" to a
read made *after* our acquiring write (:meth:`is_leader` is False until then): of two writers that
acquire at about the same time, at least the later one sees the other, so they never both write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from autoscaler.service.kube import KubeClient, KubeConflict, KubeError, KubeNotFound

__all__ = ["LeaseElector", "LeaseSettings", "Standing"]

log = logging.getLogger("autoscaler.leader")


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str = "inference-autoscaler"
    identity: str = ""
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of the Lease when we create it (shards are listed by label)."""


class Standing(str, Enum):
    """What a Lease is to us, by our own clock."""

    MINE = "mine"  # we are its holder
    HELD = "held"  # someone else holds it and renewed it within its duration
    OPEN = "open"  # absent, released (no holder) or expired: whoever acquires it first holds it
    UNREADABLE = "unreadable"  # see the module docstring: replaced only after a full duration unchanged


MAX_TRUSTED_DURATION_S = 3600


def _micro_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class _Read:
    """A readable Lease spec."""

    holder: str
    renew_time: str
    duration_s: float | None
    transitions: int


def _read_spec(lease: Any) -> tuple[_Read | None, str]:
    """The Lease's spec, or None and why it is unreadable."""
    spec = lease.get("spec", {}) if isinstance(lease, dict) else None
    if not isinstance(spec, dict):
        return None, f"spec is {json.dumps(spec, default=str)[:80]}, not an object"
    holder = spec.get("holderIdentity")
    if holder is not None and not isinstance(holder, str):
        return None, f"holderIdentity is {holder!r}"
    for key in ("renewTime", "acquireTime"):
        if spec.get(key) is not None and not isinstance(spec.get(key), str):
            return None, f"{key} is {spec.get(key)!r}"
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int) or not 0 < duration <= MAX_TRUSTED_DURATION_S
    ):
        return None, f"leaseDurationSeconds is {duration!r}"
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (
        isinstance(transitions, bool) or not isinstance(transitions, int) or transitions < 0
    ):
        return None, f"leaseTransitions is {transitions!r}"
    return _Read(holder or "", str(spec.get("renewTime") or ""), duration, transitions or 0), ""


def _resource_version(lease: Any) -> str:
    meta = lease.get("metadata") if isinstance(lease, dict) else None
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else ""


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        settings: LeaseSettings,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        fence: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        if not settings.identity:
            raise ValueError("a leader-election identity is required (e.g. the pod name)")
        self.settings = settings
        self._fence = fence
        self._confirmed = -1  # the term the fence confirmed (after our acquiring write)
        self.blocked = ""
        """Why the fence keeps us from leading ("" while nothing does)."""
        self.client = client
        self._wall = wall
        self._mono = monotonic
        self._on_change = on_change
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew: float | None = None
        self._leading = False
        self.acquisitions = 0
        """How many times this elector became holder (a new term each time)."""

    @property
    def path(self) -> str:
        s = self.settings
        return f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}"

    def is_leader(self) -> bool:
        """True only while the last successful renew is within the renew deadline (and, with a fence,
        once the fence confirmed this term)."""
        if not self._leading or self._last_renew is None:
            return False
        if self._fence is not None and self._confirmed != self.acquisitions:
            return False
        if self._mono() - self._last_renew >= self.settings.renew_deadline_s:
            self._set_leading(False)
            return False
        return True

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            self.acquisitions += 1 if leading else 0
            log.info("leadership %s", "acquired" if leading else "lost", extra={"identity": self.settings.identity})
            if self._on_change is not None:
                self._on_change(leading)

    def step_down(self) -> None:
        """Stop leading at once (our Lease was deleted or cleared under us): no write after this."""
        self._set_leading(False)

    def write_window_ok(self, attempt_s: float) -> bool:
        """Whether a write attempt started now and lasting up to ``attempt_s`` ends before anyone else
        may take the Lease over (``leaseDuration`` after our last renewal, on their clock)."""
        return (
            self.is_leader()
            and self._last_renew is not None
            and self._mono() - self._last_renew + attempt_s < self.settings.lease_duration_s
        )

    async def _fenced(self) -> str | None:
        """The fence's answer; None when clear. A fence that cannot tell blocks only an acquisition."""
        assert self._fence is not None
        try:
            reason = await self._fence()
        except KubeError as exc:
            reason = None if self.is_leader() else f"cannot tell whether replicas with shards run: {exc}"
        if reason != (self.blocked or None):
            if reason:
                log.warning("lease conflict: not leading: %s", reason, extra={"identity": self.settings.identity})
            else:
                log.info("lease conflict cleared", extra={"identity": self.settings.identity})
        self.blocked = reason or ""
        return reason

    async def _refuse(self) -> bool:
        if self._leading:
            await self.release()
        return False

    async def try_acquire_or_renew(self) -> bool:
        if self._fence is not None and await self._fenced():
            return await self._refuse()
        held = await self._try_acquire_or_renew()
        if held and self._fence is not None and self._confirmed != self.acquisitions:
            if await self._fenced():  # read after our acquiring write: see the module docstring
                return await self._refuse()
            self._confirmed = self.acquisitions
        return self.is_leader()

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease: dict[str, Any] | None = await self.client.request("GET", self.path)
        except KubeNotFound:
            lease = None
        except KubeError as exc:
            log.warning("lease read failed: %s", exc)
            return self.is_leader()
        return await self.settle(lease)

    def standing(self, lease: Any) -> Standing:
        """What ``lease`` (None: absent) is to us now; records what we observed of it."""
        if lease is None:
            return Standing.OPEN
        read, _ = _read_spec(lease)
        if read is None or not _resource_version(lease):
            return Standing.UNREADABLE
        now_mono = self._mono()
        record = (read.holder, read.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        if read.holder == self.settings.identity:
            return Standing.MINE
        duration = read.duration_s if read.duration_s is not None else self.settings.lease_duration_s
        if read.holder and self._observed_at + duration > now_mono:
            return Standing.HELD
        return Standing.OPEN

    async def settle(self, lease: Any, *, acquire: bool = True) -> bool:
        """One round on ``lease`` as read by the caller (None: it does not exist): renew it if it is
        ours, acquire it if it is open and ``acquire`` allows. Returns whether we hold it."""
        s = self.settings
        now_wall, now_mono = self._wall(), self._mono()
        me = s.identity
        if lease is None:
            if not acquire:
                self._set_leading(False)
                return False
            return await self._create(now_wall, now_mono)
        read, why = _read_spec(lease)
        if read is not None and not _resource_version(lease):
            read, why = None, "no resourceVersion"
        if read is None:
            if not acquire:
                self._set_leading(False)
                return False
            return await self._replace_unreadable(lease, why, now_wall, now_mono)
        holder = read.holder
        record = (holder, read.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        duration = read.duration_s if read.duration_s is not None else s.lease_duration_s
        if holder and holder != me and self._observed_at + duration > now_mono:
            self._set_leading(False)
            return False
        if holder != me and not acquire:
            self._set_leading(False)
            return False
        new_spec = dict(lease["spec"] or {})
        new_spec.update(
            {"holderIdentity": me, "leaseDurationSeconds": int(s.lease_duration_s), "renewTime": _micro_time(now_wall)}
        )
        if holder != me:
            new_spec["acquireTime"] = _micro_time(now_wall)
            new_spec["leaseTransitions"] = read.transitions + 1
        meta = dict(lease.get("metadata") or {})
        if s.labels:  # e.g. the shard count: a Lease another layout created says ours once we hold it
            meta["labels"] = {**(meta.get("labels") or {}), **s.labels}
        return await self._put({**lease, "metadata": meta, "spec": new_spec}, now_mono)

    async def _create(self, now_wall: float, now_mono: float) -> bool:
        s = self.settings
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": s.name, "namespace": s.namespace, **({"labels": dict(s.labels)} if s.labels else {})},
            "spec": {
                "holderIdentity": s.identity,
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

    async def _replace_unreadable(self, lease: dict[str, Any], why: str, now_wall: float, now_mono: float) -> bool:
        """Report an unreadable Lease; replace it once it has not changed for a full lease duration."""
        s = self.settings
        record = ("<unreadable>", json.dumps(lease.get("spec"), sort_keys=True, default=str)[:4096])
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        version = _resource_version(lease)
        waited = now_mono - self._observed_at
        log.error(
            "lease %s/%s is unreadable (%s); %s",
            s.namespace,
            s.name,
            why,
            "it has no resourceVersion, so it is never overwritten: fix or delete it"
            if not version
            else f"replacing it once it has stayed unchanged for {s.lease_duration_s:g} s ({waited:.0f} s so far)",
        )
        self._set_leading(False)  # whoever holds it, we cannot tell it is us
        if not version or self._observed_at + s.lease_duration_s > now_mono:
            return False
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": s.name,
                "namespace": s.namespace,
                "resourceVersion": version,
                **({"labels": dict(s.labels)} if s.labels else {}),
            },
            "spec": {
                "holderIdentity": s.identity,
                "leaseDurationSeconds": int(s.lease_duration_s),
                "acquireTime": _micro_time(now_wall),
                "renewTime": _micro_time(now_wall),
                "leaseTransitions": 1,
            },
        }
        acquired = await self._put(body, now_mono)
        if acquired:
            log.warning("replaced the unreadable lease %s/%s; %s holds it now", s.namespace, s.name, s.identity)
        return acquired

    async def _put(self, body: dict[str, Any], now_mono: float) -> bool:
        try:
            updated = await self.client.request("PUT", self.path, body=body)
        except KubeConflict:
            return self.is_leader()
        except KubeError as exc:
            log.warning("lease renew failed: %s", exc)
            return self.is_leader()
        spec = updated.get("spec") if isinstance(updated, dict) else None
        renew = spec.get("renewTime") if isinstance(spec, dict) else None
        self._observed = (self.settings.identity, str(renew or ""))
        self._observed_at = now_mono
        self._last_renew = now_mono
        self._set_leading(True)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire, then keep renewing every retry period, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.try_acquire_or_renew()
            except Exception:  # one bad round must not end the election (is_leader() lapses on its own)
                log.exception("leader election round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.retry_period_s)

    async def release(self) -> bool:
        """Give the lease up (only if we hold it), so a standby acquires it at once. False when the
        release was not written (the caller may retry with :meth:`release_listed`)."""
        if not self._leading:
            return True
        self._set_leading(False)
        try:
            lease = await self.client.request("GET", self.path)
        except KubeError as exc:
            log.warning("lease release failed: %s", exc)
            return False
        return await self.release_listed(lease)

    async def release_listed(self, lease: Any) -> bool:
        """Clear the holder of ``lease`` (as read by the caller) if it is us; True when it is not ours
        (any more) or the release was written."""
        self._set_leading(False)
        try:
            read, _ = _read_spec(lease)
            if read is None or read.holder != self.settings.identity or not _resource_version(lease):
                return True
            now = _micro_time(self._wall())
            spec = {
                **(lease.get("spec") or {}),
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
            }
            await self.client.request("PUT", self.path, body={**lease, "spec": spec})
        except KubeError as exc:
            log.warning("lease release failed: %s", exc)
            return False
        return True
