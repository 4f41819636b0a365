"""``tune`` end to end: for each fold, search on the fit part, then judge on the held-out part.

Per fold (:mod:`autoscaler.tune.split`):

1. **Fit phase**, on a context whose trace is cut at the fold's origin (:meth:`SimContext.cut`): the
   current policy and the baselines run on the fit part (the target attainment may be the
   baselines'), then one search per seed (:func:`autoscaler.tune.search.search`). The proposal is the
   best candidate over the seeds *by the fit part's score*; when the current policy beats every
   candidate, the proposal is to change nothing. Each changed value is then explained: the proposal
   with that value alone reverted runs on the fit part, and the comment in the tuned file says what
   reverting it would cost.
2. **Held-out phase**, on the trace up to the fold's end, judged from the origin on (the earlier part
   is the controllers' history, as it would be in production): the current policy, the proposal,
   each seed's best (the spread over seeds), the baselines and, on the last fold, the frontier's
   points. Nothing measured here feeds back into any choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from autoscaler.core.policy import ScalingPolicy
from autoscaler.errors import PolicyError
from autoscaler.sim.scenario import Baseline
from autoscaler.tune.candidates import CandidateBuilder
from autoscaler.tune.evaluate import Outcome, SimContext, Task
from autoscaler.tune.executors import Executor, Progress, describe
from autoscaler.tune.search import SearchResult, Trial, pareto, score, search
from autoscaler.tune.space import TuningError, TuningSpace
from autoscaler.tune.split import Fold, plan_folds

__all__ = ["Change", "FoldResult", "TuneRequest", "TuneResult", "cap_gpu_hours", "resolve_target", "tune"]

COMPARED = ("kpa", "ray-serve")  # the autoscalers a "baselines" target is taken from


@dataclass(frozen=True, slots=True)
class TuneRequest:
    policy: ScalingPolicy
    space: TuningSpace
    context: SimContext  # the whole trace; each phase gets its own cut
    baselines: tuple[Baseline, ...] = ()
    holdout_s: float | None = None
    folds: int | None = None
    trials: int = 48
    batch: int = 8
    seed: int = 1
    seeds: int = 1
    explain: bool = True
    frontier_points: int = 6


@dataclass(frozen=True, slots=True)
class Change:
    """One tuned value; ``reverted``: the proposal with this value alone set back, on the fit part."""

    path: str
    before: float | None
    after: float | int
    reverted: Outcome | None = None


@dataclass(frozen=True, slots=True)
class FoldResult:
    fold: Fold
    target_attainment: float
    fit: dict[str, Outcome]  # "current" and each baseline, on the fit part
    searches: tuple[SearchResult, ...]
    pick: Trial
    pick_seed: int | None  # None: the current policy was kept
    tuned: ScalingPolicy
    changes: tuple[Change, ...]
    held_out: dict[str, Outcome]  # "current", "tuned", baseline names, "seed N", "frontier N"
    frontier: tuple[Trial, ...]
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def met_target(self) -> bool:
        """Whether the proposal reached the target attainment on the fit part (else it is the closest)."""
        return self.pick.outcome is not None and self.pick.outcome.slo_attainment >= self.target_attainment - 1e-12


@dataclass(frozen=True, slots=True)
class TuneResult:
    request: TuneRequest
    folds: tuple[FoldResult, ...]
    executor: str
    current_values: dict[str, float | int | None]
    wall_s: float

    @property
    def final(self) -> FoldResult:
        return self.folds[-1]


def resolve_target(target: float | str, policy: ScalingPolicy, baselines_fit: dict[str, tuple[str, Outcome]]) -> float:
    """The attainment a candidate must reach on the fit part."""
    if isinstance(target, float | int):
        return float(target)
    if target == "policy":
        return policy.slo.percentile / 100.0 if policy.slo is not None else 0.95
    compared = [o.slo_attainment for algorithm, o in baselines_fit.values() if algorithm in COMPARED]
    if not compared:
        raise TuningError("targetAttainment = baselines: needs a KPA or Ray Serve baseline (--baseline FILE, or "
                          "SimulationBaseline entries in the scenario)")
    return max(compared)


def cap_gpu_hours(request: TuneRequest, context: SimContext) -> float:
    """More GPU-hours than any candidate can cost on ``context``: the policy at its maximum throughout."""
    high = max([float(request.policy.max_replicas)]
               + [p.high for p in request.space.parameters if p.path == "spec.maxReplicas"])
    hours = (context.trace.duration_s + context.drain_s) / 3600.0
    return max(1e-9, high * context.fleet.gpus_per_replica * hours)


def _spaced(front: Sequence[Trial], count: int) -> list[Trial]:
    if len(front) <= count:
        return list(front)
    picks = sorted({round(i * (len(front) - 1) / (count - 1)) for i in range(count)})
    return [front[i] for i in picks]


def _changed(before: float | None, after: float | int | None) -> bool:
    if before is None or after is None:
        return before is not after
    return not math.isclose(float(before), float(after), rel_tol=1e-12, abs_tol=1e-12)


def _progress_hooks(progress: Progress) -> tuple[Any, Any]:
    """``on_done`` (a candidate of the batch finished) and ``on_batch`` (the batch was told) for a search."""
    told = [0]

    def on_done(finished: int, total: int) -> None:
        progress.update(told[0] + finished)

    def on_batch(done: int, total: int, best: Trial) -> None:
        told[0] = done
        shown = best.outcome
        extra = f"; best {shown.gpu_hours:.2f} GPU-h at {shown.slo_attainment:.3%} SLO" if shown else ""
        progress.batch(done, extra)

    return on_done, on_batch


def _fit_phase(request: TuneRequest, fold: Fold, executor: Executor, builder: CandidateBuilder,
               stream: TextIO | None, label: str) -> tuple[dict[str, Outcome], float, list[SearchResult],
                                                          Trial, int | None, list[Change], dict[str, float]]:
    context = request.context.cut(fold.origin_s)
    if len(context.trace) == 0:
        raise TuningError(f"{fold.describe()}: no request arrives before the held-out part")
    timing: dict[str, float] = {}
    with executor.session(context) as session:
        started = time.perf_counter()
        refs = [Task("current", request.policy)] + [Task(b.name, b) for b in request.baselines]
        outcomes = session.map(refs)
        fit = {task.label: outcome for task, outcome in zip(refs, outcomes, strict=True)}
        timing["fitReferencesSeconds"] = time.perf_counter() - started
        target = resolve_target(request.space.target_attainment, request.policy,
                                {b.name: (b.algorithm, fit[b.name]) for b in request.baselines})
        cap = cap_gpu_hours(request, context)
        searches = []
        for seed in range(request.seed, request.seed + request.seeds):
            on_done, on_batch = _progress_hooks(Progress(stream, f"{label} seed {seed}", request.trials))
            searches.append(search(space=request.space, builder=builder, session=session, target_attainment=target,
                                   cap_gpu_hours=cap, seed=seed, trials=request.trials, batch=request.batch,
                                   on_batch=on_batch, on_done=on_done))
        timing["searchSeconds"] = sum(s.wall_s for s in searches)
        timing["candidates"] = float(sum(len(s.trials) for s in searches))
        best = min(((s.best, s.seed) for s in searches), key=lambda b: (b[0].score, b[1]))
        pick: Trial = best[0]
        pick_seed: int | None = best[1]
        current = builder.current_values()
        current_score = score(fit["current"], target, cap)
        if current_score <= pick.score:  # nothing beats what runs today: keep it
            pick = Trial(-1, {k: v for k, v in current.items() if v is not None}, fit["current"], current_score)
            pick_seed = None
        changes = [Change(path, current[path], value) for path, value in pick.values.items()
                   if _changed(current[path], value)]
        if request.explain and changes:
            started = time.perf_counter()
            tasks, index = [], []
            for i, change in enumerate(changes):
                try:
                    reverted = builder.build({**pick.values, change.path: change.before})
                except PolicyError:
                    continue  # reverting this one alone breaks a cross-field rule: no comparison
                tasks.append(Task(f"revert {change.path}", reverted))
                index.append(i)
            for i, outcome in zip(index, session.map(tasks), strict=True):
                changes[i] = Change(changes[i].path, changes[i].before, changes[i].after, outcome)
            timing["explainSeconds"] = time.perf_counter() - started
    return fit, target, searches, pick, pick_seed, changes, timing


def _held_out_phase(request: TuneRequest, fold: Fold, executor: Executor, builder: CandidateBuilder,
                    searches: list[SearchResult], pick: Trial, tuned: ScalingPolicy,
                    frontier: list[Trial]) -> tuple[dict[str, Outcome], float]:
    context = request.context if fold.last else request.context.cut(fold.end_s)
    origin = fold.origin_s
    tasks = [Task("current", request.policy, origin), Task("tuned", tuned, origin)]
    tasks += [Task(b.name, b, origin) for b in request.baselines]
    if len(searches) > 1:
        for s in searches:
            tasks.append(Task(f"seed {s.seed}", builder.build(s.best.values), origin))
    for k, trial in enumerate(frontier, start=1):
        tasks.append(Task(f"frontier {k}", builder.build(trial.values), origin))
    started = time.perf_counter()
    with executor.session(context) as session:
        outcomes = session.map(tasks)
    return {t.label: o for t, o in zip(tasks, outcomes, strict=True)}, time.perf_counter() - started


def tune(request: TuneRequest, executor: Executor, *, progress: TextIO | None = None) -> TuneResult:
    """Plan the folds, search each one's fit part, judge each one's held-out part."""
    started = time.perf_counter()
    folds = plan_folds(request.context.trace.duration_s, holdout_s=request.holdout_s, folds=request.folds)
    arrivals = request.context.trace.arrival_s
    for fold in folds:  # a held-out part with no request would read as a perfect SLO: refuse it up front
        if not bool(((arrivals >= fold.origin_s) & (arrivals < fold.end_s if not fold.last else True)).any()):
            raise TuningError(f"{fold.describe()}: no request arrives in the held-out part; give a longer "
                              "--holdout or fewer --folds")
    results: list[FoldResult] = []
    with CandidateBuilder(request.policy, request.space) as builder:
        builder.check()
        for fold in folds:
            label = f"tune fold {fold.index}/{len(folds)} ({describe(executor)})"
            fit, target, searches, pick, pick_seed, changes, timing = _fit_phase(
                request, fold, executor, builder, progress, label)
            tuned = request.policy if pick_seed is None else builder.build(pick.values)
            front: list[Trial] = []
            if fold.last and request.frontier_points > 0:
                front = [t for t in pareto([t for s in searches for t in s.trials]) if t.values != pick.values]
                front = _spaced(front, request.frontier_points)
            held_out, held_s = _held_out_phase(request, fold, executor, builder, searches, pick, tuned, front)
            timing["heldOutSeconds"] = held_s
            results.append(FoldResult(fold, target, fit, tuple(searches), pick, pick_seed, tuned, tuple(changes),
                                      held_out, tuple(front), timing))
        current = builder.current_values()
    return TuneResult(request, tuple(results), describe(executor), current, time.perf_counter() - started)

