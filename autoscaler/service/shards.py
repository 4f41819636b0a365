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

One shard count at a time. Every shard and membership Lease carries the label
``inference-autoscaler.io/shards: <N>``. A replica that sees a live Lease of its group with another
count (a member, or a shard holder), or a live holder of the single Lease ``<lease-name>`` (a
``--shards 1`` leader, read with one GET per round), takes nothing, stops writing at once and gives
back what it holds ("lease conflict" in the log, ``inference_autoscaler_lease_conflict`` 1); the
single elector treats live shard or membership Leases the same way (:class:`SingleLeaseFence`). Once
the conflict is gone it still waits one client timeout, so that the other side's last writes have
ended, before it takes anything. A shard acquired in a round becomes writable only after a later round's
LIST (made after our acquiring write) found no conflict: of two writers acquiring at about the same
time, the later one always sees the other. Changing N is therefore a stop-the-world change (scale to
0 first, docs/install.md); persisted state is not migrated between counts: each shard's ConfigMap is
recorded with its count, a shard whose ConfigMap was written under another count starts fresh (as the
HPA does after a restart: conservative, never a burst).

In flight. Each guard records when it last let an attempt out (the client checks the guard right before
sending each attempt, and an attempt ends within the client's timeout ``timeout_s``). A shard given
back is released only once no attempt can still be in flight (its last attempt started ``timeout_s``
ago or more), and a guard lets an attempt out only if it ends before anyone else may take the shard
over on expiry (``lease duration`` after our last renewal): a late write never lands after another
replica took the shard. A request the API server received before our timeout but applies after it is
beyond what a client can bound (the API server's own request timeout).

Writes. :meth:`ShardSet.guard` gives a policy's guard: "I hold this policy's shard, it is not being
given back, and I read its persisted state in this term". The controller passes it to every write,
Event and state save of that policy (the client checks it before every attempt), and ticks only the
policies whose guard holds, plus every ``external`` policy: those are served by the external-metrics
API of every replica (the APIService's Service balances across them), write nothing but Events, and
their Events are guarded like the rest.

State. Each shard's policies' state is persisted in its own ConfigMap ``<lease-name>-state-shard-<i>``
(:class:`ShardedStateStore`), read when the shard is acquired, so a new holder continues from what the
old holder persisted, exactly as after a single leader's change; a shard is never saved before it was
read in the current term. A state read from shard ``i`` is applied only to a policy whose shard is
``i`` now (a ConfigMap may hold a retargeted policy's old entry), and a save files each state under its
policy's current shard and rewrites a held shard whose part shrank. At start every shard's state is also
read once without holding it, for the ``external`` policies every replica serves. A save that meets
another writer's content (409) writes nothing and reads the shard again first. Membership Leases of
replicas gone for ``max(10 x lease duration, 5 min)`` are deleted by whoever sees them (pods get new
names on every rollout).
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
from dataclasses import dataclass, replace
from typing import Any

from autoscaler.core.policy import Mode, ScalingPolicy
from autoscaler.core.step import TargetState
from autoscaler.policy.loader import target_identity
from autoscaler.service.kube import KubeClient, KubeError, KubeNotFound
from autoscaler.service.leader import MAX_TRUSTED_DURATION_S, LeaseElector, LeaseSettings, Standing
from autoscaler.service.state import ConfigMapStateStore, StateStore, encode_states
from autoscaler.service.telemetry import Telemetry

__all__ = [
    "COUNT_LABEL",
    "GROUP_LABEL",
    "ROLE_LABEL",
    "SHARD_LABEL",
    "ShardSet",
    "ShardedStateStore",
    "SingleLeaseFence",
    "member_lease_name",
    "shard_lease_name",
    "shard_of",
    "shard_state_name",
]

log = logging.getLogger("autoscaler.shards")

GROUP_LABEL = "inference-autoscaler.io/lease-group"
ROLE_LABEL = "inference-autoscaler.io/lease-role"
SHARD_LABEL = "inference-autoscaler.io/shard"
COUNT_LABEL = "inference-autoscaler.io/shards"
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


class _Liveness:
    """Whether Leases we do not elect on are live, on our own clock (as :mod:`leader` judges expiry)."""

    def __init__(self, monotonic: Callable[[], float], default_duration_s: float) -> None:
        self._mono, self._default = monotonic, default_duration_s
        self._seen: dict[str, tuple[tuple[str, str], float]] = {}

    def live(self, name: str, lease: Any) -> bool:
        holder, renew, duration = _spec_record(lease)
        now = self._mono()
        before = self._seen.get(name)
        if before is None or before[0] != (holder, renew):
            self._seen[name] = ((holder, renew), now)
        return bool(holder) and self._seen[name][1] + (duration or self._default) > now

    def keep(self, names: set[str]) -> None:
        for name in set(self._seen) - names:
            del self._seen[name]


def _count_of(lease: Any) -> str:
    return str(_labels(lease).get(COUNT_LABEL, ""))


@dataclass(slots=True)
class _Blocker:
    """A lease conflict seen each round, and the wait after it ended for the other side's last writes."""

    reason: str = ""
    until: float = 0.0  # nothing is acquired before this (monotonic), after a conflict ended

    def update(self, reason: str, now: float, attempt_s: float) -> bool:
        """Record this round's conflict ("" for none); True while blocked."""
        if reason != self.reason:
            if reason:
                log.warning("lease conflict: acquiring nothing, writing nothing: %s", reason)
            else:
                log.info("lease conflict ended; waiting %.0f s for the other side's last writes", attempt_s)
                self.until = now + attempt_s
        self.reason = reason
        return bool(reason) or now < self.until


class _ShardGuard:
    """A shard's write guard; records when it last let an attempt out (an attempt in flight)."""

    __slots__ = ("index", "shards")

    def __init__(self, shards: ShardSet, index: int) -> None:
        self.shards, self.index = shards, index

    def __call__(self) -> bool:
        if not self.shards.writable(self.index):
            return False
        self.shards.sent_at[self.index] = self.shards.now()
        return True


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
        group = {GROUP_LABEL: settings.name, "app.kubernetes.io/name": "inference-autoscaler", COUNT_LABEL: str(count)}
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
        self.attempt_s = client.config.timeout_s
        """How long one write attempt may take (the client's timeout): the in-flight bound."""
        self._loaded = [-1] * count  # the term (elector.acquisitions) in which each shard's state was read
        self._confirmed = [-1] * count  # the term a LIST made after our acquiring write found no conflict
        self.sent_at: dict[int, float] = {}  # shard -> when its guard last let a write attempt out
        self._draining: dict[int, int] = {}  # shard -> rounds left before it is given back
        self._releasing: set[int] = set()  # given back, but the release was not written yet
        self._rereads = 0
        self._open_since: dict[int, float] = {}
        self._peers: dict[str, tuple[tuple[str, str], float]] = {}  # member Lease -> (record, observed at)
        self._foreign = _Liveness(monotonic, settings.lease_duration_s)
        self.blocker = _Blocker()
        self._guards = [_ShardGuard(self, i) for i in range(count)]
        self.shard_keys: dict[str, int] = {}
        """Policy key -> shard, for every policy a guard was asked for (the state store splits by it)."""
        self.rounds = 0
        self.live: frozenset[str] = frozenset({settings.identity})
        self.telemetry = telemetry
        if telemetry is not None:
            telemetry.shards.set(count)
        self._report()

    def now(self) -> float:
        return self._mono()

    # ------------------------------------------------------------------ what the controller asks

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
        """We hold the shard (confirmed free of conflicts), are not giving it back, read its state in
        this term, and an attempt started now ends before the shard could be taken over on expiry."""
        elector = self.electors[index]
        term = elector.acquisitions
        return (
            not self.blocker.reason
            and index not in self._draining
            and self._loaded[index] == term
            and self._confirmed[index] == term
            and elector.write_window_ok(self.attempt_s)
        )

    def is_leader(self) -> bool:
        """True while we hold any shard (its state may not be read yet: the controller reads it then)."""
        return not self.blocker.reason and any(e.is_leader() for e in self.electors)

    def term(self) -> int:
        """Changes whenever we acquire a shard, or must read one again: the controller then reads the
        new shards' state."""
        return sum(e.acquisitions for e in self.electors) + self._rereads

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

    def reread(self, index: int) -> None:
        """The shard's ConfigMap holds another writer's content: no save before it is read again."""
        self._loaded[index] = -1
        self._rereads += 1

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
            self.telemetry.lease_conflict.set(1 if self.blocker.reason else 0)
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

    async def _single(self) -> tuple[bool, Any]:
        """The single Lease ``<lease-name>`` of a ``--shards 1`` leader: (read, the Lease or None)."""
        s = self.settings
        try:
            lease = await self.client.request(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}"
            )
        except KubeNotFound:
            return True, None
        except KubeError as exc:
            log.warning("lease %s not read: %s", s.name, exc)
            return False, None
        return True, lease

    def _conflict(self, leases: Mapping[str, Any], single: Any) -> str:
        """Why another shard count is live ("" when none is): see the module docstring."""
        ours = str(self.count)
        seen, why = set(), []
        if single is not None:
            seen.add(self.settings.name)
            if self._foreign.live(self.settings.name, single):
                why.append(f"the single Lease {self.settings.name} is held by {_spec_record(single)[0]} (--shards 1)")
        for name, lease in leases.items():
            role = _labels(lease).get(ROLE_LABEL)
            if role not in ("shard", "member") or _count_of(lease) == ours:
                continue
            seen.add(name)
            if self._foreign.live(name, lease):
                count = _count_of(lease) or "unknown"
                why.append(
                    f"{role} Lease {name} of {_spec_record(lease)[0]} runs with --shards {count}, we with {ours}"
                )
        self._foreign.keep(seen)
        return "; ".join(sorted(why)[:3])

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
                if _count_of(lease) == str(self.count):
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
        read, single = await self._single()
        now = self._mono()
        blocked = self.blocker.update(self._conflict(leases, single), now, self.attempt_s)
        if self.blocker.reason:
            for i in self.held():  # stop writing at once; release once nothing can be in flight
                self._draining.setdefault(i, 0)
        elif read:  # this LIST was made after every acquiring write so far: those shards are ours alone
            for i, elector in enumerate(self.electors):
                self._confirmed[i] = elector.acquisitions
        await self.member.settle(leases.get(self.member.settings.name))
        self.live, stale = self._members(leases)
        for lease in stale:
            await self._delete_member(lease)
        lease_of = [leases.get(e.settings.name) for e in self.electors]
        standings = [e.standing(lease) for e, lease in zip(self.electors, lease_of, strict=True)]
        for i, standing in enumerate(standings):
            if standing is Standing.OPEN:
                self._open_since.setdefault(i, now)
                if self.electors[i].is_leader():  # deleted or cleared under us: someone may create it now
                    log.warning("shard Lease deleted or cleared while we held it", extra={"shard": i})
                    self.electors[i].step_down()
            else:
                self._open_since.pop(i, None)
        released = await self._give_back(lease_of)
        for i, standing in enumerate(standings):
            if standing is not Standing.OPEN and i not in self._draining and i not in released:
                # writes only to renew ours (or to repair an unreadable Lease, by the elector's rules)
                await self.electors[i].settle(
                    lease_of[i], acquire=standing is Standing.UNREADABLE and not blocked and read
                )
        if self.rounds > 0 and not blocked and read:  # the first round only announces us
            await self._acquire(standings, lease_of, now)
            self._plan_give_back(standings, lease_of)
        self.rounds += 1
        self._report()

    def _in_flight(self, index: int) -> bool:
        sent = self.sent_at.get(index)
        return sent is not None and self._mono() - sent < self.attempt_s

    async def _give_back(self, lease_of: list[Any]) -> set[int]:
        """Release the drained shards no write of which can still be in flight; the shards touched."""
        touched = set()
        for i in list(self._releasing):  # a release that was not written: again, from the listing
            touched.add(i)
            if await self.electors[i].release_listed(lease_of[i]):
                self._releasing.discard(i)
        for i, rounds in list(self._draining.items()):
            if rounds > 0 or self._in_flight(i):
                self._draining[i] = max(rounds - 1, 0)
                continue
            del self._draining[i]
            touched.add(i)
            log.info("shard given back", extra={"shard": i, "identity": self.settings.identity})
            if not await self.electors[i].release_listed(lease_of[i]):
                self._releasing.add(i)
            self._report()
        return touched

    def share(self) -> int:
        return math.ceil(self.count / max(len(self.live), 1))

    async def _acquire(self, standings: list[Standing], lease_of: list[Any], now: float) -> None:
        share, held = self.share(), len(self.held())
        grace = OPEN_GRACE_ROUNDS * self.settings.retry_period_s
        offset = int(hashlib.sha256(self.settings.identity.encode()).hexdigest()[:8], 16)
        for k in range(self.count):
            i = (offset + k) % self.count  # replicas start at different shards: fewer lost races
            if standings[i] is not Standing.OPEN or i in self._releasing:
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
            self._draining[i] = 0  # its writes stop now; released once none can be in flight

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


class SingleLeaseFence:
    """The fence of the single elector (``--shards 1``, :class:`~autoscaler.service.leader.LeaseElector`):
    blocked while a replica running with shards is alive (a live shard or membership Lease of the
    group), and for one client timeout after the last one went (its last writes end first)."""

    def __init__(
        self,
        client: KubeClient,
        settings: LeaseSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.client, self.settings, self.telemetry = client, settings, telemetry
        self._mono = monotonic
        self._liveness = _Liveness(monotonic, settings.lease_duration_s)
        self.blocker = _Blocker()

    async def __call__(self) -> str | None:
        """Why the single Lease must not be led now; None when nothing forbids it. Raises KubeError
        when the Leases cannot be listed."""
        s = self.settings
        listing = await self.client.request(
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases",
            params={"labelSelector": f"{GROUP_LABEL}={s.name}"},
        )
        items = listing.get("items") if isinstance(listing, dict) else None
        why, seen = [], set()
        for lease in items if isinstance(items, list) else []:
            meta = lease.get("metadata") if isinstance(lease, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            role = _labels(lease).get(ROLE_LABEL)
            if not isinstance(name, str) or role not in ("shard", "member"):
                continue
            seen.add(name)
            if self._liveness.live(name, lease):
                count = _count_of(lease) or "unknown"
                why.append(f"{role} Lease {name} of {_spec_record(lease)[0]} runs with --shards {count}, we with 1")
        self._liveness.keep(seen)
        now = self._mono()
        reason = "; ".join(sorted(why)[:3])
        blocked = self.blocker.update(reason, now, self.client.config.timeout_s)
        if self.telemetry is not None:
            self.telemetry.lease_conflict.set(1 if blocked else 0)
        if blocked and not reason:
            return f"waiting {self.blocker.until - now:.0f} s for the last writes of replicas with shards"
        return reason or None


class ShardedStateStore(StateStore):
    """Each shard's policies' state in its own ConfigMap, read when the shard is acquired.

    :meth:`load` reads the shards held but not yet read in their current term (and, on its first call,
    every other shard read-only, for the ``external`` policies), and returns their states;
    :meth:`restorable` says which of them may be applied to which policy. :meth:`save` files each
    state under its policy's shard now and writes each shard we may write whose part changed, under
    that shard's guard (the ``guard`` argument is the whole replica's and is not enough here)."""

    def __init__(self, client: KubeClient, *, namespace: str, name: str, shards: ShardSet) -> None:
        super().__init__()
        self.shards = shards
        count = {COUNT_LABEL: str(shards.count)}
        self.stores = [
            ConfigMapStateStore(client, namespace=namespace, name=shard_state_name(name, i), labels=count)
            for i in range(shards.count)
        ]
        self._blobs: dict[int, str] = {}  # what each shard's ConfigMap holds, as we last read or wrote it
        self._source: dict[str, tuple[int, bool]] = {}  # key -> (shard read from, read as its holder)
        self._started = False

    async def _read(self, index: int) -> dict[str, TargetState]:
        store = self.stores[index]
        states = await store.load()
        found = store.found_labels.get(COUNT_LABEL)
        if states and found != str(self.shards.count):
            log.warning(
                "state ConfigMap %s was written with --shards %s, not %d: its policies start fresh",
                store.name,
                found or "unknown",
                self.shards.count,
                extra={"shard": index},
            )
            return {}
        return states

    async def load(self) -> dict[str, TargetState]:
        read: dict[str, TargetState] = {}
        done = []
        for index, term in self.shards.unread():
            states = await self._read(index)  # a KubeError: nothing is marked read, the caller retries
            self._blobs[index] = self.stores[index].blob or encode_states({})
            self._file(read, index, states, holder=True)
            done.append((index, term))
        if not self._started:
            held = {index for index, _ in done}
            for index in range(self.shards.count):
                if index not in held:
                    try:
                        self._file(read, index, await self._read(index), holder=False)
                    except KubeError as exc:  # the external policies of that shard start fresh
                        log.warning("state of shard %d not read: %s", index, exc)
            self._started = True
        for index, term in done:
            self.shards.mark_read(index, term)
        return read

    def _file(
        self, read: dict[str, TargetState], index: int, states: Mapping[str, TargetState], *, holder: bool
    ) -> None:
        """Add a shard's states; of a key found in two shards, keep the one of its shard now."""
        for key, state in states.items():
            before = self._source.get(key)
            if key in read and before is not None and self.shards.shard_keys.get(key) == before[0]:
                continue
            read[key] = state
            self._source[key] = (index, holder)

    def restorable(self, key: str, policy: ScalingPolicy) -> bool:
        source = self._source.get(key)
        if source is None or source[0] != shard_of(policy, self.shards.count):
            return False  # an old entry of a retargeted policy, filed under its former shard
        return source[1] or policy.mode is Mode.EXTERNAL

    async def save(self, states: Mapping[str, TargetState], *, guard: Callable[[], bool] | None = None) -> bool:
        parts: dict[int, dict[str, TargetState]] = {}
        for key, state in states.items():
            index = self.shards.shard_keys.get(key)
            if index is not None:
                parts.setdefault(index, {})[key] = state
        ok = True
        for index in range(self.shards.count):
            if not self.shards.writable(index):
                continue
            part = parts.get(index, {})
            blob = encode_states(part)
            if self._blobs.get(index) == blob:
                continue  # (a held shard whose part shrank, even to nothing, is rewritten)
            if await self.stores[index].save(part, guard=self.shards.shard_guard(index)):
                self._blobs[index] = blob
            else:
                ok = False
                if self.stores[index].stale:
                    self.shards.reread(index)
        return ok
