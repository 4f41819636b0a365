"""SLO sizing: a latency objective in, replicas out, with the per-replica capacity learned online. Pure.

The unit of demand is a **request in flight** (running + waiting, summed over the target's pods): by
Little's law it is arrival rate x time in the server, it is what the KPA and Ray Serve scale on, and
it needs no per-model token model. A replica serves ``slots`` requests at once (vLLM's batch, limited
by ``max_num_seqs`` or the KV cache); the objective may hold only below that (an end-to-end bound that
a full batch's slower decode breaks), so the usable capacity is ``slots x factor``.

**Learning the capacity** (:func:`learn_capacity`, once per tick, state in :class:`CapacityEstimate`):

* ``slots``: when the fleet is saturated (requests waiting, at least one per two ready replicas) the
  running requests per ready replica *are* the batch limit; an average over saturated ticks. Before
  any saturation it is the policy's prior, or the most requests per replica ever seen running (a
  lower bound: safe, and raised by the first burst). A replica seen running more than ``slots``
  without a queue raises it at once. While no saturation was ever seen and the objective holds with
  room to spare, the estimate grows 1 % a tick (exploration): sizing at the most ever seen would keep
  the real limit unknown forever; the first saturation then measures it.
* ``factor``: when an end-to-end objective is violated with no queue to blame (no saturation for a
  latency window) for a minute, at a load above one request per replica and above the loads it held at
  lately, and the service itself takes at least half the bound (so that a full batch's slower decode
  can be the cause), the capacity drops below the load it failed at (a new model or image that is
  slower; at most to half the batch). A shrink that does not help (the objective still fails at a
  much lower load) is undone: the objective is then reported as unreachable by scaling. While the
  objective holds comfortably near the capacity, it grows back slowly (0.5 % a tick). An objective
  violated even at one request per replica cannot be met by adding replicas: that is reported, and
  the capacity is not shrunk for it.

**Sizing** (:func:`plan_slo`):

* demand now = running + the part of the backlog that must be served in parallel to drain it within
  the objective: ``waiting x S / D`` (``S`` the mean time in service by Little's law from the
  completion rate, ``D`` the time the objective leaves for waiting), at most ``waiting``. A queue that
  the fleet drains before new pods could help adds little; nothing runs away to the cap during load.
* headroom: square-root staffing for the objective's percentile, ``a + z_p sqrt(I a)``, with ``I``
  the index of dispersion of the recent in-flight series (1 for Poisson, larger for bursty traffic).
* the forecast: in-flight demand over the horizon (load time + interval), its median with the same
  headroom, and its upper quantile; the largest of these and the need now sets the slots.
* replicas = ceil(slots / capacity) + ``warmPool.minSpare``.
* release: once the forecast is calibrated its horizon already covers the next load time, so a scale
  down need not wait out the stabilization window (the rate limits still apply); it never goes
  below what the objective needs now.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from autoscaler.core.model import Observation
from autoscaler.core.policy import ScalingPolicy, Slo, SloObjective

if TYPE_CHECKING:
    from collections.abc import Mapping

    from autoscaler.forecast import Forecast

__all__ = [
    "DEFAULT_SLOTS",
    "CapacityEstimate",
    "SloPlan",
    "demand",
    "erlang_c",
    "initial_capacity",
    "learn_capacity",
    "plan_slo",
    "slots_for_wait",
]

SATURATED_WAITING_PER_READY = 0.5  # waiting >= this x ready (and >= 1): the batch is full
SLOTS_EWMA = 0.1  # weight of a new saturated tick in the slot estimate
FACTOR_GROWTH = 0.005  # per tick while the objective holds comfortably near capacity
COMFORT = 0.8  # "comfortably": latency at most this share of the bound
LATENCY_WINDOW_S = 90.0  # a latency quantile reflects this much of the past (rate window + scrape)
DISPERSION_WINDOW_S = 600.0
OFFERED_WINDOW_S = 60.0  # the offered load is the demand's mean over this window
MAX_DISPERSION = 25.0
SHORT_HISTORY = "short-history"
MAX_FORECAST_GROWTH = 2.0  # the forecast may raise the need to at most this multiple of the need now
VIOLATION_STREAK = 4  # violating ticks in a row before the capacity shrinks (a minute at 15 s)
UNHELPED = 0.7  # a violation at below this share of the load the last shrink was made at undoes it
MIN_FACTOR = 0.5
LARGE_LOAD = 5000.0  # above this many requests in flight, square-root staffing (see slots_for_wait)
MAX_SLOTS = 100000.0  # the policy schema's bound on concurrencyPerReplica: nothing learned goes beyond it
SATURATED_SAMPLES = 5
DEFAULT_SLOTS = 8.0  # before any evidence: a continuous-batching engine runs at least this many at once
EXPLORE_CAP = 1.25  # latency evidence alone never takes more than half of the batch away
HELD_DECAY = 0.995
SERVICE_SHARE = 0.5  # the batch can break an e2e bound only when service takes at least this share of it
EXPLORE_BELOW = 0.5  # explore a higher batch limit only while latency is at most this share of the bound
EXPLORE_USE = 0.4  # ... and the replicas run at least this share of the current estimate
EXPLORE_GROWTH = 0.01  # per tick (about +4 % a minute at 15 s ticks)


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """What one replica of this target sustains within the objective, as learned so far."""

    slots: float
    """Requests one replica runs at once when saturated."""
    factor: float = 1.0
    """Share of the slots usable within the objective (1: the batch limit binds, not latency)."""
    origin: str = "default"  # default | prior | observed
    ticks: int = 0
    saturated_ticks: int = 0
    last_saturated_s: float = -math.inf
    violations: int = 0
    unreachable_s: float = -math.inf
    """Last time the objective failed at one request per replica: no replica count can meet it."""
    max_seen: float = 0.0
    """The most requests per ready replica ever seen running."""
    saturated_samples: tuple[float, ...] = ()
    """Requests per replica at the last few saturated ticks."""
    violation_streak: int = 0
    held_at: float = 0.0
    """The highest load per replica at which the objective held lately (decays 0.5 % a tick)."""
    shrunk_at: float | None = None
    """The load per replica at the last shrink, while it is being tested."""

    @property
    def per_replica(self) -> float:
        return max(1.0, self.slots * self.factor)

    def explain(self) -> str:
        how = {
            "default": f"no saturation seen yet: at least {DEFAULT_SLOTS:g}, or the most seen running per replica",
            "prior": "the policy's prior",
            "observed": f"batch limit from {self.saturated_ticks:,} saturated ticks",
        }[self.origin]
        text = f"capacity ~{self.per_replica:.3g} in flight per replica ({how}"
        if self.factor < 1.0:
            text += f", x{self.factor:.2f} for the objective"
        return text + f"; learned from {self.ticks:,} ticks)"

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": round(self.slots, 4),
            "factor": round(self.factor, 4),
            "origin": self.origin,
            "ticks": self.ticks,
            "sat": self.saturated_ticks,
            "lastSat": None if math.isinf(self.last_saturated_s) else self.last_saturated_s,
            "viol": self.violations,
            "held": round(self.held_at, 4),
            "max": round(self.max_seen, 4),
            "satSamples": [round(v, 4) for v in self.saturated_samples],
            "shrunk": self.shrunk_at,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> CapacityEstimate:
        slots, factor = float(data["slots"]), float(data["factor"])
        if not (math.isfinite(slots) and 0 < slots <= MAX_SLOTS and math.isfinite(factor) and 0 < factor <= 1):
            raise ValueError(f"persisted capacity out of range: slots={slots}, factor={factor}")
        origin = str(data.get("origin", "observed"))
        if origin not in ("default", "prior", "observed"):
            raise ValueError(f"persisted capacity origin {origin!r}")
        last = data.get("lastSat")
        return CapacityEstimate(
            slots=slots,
            factor=factor,
            origin=origin,
            ticks=int(data.get("ticks", 0)),
            saturated_ticks=int(data.get("sat", 0)),
            last_saturated_s=-math.inf if last is None else float(last),
            violations=int(data.get("viol", 0)),
            held_at=min(MAX_SLOTS, max(0.0, float(data.get("held", 0.0)))),
            max_seen=min(MAX_SLOTS, max(0.0, float(data.get("max", 0.0)))),
            saturated_samples=tuple(min(MAX_SLOTS, max(1.0, float(v))) for v in data.get("satSamples", ()))[
                -SATURATED_SAMPLES:
            ],
            shrunk_at=None if data.get("shrunk") is None else float(data["shrunk"]),
        )


def initial_capacity(slo: Slo) -> CapacityEstimate:
    if slo.concurrency_prior is not None:
        return CapacityEstimate(slots=slo.concurrency_prior, origin="prior")
    return CapacityEstimate(slots=DEFAULT_SLOTS, origin="default")


def _service_time(running: float, completions: float | None) -> float | None:
    """The mean time in service by Little's law (running / completion rate), when both are usable."""
    if not completions or running <= 0:
        return None
    service_s = running / completions
    return service_s if 1e-6 < service_s < 1e6 else None


