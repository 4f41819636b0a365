"""Shards: the fleet split across replicas, each shard with its own Lease (``run --shards N``).

One leader ticks every policy; a fleet larger than one process can tick needs the work split. With
``--shards N`` (N > 1) every policy belongs to one shard, each shard is a Lease, any replica can hold
any shard, and a replica ticks only the policies of the shards it holds. ``--shards 1`` is today's
single Lease (:class:`~autoscaler.service.leader.LeaseElector`, the Lease named ``--lease-name``), and
nothing here runs: an upgrade changes nothing.

Assignment. A policy's shard is ``sha256(namespace, API group, kind, name of its target) mod N``
(:func:`shard_of`): the target's identity as the policy loader compares targets, not the policy's name,
so one target is always in one shard (one writer), and not Python's ``hash``, which is salted per
process. Every replica computes the same assignment from the same files.

Leases. Shard ``i`` is the Lease ``<lease-name>-shard-<i>``; each replica also keeps a small
membership Lease ``<lease-name>-member-<hash of its identity>``, so that the others know it is alive
even while it holds no shard. All carry the label ``inference-autoscaler.io/lease-group:
<lease-name>``: one round (every retry period) is one LIST with that label selector, then writes only
for the Leases renewed or acquired, never N reads. Each shard's Lease follows the single leader's rules
(:mod:`autoscaler.service.leader`: expiry judged on our own clock, a holder stops writing before its
renew deadline, unreadable Leases replaced only after a full duration unchanged).

Fair share. With ``L`` live members (membership Leases renewed within their duration, ourselves
included), a replica acquires an open shard (absent, released or expired) only while it holds fewer
than ``ceil(N / L)``; an open shard still goes to someone: once it has stayed open for two retry
periods, any replica takes it whatever its share (so a shard whose holder died moves within the lease
duration plus a few rounds even when the replicas disagree about who is alive). A replica over its
share gives shards back, one round after it stopped writing for them (``draining``: the writes already
sent finish first), and only as many as live replicas under their share can take. On its first round a
replica only announces itself, so replicas started together spread the shards instead of the first
one taking all.

Writes. :meth:`ShardSet.guard` gives a policy's guard: "I hold this policy's shard, it is not being
given back, and I read its persisted state in this term". The controller passes it to every write,
Event and state save of that policy (the client checks it before every attempt), and ticks only the
policies whose guard holds, plus every ``external`` policy: those are served by the external-metrics
API of every replica (the APIService's Service balances across them), write nothing but Events, and
their Events are guarded like the rest.

State. Each shard's policies' state is persisted in its own ConfigMap ``<lease-name>-state-shard-<i>``
(:class:`ShardedStateStore`), read when the shard is acquired, so a new holder continues from what the
old holder persisted, exactly as after a single leader's change; a shard is never saved before it was
read in the current term. Membership Leases of replicas gone for ``max(10 x lease duration, 5 min)``
are deleted by whoever sees them (pods get new names on every rollout).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.step import TargetState
from autoscaler.policy.loader import target_identity
from autoscaler.service.kube import KubeClient, KubeError, KubeNotFound
from autoscaler.service.leader import MAX_TRUSTED_DURATION_S, LeaseElector, LeaseSettings, Standing
from autoscaler.service.state import ConfigMapStateStore, StateStore, encode_states
from autoscaler.service.telemetry import Telemetry

__all__ = [
    "GROUP_LABEL",
    "ROLE_LABEL",
    "SHARD_LABEL",
    "ShardSet",
    "ShardedStateStore",
    "member_lease_name",
    "shard_lease_name",
    "shard_of",
    "shard_state_name",
]

log = logging.getLogger("autoscaler.shards")

GROUP_LABEL = "inference-autoscaler.io/lease-group"
ROLE_LABEL = "inference-autoscaler.io/lease-role"
SHARD_LABEL = "inference-autoscaler.io/shard"
MAX_SHARDS = 1024
OPEN_GRACE_ROUNDS = 2
"""An open shard is taken by anyone, whatever its share, after this many retry periods open."""


def shard_of(policy: ScalingPolicy, count: int) -> int:
    """The shard of ``policy`` among ``count``: a stable hash of its target's identity."""
    identity = "\x00".join(target_identity(policy))
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_lease_name(lease_name: str, index: int) -> str:
    return f"{lease_name}-shard-{index}"


