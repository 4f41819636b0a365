"""The search: Optuna's samplers over the tuning space, asked and told in fixed-size batches.

Why Optuna: its TPE sampler (Bergstra et al.) is the well-kept standard for a few to a few dozen
mixed integer/float parameters with expensive, noisy evaluations, and it runs the same way on one
machine or feeding a cluster (we only ask it for candidates and tell it outcomes).

Determinism. The sampler is seeded; each batch asks ``batch`` trials (their parameters suggested in
trial order), runs them on whatever executor (in any order), and tells the outcomes back *in trial
order*. The sampler therefore sees the same history at every ask, whatever the executor and however
many workers it has: the same seed gives the same trials and the same result locally and on Ray. The
batch size is a search setting, not the number of workers, for that reason.

Objectives.

* ``min-gpu-hours``: minimise the fit part's GPU-hours subject to SLO attainment >= the target. The
  score is the GPU-hours of a feasible candidate; an infeasible one scores ``cap x (1 + shortfall)``,
  ``cap`` being the GPU-hours of the policy at its maximum for the whole run, which is more than any
  candidate can cost, so every feasible candidate ranks before every infeasible one and infeasible
  ones rank by how far they miss. A candidate the loader refuses scores ``2 x cap``.
* ``frontier``: both objectives at once (GPU-hours down, attainment up; Optuna's multi-objective TPE),
  to trace the whole frontier. The proposed policy is then chosen from it by the same rule.

The team's current values are the first trial when they lie inside the ranges, so the proposal is
never worse on the fit part than what runs today.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.errors import PolicyError
from autoscaler.tune.candidates import CandidateBuilder
from autoscaler.tune.evaluate import Outcome, Task
from autoscaler.tune.executors import Session
from autoscaler.tune.space import Parameter, TuningError, TuningSpace

__all__ = ["SearchResult", "Trial", "feasible", "pareto", "score", "search"]


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate of the search, judged on the fit part."""

    number: int
    values: dict[str, float | int]
    outcome: Outcome | None  # None: the loader refused the candidate
    score: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    seed: int
    trials: tuple[Trial, ...]
    best: Trial
    target_attainment: float
    wall_s: float
    current_trial: int | None = None  # the trial that ran the current values, if they were in range


def feasible(outcome: Outcome | None, target: float) -> bool:
    return outcome is not None and outcome.slo_attainment >= target - 1e-12


def score(outcome: Outcome | None, target: float, cap_gpu_hours: float) -> float:
    """Lower is better; see the module docstring."""
    if outcome is None:
        return 2.0 * cap_gpu_hours
    if feasible(outcome, target):
        return outcome.gpu_hours
    return cap_gpu_hours * (1.0 + (target - outcome.slo_attainment))


def pareto(trials: Sequence[Trial]) -> list[Trial]:
    """The trials no other beats on both GPU-hours (lower) and attainment (higher), by GPU-hours."""
    valid = sorted((t for t in trials if t.outcome is not None),
                   key=lambda t: (t.outcome.gpu_hours, -t.outcome.slo_attainment, t.number))  # type: ignore[union-attr]
    front: list[Trial] = []
    best = -math.inf
    for trial in valid:
        assert trial.outcome is not None
        if trial.outcome.slo_attainment > best:
            front.append(trial)
            best = trial.outcome.slo_attainment
    return front


def _suggest(trial: Any, parameter: Parameter, current: float | None) -> float | int:
    if parameter.integer:
        return int(trial.suggest_int(parameter.path, int(parameter.low), int(parameter.high), log=parameter.log))
    raw = float(trial.suggest_float(parameter.path, parameter.low, parameter.high, log=parameter.log))
    if raw == current:  # the enqueued current value: kept exactly, not rounded
        return int(raw) if raw.is_integer() else raw
    return parameter.snap(raw)


def search(
    *,
    space: TuningSpace,
    builder: CandidateBuilder,
    session: Session,
    target_attainment: float,
    cap_gpu_hours: float,
    seed: int,
    trials: int,
    batch: int,
    on_batch: Callable[[int, int, Trial], None] | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Run ``trials`` candidates in batches of ``batch`` on ``session`` (bound to the fit part only)."""
    try:
        import optuna
    except ImportError:
        raise TuningError("tune needs optuna: pip install 'inference-autoscaler[tune]'") from None
    if trials < 1 or batch < 1:
        raise TuningError(f"--trials = {trials}, --batch = {batch}: both must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    frontier = space.objective == "frontier"
    study = optuna.create_study(
        directions=["minimize", "maximize"] if frontier else ["minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(batch, min(10, trials // 3))),
    )
    current = builder.current_values()
    current_trial: int | None = None
    if all(v is not None and p.contains(v) for p, v in zip(space.parameters, current.values(), strict=True)):
        study.enqueue_trial({p.path: current[p.path] for p in space.parameters})
        current_trial = 0
    done: list[Trial] = []
    while len(done) < trials:
        asked: list[tuple[Any, dict[str, float | int], Task | None, str | None]] = []
        for _ in range(min(batch, trials - len(done))):
            trial = study.ask()
            values = {p.path: _suggest(trial, p, current[p.path]) for p in space.parameters}
            try:
                candidate = builder.build(values)
                asked.append((trial, values, Task(f"trial-{trial.number}", candidate), None))
            except PolicyError as refused:
                asked.append((trial, values, None, str(refused).split("\n")[0]))
        tasks = [task for _, _, task, _ in asked if task is not None]
        outcomes = iter(session.map(tasks, on_done) if tasks else [])
        for trial, values, task, problem in asked:  # told in trial order: the same history on any executor
            outcome = next(outcomes) if task is not None else None
            value = score(outcome, target_attainment, cap_gpu_hours)
            record = Trial(trial.number, values, outcome, value, problem)
            done.append(record)
            if frontier:
                study.tell(trial, [outcome.gpu_hours if outcome else 2 * cap_gpu_hours,
                                   outcome.slo_attainment if outcome else 0.0])
            else:
                study.tell(trial, value)
        if on_batch is not None:
            on_batch(len(done), trials, best_of(done))
    return SearchResult(seed, tuple(done), best_of(done), target_attainment, time.perf_counter() - started,
                        current_trial)


def best_of(trials: Sequence[Trial]) -> Trial:
    """The lowest score; ties go to the earlier trial (the current values, when they were trial 0)."""
    return min(trials, key=lambda t: (t.score, t.number))
