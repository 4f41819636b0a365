"""The control loop: at each policy's interval, read signals for the whole fleet in one batch, read each
target's scale and ready pods, call the pure core, and act according to the policy's mode.

* ``patch``: the leader writes the scale subresource with the resourceVersion it read; on a 409 it
  re-reads and re-decides (from the same input state, since ``decide`` is pure), at most 3 times.
  The core's scale event is kept only when the write succeeded. It refuses to patch a target that an
  HPA also manages, and says so in an Event, so two controllers never fight over one target; likewise a
  policy whose target another policy already scales is refused (not run at all), reported at its
  interval with a Warning ``TargetConflict`` Event, a counter and a record (:class:`WriteOutcome`).
* ``shadow``: decides and reports (Events when it would scale, logs, metrics), never writes.
* ``external``: publishes the decision (see :attr:`Controller.published`) for the external-metrics
  API; never writes.

Every replica runs the loop (so each can serve what it decided); only the leader writes scales,
Events and the persisted state. The clock is injected: tests call :meth:`Controller.tick` with the
time they choose, and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from autoscaler.core import Decision, MetricReading, Published, Reason, Unavailable
from autoscaler.core.policy import Mode, Pause, PauseAnnotationError, ScalingPolicy, parse_pause
from autoscaler.core.step import TargetReading, TargetState, acknowledge, expired, retarget, step, warm_start
from autoscaler.service.actuator import KubeActuator, ScaleView
from autoscaler.service.history import HistorySource
from autoscaler.service.kube import KubeConflict, KubeError, KubeGuardFailed, KubeNotFound
from autoscaler.service.policies import PolicyDirectory, TargetConflict
from autoscaler.service.state import StateStore
from autoscaler.service.status import policy_status, refused_status, status_differs, status_patch
from autoscaler.service.telemetry import Telemetry
from autoscaler.signals.coverage import covered

__all__ = ["Controller", "ControllerSettings", "Published", "SignalSource", "TickRecord", "WriteOutcome"]

log = logging.getLogger("autoscaler.controller")

OBJECT_KINDS = ("ScalingPolicy ",)  # how a policy's source names an API object (not a file)

MAX_CONFLICT_RETRIES = 3


class Signals(Protocol):
    def for_policy(self, policy: ScalingPolicy) -> Mapping[str, MetricReading]: ...


class SignalSource(Protocol):
    """The seam to Prometheus (:class:`autoscaler.signals.FleetReader` satisfies it)."""

    async def read(self, policies: Sequence[ScalingPolicy], *, now_s: float | None = None) -> Signals: ...


class Leadership(Protocol):
    def is_leader(self) -> bool: ...


class _AlwaysLeader:
    def is_leader(self) -> bool:
        return True


@runtime_checkable
class ShardedLeadership(Leadership, Protocol):
    """Leadership split by shards (:class:`autoscaler.service.shards.ShardSet`): each policy's writes are
    guarded by its own shard, only the policies of writable shards are ticked (``external`` ones always:
    every replica serves them), and ``term()`` changes whenever a shard is acquired (its state is read)."""

    def guard(self, policy: ScalingPolicy) -> Callable[[], bool]: ...

    def term(self) -> int: ...

    count: int

    def shard_guard(self, index: int) -> Callable[[], bool]: ...


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    dry_run: bool = False
    """Decide and report, never write (whatever the policies' modes)."""
    concurrency: int = 16
    """Targets processed at once within a tick."""


class WriteOutcome(str, Enum):
    """What happened to a decision that changes the scale, in ``patch`` mode. Each outcome has one row
    in :data:`OUTCOMES`: its Event, its write counter label and whether the placeholder is resized."""

    NONE = "none"  # nothing to write (no change, not patch mode, dry run, or not the leader)
    WRITTEN = "written"
    HPA_PRESENT = "hpa-present"  # an HPA manages the target: two controllers must never fight over it
    HPA_CHECK_FAILED = "hpa-check-failed"  # not knowing whether an HPA manages it is not "none"
    CONFLICTS_EXHAUSTED = "conflicts-exhausted"
    REREAD_FAILED = "reread-failed"
    FAILED = "failed"
    LOST_LEADERSHIP = "lost-leadership"
    TARGET_OWNED = "target-owned"  # another policy scales the target: this one is refused, never runs
    PAUSED = "paused"  # the policy's or the target's annotations freeze writes: reported, not written
    PAUSE_CHECK_FAILED = "pause-check-failed"  # the target's annotations could not be read: no write


@dataclass(frozen=True, slots=True)
class OutcomeReport:
    event_type: str | None  # None: no Event
    event_reason: str
    counter: str | None  # the scale_writes{result} label, None: not counted
    refused: bool  # the controller refused to act on the target (placeholder left alone too)


OUTCOMES: Mapping[WriteOutcome, OutcomeReport] = {
    WriteOutcome.NONE: OutcomeReport(None, "", None, False),
    WriteOutcome.WRITTEN: OutcomeReport("Normal", "", "ok", False),  # ScaleUp / ScaleDown by direction
    WriteOutcome.HPA_PRESENT: OutcomeReport("Warning", "HPAConflict", None, True),
    WriteOutcome.HPA_CHECK_FAILED: OutcomeReport("Warning", "FailedRescale", None, True),
    WriteOutcome.CONFLICTS_EXHAUSTED: OutcomeReport("Warning", "FailedRescale", "error", False),
    WriteOutcome.REREAD_FAILED: OutcomeReport("Warning", "FailedRescale", "error", False),
    WriteOutcome.FAILED: OutcomeReport("Warning", "FailedRescale", "error", False),
    WriteOutcome.LOST_LEADERSHIP: OutcomeReport(None, "", None, False),  # a leader no more sends nothing
    WriteOutcome.TARGET_OWNED: OutcomeReport("Warning", "TargetConflict", None, True),
    WriteOutcome.PAUSED: OutcomeReport("Normal", "Paused", None, True),
    WriteOutcome.PAUSE_CHECK_FAILED: OutcomeReport("Warning", "FailedRescale", None, True),
}


@dataclass(frozen=True, slots=True)
class TickRecord:
    """What one policy's tick saw and did (for tests, logs and the equivalence proof)."""

    policy: str
    time_s: float
    reading: TargetReading | None
    decision: Decision | None
    wrote: bool = False
    error: str = ""
    conflicts: int = 0
    outcome: WriteOutcome = WriteOutcome.NONE
    state: TargetState | None = None
    """The target's memory after this tick (what the next tick starts from)."""
    paused_by: str | None = None
    """The annotation freezing the target's writes ("annotation": the policy's; else on the target)."""


@dataclass(slots=True)
class _Refusal:
    """A policy refused because its target has another policy: reported at its interval, never run."""

    conflict: TargetConflict
    next_due: float


@dataclass(slots=True)
class _Entry:
    policy: ScalingPolicy
    next_due: float
    state: TargetState = field(default_factory=TargetState)
    warm_started: bool = False


class Controller:
    def __init__(
        self,
        *,
        policies: PolicyDirectory,
        signals: SignalSource,
        actuator: KubeActuator,
        telemetry: Telemetry,
        store: StateStore | None = None,
        leadership: Leadership | None = None,
        history: HistorySource | None = None,
        settings: ControllerSettings = ControllerSettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy_source = policies
        self.signals = signals
        self.actuator = actuator
        self.telemetry = telemetry
        self.store = store or StateStore()
        self.leadership = leadership or _AlwaysLeader()
        self.shards = leadership if isinstance(leadership, ShardedLeadership) else None
        self._term = 0
        self.history = history
        self.settings = settings
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        self.refusals: dict[str, _Refusal] = {}
        self.object_problems: dict[str, tuple[str, str]] = {}
        """ScalingPolicy objects the loader refused (by source): (reason, message) for their status."""
        self.published: dict[str, Published] = {}
        self._persisted: dict[str, TargetState] = {}
        self._was_leader = False
        self._state_loaded = False
        self.last_tick_s: float | None = None
        self.started = False

    # ------------------------------------------------------------------ policies and state

    async def _sync_policies(self, now: float) -> None:
        # Scanning and parsing files takes time (thousands of files, a 1 MiB file): never on the loop,
        # where it would delay the lease renewal, the probes and the metrics API.
        objects = self.policy_source.snapshot()  # here, on the loop, where the caches change
        result = await asyncio.to_thread(self.policy_source.reload, objects=objects)
        if not result.changed and self.entries:
            return
        refusals: dict[str, _Refusal] = {}
        for conflict in result.conflicts:
            before = self.refusals.get(conflict.policy.key)
            same = before is not None and before.conflict == conflict
            refusals[conflict.policy.key] = _Refusal(conflict, before.next_due if same and before else now)
        self.refusals = refusals
        wanted = {p.key: p for p in result.policies}
        for key in list(self.entries):
            if key not in wanted:
                gone = self.entries.pop(key).policy
                self.published.pop(key, None)
                self.telemetry.forget(gone)  # a stale desired-replicas gauge must not keep driving KEDA
        for key, policy in wanted.items():
            entry = self.entries.get(key)
            if entry is None:
                self.entries[key] = _Entry(policy, next_due=now, state=self._restored(key, policy, now))
            elif entry.policy != policy:
                old = entry.policy
                entry.policy = policy
                entry.next_due = min(entry.next_due, now + policy.interval_s)
                entry.state = retarget(entry.state, old, policy)
                if old.target != policy.target:
                    self.telemetry.forget(old)
                if entry.state.demand is None:
                    entry.warm_started = False  # another demand series: warm-start it again
            elif entry.policy.generation != policy.generation:
                entry.policy = policy  # an object's new generation with the same spec: its status says so
        if self.shards is not None:  # the state store files each policy's state under its shard now
            for entry in self.entries.values():
                self.shards.guard(entry.policy)
        self.object_problems = dict(result.object_problems)
        self.telemetry.policies.set(len(self.entries))
        self.telemetry.policy_errors.set(len(result.errors))

    def _restored(self, key: str, policy: ScalingPolicy, now: float) -> TargetState:
        """The persisted state of ``key``, unless it is older than the policy's windows (a long outage):
        then start as the HPA does after a restart, with the current count as the first recommendation,
        rather than from expired memory that would allow an immediate scale-down."""
        state = self._persisted.get(key)
        if state is None or not self.store.restorable(key, policy):
            return TargetState()
        if expired(state, policy, now):
            log.info("persisted state expired; starting fresh", extra={"policy": key})
            return TargetState(capacity=state.capacity)  # what was learned of the model still holds
        return state

    async def load_state(self, now: float | None = None) -> bool:
        """Read the persisted states (at start, and whenever this replica becomes leader). False when
        the read failed: the caller retries, and nothing is persisted until a read succeeded (a new
        leader must never overwrite the state it could not read)."""
        now = self.clock() if now is None else now
        try:
            self._persisted = await self.store.load()
        except KubeError as exc:
            log.warning("could not read persisted state: %s", exc)
            return False
        for key, entry in self.entries.items():
            if key in self._persisted and self.store.restorable(key, entry.policy):
                restored = self._restored(key, entry.policy, now)
                entry.state = TargetState(
                    restored.scaler,
                    entry.state.demand,
                    restored.load_times or entry.state.load_times,
                    restored.capacity or entry.state.capacity,  # learned knowledge, not window memory
                )
        return True

    async def _persist(self) -> None:
        states = {key: entry.state for key, entry in self.entries.items()}
        changed = _persisted_form(states) != _persisted_form(self._persisted)
        if changed and await self.store.save(states, guard=self.leadership.is_leader):
            self._persisted = states

    # ------------------------------------------------------------------ the tick

    async def tick(self, now: float | None = None) -> list[TickRecord]:
        """One pass: every policy that is due is decided (and acted on). Returns what happened."""
        now = self.clock() if now is None else now
        started = time.perf_counter()
        self.last_tick_s = now  # liveness: the loop runs, whether or not anything is due
        leader = self.leadership.is_leader()
        self.telemetry.leader.set(1 if leader else 0)
        term = self.shards.term() if self.shards is not None else 0
        if leader and (not self._was_leader or not self._state_loaded or term != self._term):
            self._state_loaded = await self.load_state(now)
            self._term = term
        self._was_leader = leader
        await self._sync_policies(now)
        refused = await self._report_refusals(now, leader)
        due = self._due(now)
        if not due:
            return refused
        policies = [e.policy for e in due]
        read_started = time.perf_counter()
        try:
            signals: Signals | None = await self.signals.read(policies, now_s=now)
        except Exception as exc:  # the reader reports per metric; this is a defect or total outage
            log.exception("signal read failed: %s", exc)
            self.telemetry.prometheus_errors.inc()
            signals = None
        self.telemetry.prometheus_seconds.observe(time.perf_counter() - read_started)
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def run(entry: _Entry) -> TickRecord:
            async with semaphore:
                if signals is None:
                    readings: Mapping[str, MetricReading] = {
                        m.name: MetricReading.missing(Unavailable.ERROR, "signal read failed")
                        for m in entry.policy.signals
                    }
                else:
                    readings = signals.for_policy(entry.policy)
                try:
                    return await self._process(entry, readings, now, self._leads(entry.policy, leader))
                except Exception as exc:  # one target's failure never aborts the others' tick
                    log.exception("policy tick failed", extra={"policy": entry.policy.key})
                    return TickRecord(entry.policy.key, now, None, None, error=f"tick failed: {exc}")

        records = await asyncio.gather(*(run(e) for e in due))
        for entry in due:
            # Fixed-rate schedule; a late tick does not cause a burst of catch-up ticks.
            entry.next_due = max(entry.next_due + entry.policy.interval_s, now + 0.001)
        if self.leadership.is_leader() and self._state_loaded and not self.settings.dry_run:
            try:
                if self.shards is None and getattr(self.store, "stale", False):
                    # Another writer's content landed after ours: a former leader's late write (one leader
                    # at a time). It is older than what this leader holds (read when it took the lease,
                    # then carried on): read it so the next save may replace it, and keep ours.
                    log.warning("state ConfigMap written by another writer; re-read, keeping this leader's state")
                    await self.store.load()
                await self._persist()
            except KubeError as exc:
                log.warning("state not persisted: %s", exc)
        await self._report_status(records, now)
        self.telemetry.tick_seconds.observe(time.perf_counter() - started)
        return refused + list(records)

    async def _report_status(self, records: Sequence[TickRecord], now: float) -> None:
        """The status of each ScalingPolicy object ticked now, and of each one refused, written by the
        holder of its lease (or shard) when it says something new (a merge patch of ``/status``)."""
        objects = self.policy_source.objects
        if objects is None or self.settings.dry_run or not self.leadership.is_leader():
            return  # a standby (or a replica holding no shard) writes no status: nothing to build
        statuses: list[tuple[ScalingPolicy | None, str, str, dict[str, Any], dict[str, Any] | None]] = []
        ticked = set()
        for record in records:
            entry = self.entries.get(record.policy)
            if entry is None or not entry.policy.source.startswith(OBJECT_KINDS):
                continue
            policy = entry.policy
            ticked.add(policy.source)
            obj = objects.get(policy.namespace, policy.name)
            if obj is None:
                continue
            previous = obj.get("status") if isinstance(obj.get("status"), dict) else None
            problem = self.object_problems.get(policy.source)
            generation = (obj.get("metadata") or {}).get("generation")
            status = policy_status(
                policy=policy,
                decision=record.decision,
                outcome=record.outcome.value,
                now_s=now,
                previous=previous,
                last_scale_s=now if record.wrote else None,
                ready_replicas=record.reading.ready_replicas if record.reading is not None else None,
                capacity=record.state.capacity if record.state is not None else None,
                target_error=(record.error or None) if record.decision is None else None,
                paused_by=record.paused_by,
                invalid=problem[1] if problem is not None else None,
                observed_generation=generation if problem is not None and isinstance(generation, int) else None,
            )
            statuses.append((policy, policy.namespace, policy.name, status, previous))
        running = {entry.policy.source for entry in self.entries.values()}
        for source, (reason, message) in self.object_problems.items():
            if source in ticked or source in running:
                continue
            namespace, _, name = source.partition(" ")[2].partition("/")
            obj = objects.get(namespace, name)
            if obj is None:
                continue
            previous = obj.get("status") if isinstance(obj.get("status"), dict) else None
            generation = (obj.get("metadata") or {}).get("generation")
            status = refused_status(
                generation=generation if isinstance(generation, int) else 0,
                reason=reason,
                message=message,
                now_s=now,
                previous=previous,
            )
            statuses.append((None, namespace, name, status, previous))
        semaphore = asyncio.Semaphore(self.settings.concurrency)

        async def write(item: tuple[ScalingPolicy | None, str, str, dict[str, Any], dict[str, Any] | None]) -> None:
            policy, namespace, name, status, previous = item
            guard = self._guard(policy) if policy is not None else self._object_guard(namespace, name)
            if not guard() or not status_differs(previous, status):
                return
            async with semaphore:
                try:
                    await objects.write_status(namespace, name, status_patch(status, previous), guard=guard)
                except KubeError as exc:  # the next tick tries again (the cache still holds the old status)
                    log.warning("status not written", extra={"policy": f"{namespace}/{name}", "error": str(exc)})

        await asyncio.gather(*(write(item) for item in statuses))

    def _object_guard(self, namespace: str, name: str) -> Callable[[], bool]:
        """Who writes the status of an object refused before it has a target (an invalid spec): the
        leader, or with shards the holder of one shard chosen by a stable hash of its name (one writer;
        "holds any shard" would make every replica write it)."""
        if self.shards is None:
            return self.leadership.is_leader
        index = zlib.crc32(f"{namespace}/{name}".encode()) % self.shards.count
        return self.shards.shard_guard(index)

    def _guard(self, policy: ScalingPolicy) -> Callable[[], bool]:
        """What every write for ``policy`` is guarded by: the lease, or with shards its shard's."""
        return self.leadership.is_leader if self.shards is None else self.shards.guard(policy)

    def _leads(self, policy: ScalingPolicy, leader: bool) -> bool:
        """Whether this tick acts for ``policy``: the tick's leadership, or with shards its shard's now."""
        return leader if self.shards is None else self.shards.guard(policy)()

    def _due(self, now: float) -> list[_Entry]:
        """The entries to tick now. With shards, one in a shard we may not write is not ticked (the work
        splits) unless it is ``external``; its schedule moves on, its memory and series are dropped (its
        holder persists its state; we read it back if we take the shard) and it is warm-started again."""
        due = [e for e in self.entries.values() if e.next_due <= now]
        if self.shards is None:
            return due
        mine = []
        for entry in due:
            if entry.policy.mode is Mode.EXTERNAL or self.shards.guard(entry.policy)():
                mine.append(entry)
                continue
            entry.next_due = max(entry.next_due + entry.policy.interval_s, now + 0.001)
            if entry.warm_started or entry.policy.key in self.published:
                entry.state = TargetState(capacity=entry.state.capacity)
                entry.warm_started = False
                self.published.pop(entry.policy.key, None)
                self.telemetry.forget(entry.policy)
        return mine

    async def _report_refusals(self, now: float, leader: bool) -> list[TickRecord]:
        """Each refused policy, at its interval: a Warning Event on the target it claims (from the
        leader), a counter, a log line and a record, as for a target an HPA manages."""
        records = []
        report = OUTCOMES[WriteOutcome.TARGET_OWNED]
        for refusal in self.refusals.values():
            if refusal.next_due > now:
                continue
            policy, owner = refusal.conflict.policy, refusal.conflict.owner
            refusal.next_due = max(refusal.next_due + policy.interval_s, now + 0.001)
            error = (
                f"refusing to act on {policy.target.kind}/{policy.target.name}: policy {owner.key} ({owner.source}) "
                f"already scales it"
            )
            self.telemetry.target_conflicts.labels(policy.namespace, policy.name).inc()
            if self._leads(policy, leader) and report.event_type is not None:
                message = f"{error}; one target, one policy: retarget or remove this policy ({policy.source})"
                await self._event(policy, report.event_type, report.event_reason, message, "")
            log.warning(
                "policy refused",
                extra={"policy": policy.key, "outcome": WriteOutcome.TARGET_OWNED.value, "error": error},
            )
            records.append(TickRecord(policy.key, now, None, None, error=error, outcome=WriteOutcome.TARGET_OWNED))
        return records

    async def _read(
        self, entry: _Entry, readings: Mapping[str, MetricReading], *, fresh: bool = False
    ) -> tuple[TargetReading, ScaleView]:
        """Read the target for ``step``: its scale subresource and its pods, with this tick's signals.
        From the watched cache, unless ``fresh`` (after a conflict the cache may still hold what lost)."""
        policy = entry.policy
        view = await self.actuator.read_scale(policy.namespace, policy.target, fresh=fresh)
        pods = await self.actuator.pod_summary(policy.namespace, view.selector, fresh=fresh)
        # Partial is unavailable: a total over the pods that report is judged against the Ready pods.
        metrics = covered(
            policy,
            readings,
            ready_pods=pods.ready_pods,
            spec_replicas=view.spec_replicas,
            status_replicas=view.status_replicas,
        )
        reading = TargetReading(
            spec_replicas=view.spec_replicas,
            ready_replicas=pods.ready,
            metrics=metrics,
            status_replicas=view.status_replicas,
            load_times_s=pods.load_times,
        )
        return reading, view

    async def _warm_start(self, entry: _Entry, now: float) -> None:
        policy = entry.policy
        history_days = (
            policy.predictive.history_days if policy.predictive else policy.slo.history_days if policy.slo else None
        )
        entry.warm_started = True
        if history_days is None or self.history is None:
            return
        interval = policy.interval_s
        try:
            history = await self.history.demand_history(
                policy, start_s=now - history_days * 86400, end_s=now - interval, step_s=interval
            )
        except Exception as exc:  # a warm start is an optimisation: never fatal
            log.warning("warm start failed", extra={"policy": entry.policy.key, "error": str(exc)})
            return
        if history is not None:
            entry.state = warm_start(entry.state, entry.policy, history)
            log.info("forecast history warm-started", extra={"policy": entry.policy.key, "points": len(history)})

    async def _write(
        self, entry: _Entry, readings: Mapping[str, MetricReading], now: float, reading: TargetReading,
        view: ScaleView, decision: Decision, state: TargetState,
    ) -> tuple[WriteOutcome, str, int, TargetReading, ScaleView, Decision, TargetState]:
        """Write ``decision`` (leader, patch mode, a change). On a 409 re-read and step again from the
        same input state, at most :data:`MAX_CONFLICT_RETRIES` times."""
        policy = entry.policy
        hpas, hpa_error = await self._hpas(policy)
        if hpa_error:
            return (
                WriteOutcome.HPA_CHECK_FAILED,
                f"refusing to patch: could not check for HPAs managing the target ({hpa_error})",
                0, reading, view, decision, state,
            )  # fmt: skip
        if hpas:
            error = f"refusing to patch {policy.target.kind}/{policy.target.name}: HPA {', '.join(hpas)} manages it"
            return WriteOutcome.HPA_PRESENT, error, 0, reading, view, decision, state
        conflicts = 0
        while True:
            if not self._guard(policy)():  # lost the lease mid-tick: stop writing at once
                return WriteOutcome.LOST_LEADERSHIP, "lost leadership before writing", conflicts, reading, view, \
                    decision, state
            try:
                await self.actuator.write_scale(
                    policy.namespace, policy.target, view, decision.desired_replicas, guard=self._guard(policy)
                )
            except KubeGuardFailed as exc:  # the lease lapsed while the client backed off: nothing was sent
                return WriteOutcome.LOST_LEADERSHIP, f"lost leadership: {exc}", conflicts, reading, view, \
                    decision, state
            except KubeConflict:
                conflicts += 1
                self.telemetry.scale_writes.labels(policy.namespace, policy.name, "conflict").inc()
                if conflicts > MAX_CONFLICT_RETRIES:
                    error = f"scale write conflicted {conflicts} times; will retry next tick"
                    return WriteOutcome.CONFLICTS_EXHAUSTED, error, conflicts, reading, view, decision, state
                try:
                    reading, view = await self._read(entry, readings, fresh=True)
                except KubeError as exc:
                    error = f"re-read after a conflict failed: {exc}"
                    return WriteOutcome.REREAD_FAILED, error, conflicts, reading, view, decision, state
                decision, state = step(reading, entry.state, policy, now, assume_applied=False)
                if not decision.changes_scale:
                    return WriteOutcome.NONE, "", conflicts, reading, view, decision, state
                continue
            except KubeError as exc:
                return WriteOutcome.FAILED, f"scale write failed: {exc}", conflicts, reading, view, decision, state
            state = acknowledge(state, decision=decision, policy=policy, now=now)
            return WriteOutcome.WRITTEN, "", conflicts, reading, view, decision, state

    async def _pause(self, policy: ScalingPolicy) -> tuple[Pause | None, str, str]:
        """The pause in force, who set it, and an error. The target's own annotations (annotating the
        Deployment with ``inference-autoscaler.io/paused=true`` in an incident, not the policy) come
        first, then the policy's. A target annotation that means nothing freezes writes at the current
        count (the operator meant to stop us) and says why; annotations that cannot be read block the
        write (not knowing is not "not paused")."""
        try:
            annotations = await self.actuator.target_annotations(policy.namespace, policy.target)
        except KubeError as exc:
            return None, "", f"refusing to write: could not read the target's annotations ({exc})"
        where = f"annotation on {policy.target.kind}/{policy.target.name}"
        try:
            pause = parse_pause(annotations)
        except PauseAnnotationError as exc:
            return Pause(None), f"{where} ({exc}: frozen at the current count)", ""
        if pause is not None:
            return pause, where, ""
        return policy.pause, "annotation", ""

    async def _paused(
        self, policy: ScalingPolicy, pause: Pause, by: str, view: ScaleView, decision: Decision
    ) -> tuple[WriteOutcome, str, Decision]:
        """Writes frozen by an annotation (``by``: the policy's or the target's). With ``paused-replicas``
        the target is set to that count once (one write, no re-deciding on a conflict: the next tick
        tries again), then held; the core's own decision is reported as what the policy would do."""
        if pause.replicas is None or view.spec_replicas == pause.replicas:
            held = view.spec_replicas if pause.replicas is None else pause.replicas
            if decision.desired_replicas == held:
                return WriteOutcome.NONE, "", decision
            # one stable message, so that the Event's count goes up instead of a new Event each tick; what
            # the policy would do is in the decision (the log line and the published values)
            return WriteOutcome.PAUSED, f"paused by {by} at {view.spec_replicas}: writes are frozen", decision
        would = f"the policy would scale to {decision.desired_replicas} ({decision.reason.value}: {decision.message})"
        pinned = replace(
            decision,
            desired_replicas=pause.replicas,
            reason=Reason.PAUSED,
            message=f"paused at {pause.replicas} by {by}; {would}",
        )
        hpas, hpa_error = await self._hpas(policy)
        if hpa_error:
            return WriteOutcome.HPA_CHECK_FAILED, f"refusing to set the paused count: {hpa_error}", pinned
        if hpas:
            error = f"refusing to set the paused count: HPA {', '.join(hpas)} manages {policy.target.name}"
            return WriteOutcome.HPA_PRESENT, error, pinned
        try:
            await self.actuator.write_scale(
                policy.namespace, policy.target, view, pause.replicas, guard=self._guard(policy)
            )
        except KubeGuardFailed as exc:
            return WriteOutcome.LOST_LEADERSHIP, f"lost leadership: {exc}", pinned
        except KubeError as exc:  # a conflict too: the next tick reads again and retries
            return WriteOutcome.FAILED, f"setting the paused count failed: {exc}", pinned
        return WriteOutcome.WRITTEN, "", pinned

    async def _report_outcome(
        self, policy: ScalingPolicy, outcome: WriteOutcome, error: str, decision: Decision, uid: str
    ) -> None:
        """The one place an outcome becomes an Event, a counter and (through the caller) a log line."""
        report = OUTCOMES[outcome]
        if report.counter is not None:
            self.telemetry.scale_writes.labels(policy.namespace, policy.name, report.counter).inc()
        if report.event_type is None:
            return
        if outcome is WriteOutcome.WRITTEN:
            verb = "ScaleUp" if decision.desired_replicas > decision.current_replicas else "ScaleDown"
            message = f"New size: {decision.desired_replicas}; reason: {decision.reason.value}; {decision.message}"
            await self._event(policy, report.event_type, verb, message, uid)
        elif outcome is WriteOutcome.HPA_PRESENT:
            message = f"{error}; use mode external (and point that HPA at our metrics) or delete the HPA"
            await self._event(policy, report.event_type, report.event_reason, message, uid)
        else:
            await self._event(policy, report.event_type, report.event_reason, error, uid)

    async def _process(
        self, entry: _Entry, readings: Mapping[str, MetricReading], now: float, leader: bool
    ) -> TickRecord:
        policy = entry.policy
        if not entry.warm_started:
            await self._warm_start(entry, now)
        try:
            reading, view = await self._read(entry, readings)
        except KubeNotFound as exc:
            log.error("target not found", extra={"policy": policy.key, "error": str(exc)})
            return TickRecord(policy.key, now, None, None, error=f"target not found: {exc.message}")
        except KubeError as exc:
            log.error("target read failed", extra={"policy": policy.key, "error": str(exc)})
            return TickRecord(policy.key, now, None, None, error=str(exc))

        decision, state = step(reading, entry.state, policy, now, assume_applied=False)
        writes = policy.mode is Mode.PATCH and not self.settings.dry_run
        outcome, error, conflicts = WriteOutcome.NONE, "", 0
        pause, paused_by, pause_error = policy.pause, "annotation", ""
        if writes and leader:
            pause, paused_by, pause_error = await self._pause(policy)
        self.telemetry.paused.labels(policy.namespace, policy.name).set(1 if pause is not None else 0)
        if writes and leader and pause_error:
            outcome, error = WriteOutcome.PAUSE_CHECK_FAILED, pause_error
            await self._report_outcome(policy, outcome, error, decision, view.uid)
        elif writes and leader and pause is not None:
            outcome, error, decision = await self._paused(policy, pause, paused_by, view, decision)
            if outcome is not WriteOutcome.NONE:
                await self._report_outcome(policy, outcome, error, decision, view.uid)
        elif writes and decision.changes_scale and leader:
            outcome, error, conflicts, reading, view, decision, state = await self._write(
                entry, readings, now, reading, view, decision, state
            )
            await self._report_outcome(policy, outcome, error, decision, view.uid)
        elif policy.mode is Mode.SHADOW and decision.changes_scale and leader:
            await self._event(
                policy,
                "Normal",
                "ShadowDecision",
                f"would scale to {decision.desired_replicas} (shadow mode, nothing written); {decision.message}",
                view.uid,
            )
        placeholder = decision.placeholder_pods
        if writes and placeholder is not None and policy.warm_pool is not None and not OUTCOMES[outcome].refused:
            await self._size_placeholder(policy, placeholder, view.uid)
        if decision.reason in (Reason.METRICS_UNAVAILABLE, Reason.FALLBACK) and leader:
            await self._event(policy, "Warning", decision.reason.value, decision.message, view.uid)
        entry.state = state
        self.published[policy.key] = Published(policy, decision, dict(reading.metrics), now)
        self._report(policy, reading, decision)
        wrote = outcome is WriteOutcome.WRITTEN
        # A decision that changes nothing is logged at debug (the HPA logs those at -v=4): at 10,000 targets
        # an info line per target per tick is 40,000 lines a minute that say "keep". Its figures are in the
        # metrics and, for an object, in its status.
        quiet = not decision.changes_scale and outcome is WriteOutcome.NONE and not error
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "decision",
            extra={
                "policy": policy.key,
                "mode": policy.mode.value,
                "current": decision.current_replicas,
                "desired": decision.desired_replicas,
                "reason": decision.reason.value,
                "decision_message": decision.message,
                "wrote": wrote,
                "outcome": outcome.value,
                "conflicts": conflicts,
                **({"error": error} if error else {}),
            },
        )
        return TickRecord(policy.key, now, reading, decision, wrote, error, conflicts, outcome, state,
                          paused_by if pause is not None else None)

    async def _size_placeholder(self, policy: ScalingPolicy, pods: int, uid: str) -> None:
        assert policy.warm_pool is not None and policy.warm_pool.placeholder is not None
        name = policy.warm_pool.placeholder.name
        if not self._guard(policy)():  # leadership is re-checked before every write
            return
        try:
            if await self.actuator.scale_deployment(policy.namespace, name, pods, guard=self._guard(policy)):
                log.info("placeholder resized", extra={"policy": policy.key, "placeholder": name, "pods": pods})
        except KubeNotFound:
            await self._event(
                policy, "Warning", "PlaceholderMissing", f"warm-pool placeholder Deployment {name} not found", uid
            )
        except KubeError as exc:
            log.warning("placeholder not resized: %s", exc)

    async def _hpas(self, policy: ScalingPolicy) -> tuple[list[str], str]:
        """HPAs managing the target, or an error: not knowing is not "none" (two controllers must
        never fight over a target), so a failed check blocks the write."""
        try:
            return await self.actuator.managing_hpas(policy.namespace, policy.target), ""
        except KubeError as exc:
            log.warning("could not list HPAs; not writing", extra={"policy": policy.key, "error": str(exc)})
            return [], str(exc)

    async def _event(self, policy: ScalingPolicy, type_: str, reason: str, message: str, uid: str) -> None:
        guard = self._guard(policy)
        if not guard() or self.settings.dry_run:
            return
        try:
            await self.actuator.record_event(
                policy.namespace,
                policy.target,
                type_=type_,
                reason=reason,
                message=f"policy {policy.name}: {message}",
                uid=uid,
                guard=guard,
            )
        except KubeGuardFailed:
            pass  # the lease (or shard) went while backing off: the new holder reports from now on
        except KubeError as exc:
            log.warning("event not recorded: %s", exc)

    def _report(self, policy: ScalingPolicy, observation: TargetReading, decision: Decision) -> None:
        t = self.telemetry
        ns, name, target = policy.namespace, policy.name, policy.target.name
        t.desired.labels(ns, name, target).set(decision.desired_replicas)
        t.current.labels(ns, name, target).set(observation.spec_replicas)
        t.ready.labels(ns, name, target).set(observation.ready_replicas)
        t.decisions.labels(ns, name, decision.reason.value).inc()
        if decision.forecast is not None:
            t.forecast.labels(ns, name).set(decision.forecast.point)
            t.forecast_upper.labels(ns, name).set(decision.forecast.upper)
        if decision.horizon_s is not None:
            t.forecast_horizon.labels(ns, name).set(decision.horizon_s)
        if decision.predictive_replicas is not None:
            t.predictive_replicas.labels(ns, name).set(decision.predictive_replicas)
        if decision.placeholder_pods is not None:
            t.placeholder_pods.labels(ns, name).set(decision.placeholder_pods)
        for spec in policy.metrics:
            reading = observation.reading(spec.name)
            t.metric_target.labels(ns, name, spec.name).set(spec.target.milli / 1000)
            if reading.value is not None:
                t.metric_value.labels(ns, name, spec.name).set(reading.value)
            else:
                t.unavailable.labels(ns, name, spec.name, (reading.unavailable or Unavailable.MISSING).value).inc()
            proposal = decision.proposals.get(spec.name)
            if proposal is not None:
                t.metric_proposal.labels(ns, name, spec.name).set(proposal)

    # ------------------------------------------------------------------ running

    async def run(
        self,
        stop: asyncio.Event,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        granularity_s: float = 1.0,
    ) -> None:
        """Tick until ``stop`` is set; the tick in progress always finishes (graceful shutdown)."""
        await self.load_state()
        self.started = True
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # one bad tick must not kill the loop
                log.exception("tick failed")
            next_due = min((e.next_due for e in self.entries.values()), default=self.clock() + granularity_s)
            delay = min(max(next_due - self.clock(), 0.05), granularity_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


def _persisted_form(states: Mapping[str, TargetState]) -> dict[str, object]:
    """What the store keeps of each state (the demand history is warm-started, not persisted)."""
    return {key: (state.scaler, state.load_times, state.capacity) for key, state in states.items()}