def shard_state_name(lease_name: str, index: int) -> str:
    return f"{lease_name}-state-shard-{index}"


def member_lease_name(lease_name: str, identity: str) -> str:
    return f"{lease_name}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _spec_record(lease: Any) -> tuple[str, str, float | None]:
    """Holder, renew time and duration of a listed Lease; empty values when unreadable."""
    spec = lease.get("spec") if isinstance(lease, dict) else None
    if not isinstance(spec, dict):
        return "", "", None
    holder, renew, duration = spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds")
    valid = isinstance(duration, int) and not isinstance(duration, bool) and 0 < duration <= MAX_TRUSTED_DURATION_S
    return (
        holder if isinstance(holder, str) else "",
        renew if isinstance(renew, str) else "",
        float(duration) if valid and isinstance(duration, int) else None,
    )


def _labels(lease: Any) -> Mapping[str, Any]:
    meta = lease.get("metadata") if isinstance(lease, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


class ShardSet:
    """Every shard's election for one replica, one LIST per round; the leadership the controller uses."""

    def __init__(
        self,
        client: KubeClient,
        settings: LeaseSettings,
        count: int,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"--shards = {count}: must be between 1 and {MAX_SHARDS}")
        if len(settings.name) > 63:
            raise ValueError(f"--lease-name = {settings.name!r}: at most 63 characters with shards (a label value)")
        if not settings.identity:
            raise ValueError("a leader-election identity is required (e.g. the pod name)")
        self.settings, self.count, self.client = settings, count, client
        self._mono = monotonic
        group = {GROUP_LABEL: settings.name, "app.kubernetes.io/name": "inference-autoscaler"}
        self.electors = [
            LeaseElector(
                client,
                replace(
                    settings,
                    name=shard_lease_name(settings.name, i),
                    labels={**group, ROLE_LABEL: "shard", SHARD_LABEL: str(i)},
                ),
                wall=wall,
                monotonic=monotonic,
                on_change=self._changed(i),
            )
            for i in range(count)
        ]
        self.member = LeaseElector(
            client,
            replace(
                settings,
                name=member_lease_name(settings.name, settings.identity),
                labels={**group, ROLE_LABEL: "member"},
            ),
            wall=wall,
            monotonic=monotonic,
        )
        self._loaded = [-1] * count  # the term (elector.acquisitions) in which each shard's state was read
        self._draining: dict[int, int] = {}  # shard -> rounds left before it is given back
        self._open_since: dict[int, float] = {}
        self._peers: dict[str, tuple[tuple[str, str], float]] = {}  # member Lease -> (record, observed at)
        self._guards = [self._guard(i) for i in range(count)]
        self.shard_keys: dict[str, int] = {}
        """Policy key -> shard, for every policy a guard was asked for (the state store splits by it)."""
        self.rounds = 0
        self.live: frozenset[str] = frozenset({settings.identity})
        self.telemetry = telemetry
        if telemetry is not None:
            telemetry.shards.set(count)
        self._report()

    # ------------------------------------------------------------------ what the controller asks

    def _guard(self, index: int) -> Callable[[], bool]:
        return lambda: self.writable(index)

    def shard(self, policy: ScalingPolicy) -> int:
        index = shard_of(policy, self.count)
        self.shard_keys[policy.key] = index
        return index

    def guard(self, policy: ScalingPolicy) -> Callable[[], bool]:
        """The guard of every write for ``policy``: :meth:`writable` of its shard."""
        return self._guards[self.shard(policy)]

    def shard_guard(self, index: int) -> Callable[[], bool]:
        return self._guards[index]

    def writable(self, index: int) -> bool:
        """We hold the shard, are not giving it back, and read its state in this term."""
        elector = self.electors[index]
        return elector.is_leader() and index not in self._draining and self._loaded[index] == elector.acquisitions

    def is_leader(self) -> bool:
        """True while we hold any shard (its state may not be read yet: the controller reads it then)."""
        return any(e.is_leader() for e in self.electors)

    def term(self) -> int:
        """Changes whenever we acquire a shard: the controller then reads the new shards' state."""
        return sum(e.acquisitions for e in self.electors)

    def held(self) -> list[int]:
        return [i for i, e in enumerate(self.electors) if e.is_leader()]

    def unread(self) -> list[tuple[int, int]]:
        """Held shards whose state was not read in this term, with the term."""
        return [
            (i, e.acquisitions)
            for i, e in enumerate(self.electors)
            if e.is_leader() and self._loaded[i] != e.acquisitions
        ]

    def mark_read(self, index: int, term: int) -> None:
        self._loaded[index] = term

    # ------------------------------------------------------------------ the election

    def _changed(self, index: int) -> Callable[[bool], None]:
        def changed(leading: bool) -> None:
            log.info(
                "shard %s",
                "acquired" if leading else "lost",
                extra={"shard": index, "identity": self.settings.identity},
            )
            if not leading:
                self._draining.pop(index, None)
            self._report()

        return changed

    def _report(self) -> None:
        held = self.held()
        if self.telemetry is not None:
            self.telemetry.shards_held.set(len(held))
            for i in range(self.count):
                self.telemetry.shard_leader.labels(str(i)).set(1 if i in held else 0)

    async def _list(self) -> dict[str, Any] | None:
        s = self.settings
        try:
            listing = await self.client.request(
                "GET",
                f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases",
                params={"labelSelector": f"{GROUP_LABEL}={s.name}"},
            )
        except KubeError as exc:
            log.warning("shard leases not listed: %s", exc)
            return None
        items = listing.get("items")
        if not isinstance(items, list):
            log.warning("shard leases not listed: the answer has no items list")
            return None
        named: dict[str, Any] = {}
        for item in items:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                named[meta["name"]] = item
        return named

    def _members(self, leases: Mapping[str, Any]) -> tuple[frozenset[str], list[Any]]:
        """Live members (ourselves included) and the membership Leases gone long enough to delete."""
        now = self._mono()
        live, stale = {self.settings.identity}, []
        gone_s = max(10 * self.settings.lease_duration_s, 300.0)
        seen = set()
        for name, lease in leases.items():
            if _labels(lease).get(ROLE_LABEL) != "member" or name == self.member.settings.name:
                continue
            seen.add(name)
            holder, renew, duration = _spec_record(lease)
            before = self._peers.get(name)
            if before is None or before[0] != (holder, renew):
                self._peers[name] = ((holder, renew), now)
            observed_at = self._peers[name][1]
            if holder and observed_at + (duration or self.settings.lease_duration_s) > now:
                live.add(holder)
            elif observed_at + gone_s <= now:
                stale.append(lease)
        for name in set(self._peers) - seen:
            del self._peers[name]
        return frozenset(live), stale

    async def round(self) -> None:
        """One round: list the Leases, renew ours, give back or acquire to reach the fair share."""
        leases = await self._list()
        if leases is None:
            self._report()  # our shards lapse on their own past the renew deadline
            return
        await self.member.settle(leases.get(self.member.settings.name))
        self.live, stale = self._members(leases)
        for lease in stale:
            await self._delete_member(lease)
        lease_of = [leases.get(e.settings.name) for e in self.electors]
        standings = [e.standing(lease) for e, lease in zip(self.electors, lease_of, strict=True)]
        now = self._mono()
        for i, standing in enumerate(standings):
            if standing is Standing.OPEN:
                self._open_since.setdefault(i, now)
            else:
                self._open_since.pop(i, None)
        await self._give_back()
        for i, standing in enumerate(standings):
            if standing is not Standing.OPEN and i not in self._draining:
                # writes only to renew ours (or to repair an unreadable Lease, by the elector's rules)
                await self.electors[i].settle(lease_of[i], acquire=standing is Standing.UNREADABLE)
        if self.rounds > 0:  # the first round only announces us, so that replicas started together share
            await self._acquire(standings, lease_of, now)
            self._plan_give_back(standings, lease_of)
        self.rounds += 1
        self._report()

    async def _give_back(self) -> None:
        for i, rounds in list(self._draining.items()):
            if rounds > 0:
                self._draining[i] = rounds - 1
                continue
            del self._draining[i]
            log.info("shard given back", extra={"shard": i, "identity": self.settings.identity})
            await self.electors[i].release()
            self._report()

    def share(self) -> int:
        return math.ceil(self.count / max(len(self.live), 1))

    async def _acquire(self, standings: list[Standing], lease_of: list[Any], now: float) -> None:
        share, held = self.share(), len(self.held())
        grace = OPEN_GRACE_ROUNDS * self.settings.retry_period_s
        offset = int(hashlib.sha256(self.settings.identity.encode()).hexdigest()[:8], 16)
        for k in range(self.count):
            i = (offset + k) % self.count  # replicas start at different shards: fewer lost races
            if standings[i] is not Standing.OPEN:
                continue
            orphaned = now - self._open_since.get(i, now) >= grace
            if (held < share or orphaned) and await self.electors[i].settle(lease_of[i], acquire=True):
                held += 1
                if held > share:
                    log.info("took an orphaned shard over the fair share", extra={"shard": i, "share": share})

    def _plan_give_back(self, standings: list[Standing], lease_of: list[Any]) -> None:
        """Over the share, give back as many shards as live replicas under their share can take."""
        if self._draining:
            return
        share, mine = self.share(), self.held()
        if len(mine) <= share:
            return
        holders: Counter[str] = Counter()
        for standing, lease in zip(standings, lease_of, strict=True):
            if standing is Standing.HELD:
                holders[_spec_record(lease)[0]] += 1
        room = sum(max(share - holders[m], 0) for m in self.live if m != self.settings.identity)
        room -= sum(1 for s in standings if s is Standing.OPEN)
        for i in sorted(mine, reverse=True)[: max(min(len(mine) - share, room), 0)]:
            log.info("giving a shard back", extra={"shard": i, "share": share, "held": len(mine)})
            self._draining[i] = 0  # its writes stop now; the Lease is released next round

    async def _delete_member(self, lease: Any) -> None:
        meta = lease.get("metadata") or {}
        name, version = meta.get("name"), meta.get("resourceVersion")
        if not isinstance(version, str) or not version:
            return
        log.info("deleting the membership Lease of a replica gone", extra={"lease": name})
        with contextlib.suppress(KubeNotFound):
            try:
                await self.client.request(
                    "DELETE",
                    f"/apis/coordination.k8s.io/v1/namespaces/{self.settings.namespace}/leases/{name}",
                    body={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": version}},
                )
            except KubeError as exc:
                if not isinstance(exc, KubeNotFound):
                    log.warning("membership Lease %s not deleted: %s", name, exc)
        self._peers.pop(str(name), None)

    async def run(self, stop: asyncio.Event) -> None:
        """A round every retry period until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.round()
            except Exception:  # one bad round must not end the election (our shards lapse on their own)
                log.exception("shard election round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.retry_period_s)

    async def release(self) -> None:
        """Give every shard back and leave the membership (shutdown): the others take over at once."""
        self._draining.clear()
        for elector in self.electors:
            await elector.release()
        await self.member.release()
        self._report()


class ShardedStateStore(StateStore):
    """Each shard's policies' state in its own ConfigMap, read when the shard is acquired.

    :meth:`load` reads the shards held but not yet read in their current term, and returns only their
    states (the controller restores exactly those entries); :meth:`save` writes each shard we may write
    whose part changed, under that shard's guard (the ``guard`` argument is the whole replica's and
    is not enough here)."""

    def __init__(self, client: KubeClient, *, namespace: str, name: str, shards: ShardSet) -> None:
        super().__init__()
        self.shards = shards
        self.stores = [
            ConfigMapStateStore(client, namespace=namespace, name=shard_state_name(name, i))
            for i in range(shards.count)
        ]
        self._blobs: dict[int, str] = {}  # what each shard's ConfigMap holds, as we last read or wrote it

    async def load(self) -> dict[str, TargetState]:
        read: dict[str, TargetState] = {}
        done = []
        for index, term in self.shards.unread():
            states = await self.stores[index].load()  # a KubeError: nothing is marked read, the caller retries
            read.update(states)
            self._blobs[index] = encode_states(states)
            done.append((index, term))
        for index, term in done:
            self.shards.mark_read(index, term)
        return read

    async def save(self, states: Mapping[str, TargetState], *, guard: Callable[[], bool] | None = None) -> bool:
        parts: dict[int, dict[str, TargetState]] = {}
        for key, state in states.items():
            index = self.shards.shard_keys.get(key)
            if index is not None:
                parts.setdefault(index, {})[key] = state
        ok = True
        for index, part in sorted(parts.items()):
            if not self.shards.writable(index):
                continue
            blob = encode_states(part)
            if self._blobs.get(index) == blob:
                continue
            if await self.stores[index].save(part, guard=self.shards.shard_guard(index)):
                self._blobs[index] = blob
            else:
                ok = False
        return ok