def _finite_nonneg(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def learn_capacity(
    capacity: CapacityEstimate,
    slo: Slo,
    *,
    running: float | None,
    waiting: float | None,
    latency_s: float | None,
    ready: int,
    now: float,
    completions: float | None = None,
) -> CapacityEstimate:
    """One tick of learning; readings that are missing or broken teach nothing."""
    running, waiting, latency_s = _finite_nonneg(running), _finite_nonneg(waiting), _finite_nonneg(latency_s)
    completions = _finite_nonneg(completions)
    if running is None or waiting is None or ready <= 0:
        return capacity
    if completions == 0 and running > 0:
        latency_s = None  # nothing finished in the window: a stall or long requests, not "latency 0"
    x = min(running / ready, MAX_SLOTS)
    cap = replace(capacity, ticks=capacity.ticks + 1, max_seen=max(capacity.max_seen, x))
    saturated = waiting >= 1 and waiting >= SATURATED_WAITING_PER_READY * ready and running > 0
    if saturated:
        # The batch limit is the median of the recent saturated ticks (one glitching scrape, or pods
        # draining while they still report, moves it by one sample, not to the glitch), then refined.
        samples = (*cap.saturated_samples, max(x, 1.0))[-SATURATED_SAMPLES:]
        median = statistics.median(samples)
        if cap.saturated_ticks < SATURATED_SAMPLES:
            slots = median
        else:
            slots = max(1.0, cap.slots + SLOTS_EWMA * (min(median, 2 * cap.slots) - cap.slots))
        cap = replace(cap, slots=slots, origin="observed", saturated_ticks=cap.saturated_ticks + 1,
                      last_saturated_s=now, saturated_samples=samples)  # fmt: skip
    elif x > cap.slots and cap.origin != "observed":
        # A replica ran more than that without a queue: the batch is at least this. After the first
        # minute at most +10 % a tick (a glitch must not ratchet it up); never once it was measured.
        cap = replace(cap, slots=x if cap.ticks <= SATURATED_SAMPLES else min(x, cap.slots * 1.1))
    if latency_s is None or saturated or now - cap.last_saturated_s < LATENCY_WINDOW_S:
        return cap  # a latency that queueing explains says nothing about the batch
    if (
        cap.saturated_ticks == 0
        and latency_s <= EXPLORE_BELOW * slo.bound_s
        and x >= EXPLORE_USE * cap.slots
    ):
        # Never saturated, the objective holds with room to spare while the replicas are in real use:
        # the batch limit is not known yet, and sizing at the most ever seen would keep it unknown. Bet
        # a little higher each tick (at most 25 % over the most ever seen running per replica); the
        # first saturation then measures the real limit.
        cap = replace(cap, slots=min(cap.slots * (1.0 + EXPLORE_GROWTH), max(cap.slots, EXPLORE_CAP * cap.max_seen)))
    if latency_s > slo.bound_s:
        if x <= 1.0:
            return replace(cap, unreachable_s=now, violations=cap.violations + 1)
        service_s = _service_time(running, completions)
        if slo.objective is not SloObjective.E2E or service_s is None or service_s < SERVICE_SHARE * slo.bound_s:
            # Only an end-to-end bound that the service itself mostly spends can be broken by a full
            # batch's slower decode; otherwise the tail is waiting (bursts between scrapes) or long
            # requests, which a smaller batch does not fix.
            return replace(cap, violations=cap.violations + 1)
        streak = cap.violation_streak + 1
        if cap.shrunk_at is not None and x < UNHELPED * cap.shrunk_at:
            # The last shrink brought the load per replica well down and the objective still fails:
            # it was not the batch. Undo it and say that replicas cannot meet the objective.
            return replace(cap, factor=1.0, shrunk_at=None, violation_streak=0, unreachable_s=now,
                           violations=cap.violations + 1)  # fmt: skip
        if streak < VIOLATION_STREAK or x < 0.9 * cap.held_at:
            # One bad minute, or a load the objective has held at before: not (yet) evidence that
            # the batch is too slow at this load.
            return replace(cap, violation_streak=streak, violations=cap.violations + 1)
        below = 0.95 * x / cap.slots
        factor = max(MIN_FACTOR, min(cap.factor * 0.9, below))
        return replace(cap, factor=min(cap.factor, factor), violations=cap.violations + 1, violation_streak=0,
                       shrunk_at=x, held_at=0.0)  # fmt: skip
    cap = replace(cap, violation_streak=0, held_at=max(cap.held_at * HELD_DECAY, x))
    if latency_s <= COMFORT * slo.bound_s and x >= COMFORT * cap.per_replica and cap.factor < 1.0:
        factor = min(1.0, cap.factor + FACTOR_GROWTH)
        return replace(cap, factor=factor, shrunk_at=None if factor >= 1.0 else cap.shrunk_at)
    return cap


def _wait_allowed(slo: Slo, service_s: float, interval_s: float) -> float:
    """How long a request may wait for a slot and still meet the objective. TTFT and queue objectives
    leave most of the bound to the wait (prefill is a small share of it); an end-to-end bound leaves
    what the service itself does not take, and never less than a tenth of the bound."""
    if slo.objective is SloObjective.E2E:
        return max(slo.bound_s - service_s, 0.1 * slo.bound_s)
    if slo.objective is SloObjective.TTFT:
        return 0.8 * slo.bound_s  # the rest for prefill
    return slo.bound_s


@dataclass(frozen=True, slots=True)
class SloPlan:
    replicas: int
    slots: float  # requests in flight to provide for
    forecast: Forecast | None
    horizon_s: float
    release: bool  # a calibrated forecast covers the horizon: scale-down need not wait out the window
    need_now: int  # what the objective needs now, without the forecast (release never goes below)
    note: str


def _dispersion(observation: Observation, now: float) -> float:
    """Index of dispersion (variance / mean) of the recent demand series, >= 1.

    The variance is taken from successive differences (half their mean square), so that a ramp or a
    level shift, which the forecast handles, does not read as noise that needs more headroom.
    """
    history = observation.demand_history
    if history is None:
        return 1.0
    recent = history.until(now).values[-max(1, int(DISPERSION_WINDOW_S / history.step_s)) :]
    finite = [v for v in recent.tolist() if math.isfinite(v) and v >= 0]
    if len(finite) < 8:
        return 1.0
    mean = sum(finite) / len(finite)
    if mean <= 0:
        return 1.0
    variance = sum((b - a) ** 2 for a, b in itertools.pairwise(finite)) / (2 * (len(finite) - 1))
    return float(min(MAX_DISPERSION, max(1.0, variance / mean)))


def demand(slo: Slo, *, running: float | None, waiting: float | None, completions: float | None,
           interval_s: float) -> tuple[float, float | None, float] | None:
    """Requests in flight to serve in parallel now: running, plus the share of the backlog that must run
    in parallel to drain it within what the objective leaves for waiting (``waiting x S / D``, at most
    ``waiting``). A backlog counts even when the ready replicas clear it before new ones could be ready:
    scaling for bursts that the objective cannot absorb is what keeps the next one within it (measured:
    ignoring such bursts cost 4 points of attainment on the Azure code trace for 3 % fewer GPU-hours).

    Returns (demand, mean service time or None, backlog share), or None when running or waiting cannot
    be read. The same value is what the forecast learns from, so that a backlog (a symptom of too few
    replicas, not demand) does not teach it a ramp."""
    running, waiting, completions = _finite_nonneg(running), _finite_nonneg(waiting), _finite_nonneg(completions)
    if running is None or waiting is None:
        return None
    service_s = _service_time(running, completions)
    if waiting > 0 and service_s is not None:
        budget_s = slo.bound_s - (service_s if slo.objective is SloObjective.E2E else 0.0)
        budget_s = max(budget_s, 0.1 * slo.bound_s)
        backlog = min(waiting, waiting * service_s / budget_s)
    else:
        backlog = waiting
    return running + backlog, service_s, backlog


def _recent_mean(observation: Observation, now: float, *, fallback: float) -> float:
    """The demand series' mean over the last :data:`OFFERED_WINDOW_S` (this tick's value included)."""
    history = observation.demand_history
    if history is None:
        return fallback
    recent = history.until(now).values[-max(1, round(OFFERED_WINDOW_S / history.step_s)) :]
    finite = [v for v in recent.tolist() if math.isfinite(v) and v >= 0]
    return sum(finite) / len(finite) if finite else fallback


def _staffed(load: float, z: float, dispersion: float) -> float:
    """Square-root staffing: slots for ``load`` with a ``z``-sigma margin (no service time known)."""
    return load + z * math.sqrt(dispersion * load) if load > 0 else 0.0


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``servers`` and offered ``load`` (< c).

    Erlang B by its stable recursion (no factorials: fine for thousands of servers), then C from B.
    """
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return servers * b / (servers - load * (1.0 - b))


def slots_for_wait(load: float, *, service_s: float, wait_s: float, percentile: float, dispersion: float) -> int:
    """The fewest slots (servers) so that at most ``1 - percentile`` of requests wait longer than ``wait_s``.

    M/M/c waiting tail ``P(W > t) = C(c, a) exp(-(c - a) t / S)``; for burstier traffic than Poisson the
    decay is slowed by the dispersion (the Allen-Cunneen / Kingman scaling, ``(ca^2 + cs^2) / 2``).
    These are optimistic for LLM traffic (multi-modal service times), hence the dispersion measured
    from the target's own in-flight series rather than assumed.
    """
    if load <= 0:
        return 0
    miss = 1.0 - percentile / 100.0
    if load > LARGE_LOAD:
        # Thousands of servers: the Erlang recursion is O(load) in Python on the event loop; the
        # Halfin-Whitt regime's square-root staffing is what it converges to there.
        z = NormalDist().inv_cdf(min(1 - miss, 0.999))
        return math.ceil(load + z * math.sqrt(dispersion * load))
    c = max(1, math.floor(load) + 1)
    # Incremental Erlang B: extend the recursion as c grows (O(c) in total).
    b = 1.0
    for k in range(1, c + 1):
        b = load * b / (k + load * b)
    while True:
        wait_prob = c * b / (c - load * (1.0 - b))
        tail = wait_prob * math.exp(-(c - load) * wait_s / (service_s * dispersion))
        if tail <= miss or c > 10 * load + 1000:
            return c
        c += 1
        b = load * b / (c + load * b)


def plan_slo(
    policy: ScalingPolicy,
    observation: Observation,
    capacity: CapacityEstimate,
    *,
    horizon_s: float,
    horizon_note: str,
    now: float,
) -> SloPlan | None:
    """Replicas for the objective this tick; None when requests in flight cannot be read."""
    slo = policy.slo
    assert slo is not None
    running = _finite_nonneg(observation.reading(slo.running.name).value)
    waiting = _finite_nonneg(observation.reading(slo.waiting.name).value)
    now_demand = demand(
        slo, running=running, waiting=waiting, completions=observation.reading(slo.completions.name).value,
        interval_s=policy.interval_s,
    )
    if running is None or waiting is None or now_demand is None:
        return None
    load_now, service_s, backlog = now_demand
    per_replica = capacity.per_replica
    z = NormalDist().inv_cdf(min(slo.percentile, 99.9) / 100.0)
    dispersion = _dispersion(observation, now)
    if backlog and service_s is not None:
        backlog_note = f" + backlog {waiting:.4g} waiting x S {service_s:.3g}s / budget = {backlog:.4g}"
    else:
        backlog_note = f" + waiting {waiting:.4g}" if waiting else ""
    if service_s is not None:
        wait_s = _wait_allowed(slo, service_s, policy.interval_s)

        def staff(load: float) -> float:
            return float(slots_for_wait(load, service_s=service_s, wait_s=wait_s, percentile=slo.percentile,
                                        dispersion=dispersion))  # fmt: skip

        method = f"M/M/c wait <= {wait_s:.3g}s at p{slo.percentile:g}, S {service_s:.3g}s"
    else:

        def staff(load: float) -> float:
            return _staffed(load, z, dispersion)

        method = f"sqrt staffing at p{slo.percentile:g}"
    # Queueing models take the offered load (a mean), not one sample of a count that already swings
    # around it: staff the demand's mean over the last minute (the KPA's stable window), and the count
    # now when requests are queueing (a surge must not wait for the mean to catch up).
    offered = _recent_mean(observation, now, fallback=load_now)
    if waiting > 0:
        offered = max(offered, load_now)
    slots_now = staff(offered)
    # The mean decides how far up; a scale-down also never goes below what the count in flight now needs.
    need_now = math.ceil(max(slots_now, staff(load_now)) / per_replica - 1e-9)

    forecast = None
    slots = slots_now
    lead = "now"
    if observation.demand_history is not None:
        from autoscaler.forecast import forecast_from_fit  # numpy: only for forecasting policies

        forecast = forecast_from_fit(  # the fit refreshed by ``step``: cheap between refits
            observation.forecast_fit,
            observation.demand_history,
            now_s=now,
            horizon_s=horizon_s,
            quantile=slo.forecast_quantile,
            seasonality_s=slo.seasonality_s,
        )
        if forecast is not None and forecast.model == SHORT_HISTORY:
            forecast = None  # not calibrated yet: its band is the recent max, and a glitch would pin it
    if forecast is not None:
        # The median staffed like the load now, or the upper band served without waiting: the band
        # already is the variability at the horizon, so it gets no second margin.
        ahead = max(staff(forecast.point), forecast.upper)
        # A forecast may at most double the need now (the KPA's panic threshold): a ramp it has seen
        # grows far less within one load time, and a trend fitted to a flash crowd's ramp keeps
        # extrapolating it after the crowd is gone.
        ahead = min(ahead, MAX_FORECAST_GROWTH * max(slots_now, per_replica))
        if ahead > slots:
            slots, lead = ahead, f"forecast at +{horizon_s:.0f}s"
    pool = policy.warm_pool
    spare = pool.min_spare if pool is not None else 0
    replicas = math.ceil(slots / per_replica - 1e-9) + spare
    current = observation.spec_replicas
    hysteresis = ""
    if replicas < current:
        replicas = min(current, max(replicas, need_now + spare))
        # Scale down only with the behavior's tolerance to spare (the HPA's dead band): a need just
        # under a replica boundary would otherwise flip a replica off and on with every tick's noise,
        # and each flip costs a model load.
        tolerance = min(max(policy.behavior.scale_down.tolerance, 0.0), 0.9)
        banded = math.ceil(slots / (per_replica * (1.0 - tolerance)) - 1e-9) + spare
        if banded > replicas:
            replicas = min(current, banded)
            hysteresis = f"; down only with {tolerance:.0%} to spare -> {replicas}"
    note = (
        f"{slo.describe()}: in flight {running:.4g} running{backlog_note}, offered {offered:.4g}"
        f" -> {slots_now:.4g} slots ({method}, dispersion {dispersion:.2g})"
    )
    if forecast is not None:
        note += f"; {forecast.explain()} ({horizon_note})"
    note += f"; {lead} needs {slots:.4g} slots / {capacity.explain()} -> {replicas}{hysteresis}"
    if spare:
        note += f" (incl. {spare} spare)"
    if now - capacity.unreachable_s < LATENCY_WINDOW_S:
        note += f"; objective missed even at <= 1 request per replica: replicas cannot meet {slo.describe()}"
    return SloPlan(
        replicas=replicas,
        slots=slots,
        forecast=forecast,
        horizon_s=horizon_s,
        release=forecast is not None,
        need_now=need_now + spare,
        note=note,
    )
