"""What ``tune`` writes: the tuned policy file, its diff, the tables, the frontier plot, report.json.

* ``tuned.yaml``: the team's file with the tuned values set in place, each marked ``# tuned: old ->
  new`` and what reverting that value alone would cost on the fit part; a header says what to expect
  on the held-out part (:mod:`autoscaler.tune.yamledit`).
* ``tuned.diff``: a unified diff against the file as it is.
* ``summary.md`` (also printed): the expected change on the held-out part next to the baselines, the
  tuned values, the frontier table (fit part, with the held-out result of the same policies), the
  rolling origin's folds and the seeds' spread.
* ``frontier.png``: GPU-hours against SLO attainment, fit part and held-out part side by side; every
  candidate, the frontier, the current policy, the proposal and the baselines.
* ``report.json``: all of it, every candidate included.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from autoscaler.tune.candidates import CandidateBuilder
from autoscaler.tune.driver import Change, FoldResult, TuneResult
from autoscaler.tune.evaluate import Outcome
from autoscaler.tune.search import Trial
from autoscaler.tune.yamledit import Edit, set_values

__all__ = ["change_comment", "summary", "tuned_text", "write_outputs"]


def _num(value: float | int | None) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}"


def _pct(value: float) -> str:
    return f"{value:.3%}"


def _ratio(new: float, old: float) -> str:
    return f"{new / old - 1:+.1%}" if old else "n/a"


def _pts(new: float, old: float) -> str:
    return f"{100 * (new - old):+.3f} pts"


def change_comment(change: Change) -> str:
    return f"tuned: {_num(change.before)} -> {_num(change.after)}"


def _why(change: Change, tuned_fit: Outcome | None) -> str:
    if change.reverted is None or tuned_fit is None:
        return ""
    r = change.reverted
    return (f"reverting it alone: {_ratio(r.gpu_hours, tuned_fit.gpu_hours)} GPU-h, "
            f"{_pts(r.slo_attainment, tuned_fit.slo_attainment)} SLO on the fit part")


def _expectation(fold: FoldResult) -> str:
    cur, new = fold.held_out["current"], fold.held_out["tuned"]
    return (f"on the held-out part ({fold.fold.describe()}): GPU-hours {cur.gpu_hours:.2f} -> {new.gpu_hours:.2f} "
            f"({_ratio(new.gpu_hours, cur.gpu_hours)}), SLO attainment {_pct(cur.slo_attainment)} -> "
            f"{_pct(new.slo_attainment)}, cold starts {cur.cold_starts} -> {new.cold_starts}")


def tuned_text(result: TuneResult, original: str, builder: CandidateBuilder) -> str:
    """The tuned file: the original text edited in place, or the effective document if that fails."""
    fold = result.final
    policy = result.request.policy
    header = (f"Tuned by `inference-autoscaler tune` (objective {result.request.space.objective}, target SLO "
              f"attainment {_pct(fold.target_attainment)}; seed {result.request.seed}).\n"
              f"Expected {_expectation(fold)}.\n"
              "Values marked '# tuned:' changed; the search saw only the fit part.")
    if not fold.met_target:
        header += (f"\nNo candidate reached the target attainment on the fit part: this is the closest "
                   f"({_pct(fold.pick.outcome.slo_attainment) if fold.pick.outcome else '-'}).")
    if not fold.changes:
        header += "\nNo candidate beat the current values on the fit part: nothing changed."
        return "".join(f"# {line}\n" for line in header.split("\n")) + original
    edits = []
    for change in fold.changes:
        comment = change_comment(change)
        why = _why(change, fold.pick.outcome)
        edits.append(Edit(builder.paths[change.path], change.after, f"{comment}; {why}" if why else comment,
                          builder.document_with(fold.pick.values)))
    edited = set_values(original, policy.name, edits, header=header)
    if edited is not None:
        return edited
    lines = [header, "The file's layout could not be kept; this is the tuned policy's effective document.", ""]
    lines += [f"{c.path}: {change_comment(c)}" for c in fold.changes]
    document = yaml.safe_dump(builder.document_with(fold.pick.values), sort_keys=False)
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + document


def _row(name: str, outcome: Outcome | None) -> list[str]:
    if outcome is None:
        return [name, "-", "-", "-"]
    return [name, f"{outcome.gpu_hours:.2f}", _pct(outcome.slo_attainment), str(outcome.cold_starts)]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _short(path: str) -> str:
    return path.removeprefix("spec.").replace(".target.", ".").replace("behavior.", "")


def _frontier_rows(result: TuneResult) -> list[list[str]]:
    fold = result.final
    params = result.request.space.names()
    rows = [["point", *map(_short, params), "fit GPU-h", "fit SLO", "held-out GPU-h", "held-out SLO", "cold starts"]]

    def line(name: str, values: dict[str, Any], fit: Outcome | None, held: Outcome | None) -> list[str]:
        cells = [name, *(_num(values.get(p)) for p in params)]
        cells += [f"{fit.gpu_hours:.2f}" if fit else "-", _pct(fit.slo_attainment) if fit else "-"]
        cells += [f"{held.gpu_hours:.2f}" if held else "-", _pct(held.slo_attainment) if held else "-",
                  str(held.cold_starts) if held else "-"]
        return cells

    rows.append(line("current", result.current_values, fold.fit["current"], fold.held_out["current"]))
    rows.append(line("tuned", dict(fold.pick.values), fold.pick.outcome, fold.held_out["tuned"]))
    for k, trial in enumerate(fold.frontier, start=1):
        rows.append(line(f"frontier {k}", dict(trial.values), trial.outcome, fold.held_out.get(f"frontier {k}")))
    for baseline in result.request.baselines:
        row = line(f"{baseline.name} (baseline)", {}, fold.fit.get(baseline.name), fold.held_out.get(baseline.name))
        rows.append([row[0], *("-" for _ in params), *row[1 + len(params):]])
    return rows


def summary(result: TuneResult) -> str:
    request, fold = result.request, result.final
    policy = request.policy
    trials = sum(len(s.trials) for f in result.folds for s in f.searches)
    search_s = sum(f.timing.get("searchSeconds", 0.0) for f in result.folds)
    slo = request.context.slo
    out = [f"# Tune {policy.key}", ""]
    out.append(f"Trace: {request.context.trace.source or 'trace'} ({len(request.context.trace):,} requests, "
               f"{request.context.trace.duration_s / 3600:.1f} h); SLO: {slo.metric} <= {slo.latency_s:g} s; "
               f"target attainment {_pct(fold.target_attainment)} "
               f"({request.space.target_attainment if isinstance(request.space.target_attainment, str) else 'given'})."
               )
    out.append(f"Search: {request.space.objective}, {request.trials} candidates x {request.seeds} seed(s) from seed "
               f"{request.seed}, batches of {request.batch}, Optuna TPE, on {result.executor}: {trials} candidates "
               f"in {search_s:.0f} s ({trials / search_s if search_s else 0:.2f}/s); total {result.wall_s:.0f} s.")
    out.append("Folds: " + "; ".join(f"{f.fold.index}: {f.fold.describe()}" for f in result.folds) + ".")
    if not fold.met_target:
        out.append(f"No candidate reached the target attainment on the fit part: the proposal is the closest "
                   f"({_pct(fold.pick.outcome.slo_attainment) if fold.pick.outcome else '-'} on the fit part).")
    out += ["", f"## Expected change on the held-out part ({fold.fold.describe()})", ""]
    cur, new = fold.held_out["current"], fold.held_out["tuned"]
    rows = [["policy", "GPU-h", "SLO met", "cold starts"], _row("current", cur), _row("tuned", new),
            ["change", _ratio(new.gpu_hours, cur.gpu_hours), _pts(new.slo_attainment, cur.slo_attainment),
             f"{new.cold_starts - cur.cold_starts:+d}"]]
    for baseline in request.baselines:
        held = fold.held_out.get(baseline.name)
        rows.append(_row(f"{baseline.name} (baseline)", held))
    out.append(_table(rows))
    versus = [f"{b.name}: GPU-h x{new.gpu_hours / held.gpu_hours:.3f}, SLO attainment "
              f"{_pts(new.slo_attainment, held.slo_attainment)}"
              for b in request.baselines if (held := fold.held_out.get(b.name)) is not None and held.gpu_hours > 0]
    if versus:
        out.append("\nTuned vs " + "; vs ".join(versus) + ".")
    out += ["", "## Tuned values", ""]
    if fold.changes:
        rows = [["parameter", "current", "tuned", "reverting it alone (fit part)"]]
        rows += [[c.path, _num(c.before), _num(c.after), _why(c, fold.pick.outcome).removeprefix(
            "reverting it alone: ").removesuffix(" on the fit part") or "-"] for c in fold.changes]
        out.append(_table(rows))
    else:
        out.append("None: no candidate beat the current values on the fit part.")
    out += ["", "## Frontier (GPU-hours against SLO attainment; chosen on the fit part)", "",
            _table(_frontier_rows(result))]
    if len(result.folds) > 1:
        out += ["", "## Rolling origin: each fold's proposal on its own held-out part", ""]
        rows = [["fold", "fit", "held out", "target", "current GPU-h", "current SLO", "tuned GPU-h", "tuned SLO",
                 "GPU-h change"]]
        for f in result.folds:
            c, t = f.held_out["current"], f.held_out["tuned"]
            rows.append([str(f.fold.index), f.fold.fit_span, f.fold.held_out_span, _pct(f.target_attainment),
                         f"{c.gpu_hours:.2f}", _pct(c.slo_attainment), f"{t.gpu_hours:.2f}", _pct(t.slo_attainment),
                         _ratio(t.gpu_hours, c.gpu_hours)])
        out.append(_table(rows))
    if request.seeds > 1:
        out += ["", "## Seeds: each seed's best on the held-out part", ""]
        rows = [["seed", "fit GPU-h", "fit SLO", "held-out GPU-h", "held-out SLO"]]
        spread: list[Outcome] = []
        for s in fold.searches:
            o = fold.held_out.get(f"seed {s.seed}")
            fit = s.best.outcome
            rows.append([str(s.seed), f"{fit.gpu_hours:.2f}" if fit else "-", _pct(fit.slo_attainment) if fit else "-",
                         f"{o.gpu_hours:.2f}" if o else "-", _pct(o.slo_attainment) if o else "-"])
            if o is not None:
                spread.append(o)
        out.append(_table(rows))
        if spread:
            out.append(f"\nSpread over seeds (held-out): GPU-h {min(o.gpu_hours for o in spread):.2f} to "
                       f"{max(o.gpu_hours for o in spread):.2f}, SLO {_pct(min(o.slo_attainment for o in spread))} "
                       f"to {_pct(max(o.slo_attainment for o in spread))}.")
    return "\n".join(out) + "\n"


def _outcome(o: Outcome | None) -> dict[str, Any] | None:
    return None if o is None else {**o.as_dict(), "wallSeconds": round(o.wall_s, 3)}


def _trial(t: Trial) -> dict[str, Any]:
    return {"number": t.number, "values": t.values, "fit": _outcome(t.outcome), "score": t.score,
            **({"error": t.error} if t.error else {})}


def report(result: TuneResult) -> dict[str, Any]:
    request = result.request
    return {
        "policy": request.policy.key,
        "objective": request.space.objective,
        "targetAttainment": request.space.target_attainment,
        "parameters": [{"path": p.path, "low": p.low, "high": p.high, "type": "int" if p.integer else "float",
                        "log": p.log} for p in request.space.parameters],
        "current": result.current_values,
        "search": {"trials": request.trials, "batch": request.batch, "seed": request.seed, "seeds": request.seeds,
                   "sampler": "optuna.TPESampler", "executor": result.executor},
        "slo": {"metric": request.context.slo.metric, "latencySeconds": request.context.slo.latency_s},
        "wallSeconds": round(result.wall_s, 2),
        "folds": [
            {
                "index": f.fold.index, "originSeconds": f.fold.origin_s, "endSeconds": f.fold.end_s,
                "targetAttainment": f.target_attainment,
                "fit": {k: _outcome(v) for k, v in f.fit.items()},
                "heldOut": {k: _outcome(v) for k, v in f.held_out.items()},
                "pick": {**_trial(f.pick), "seed": f.pick_seed, "metTarget": f.met_target},
                "changes": [{"path": c.path, "before": c.before, "after": c.after,
                             "revertedFit": _outcome(c.reverted)} for c in f.changes],
                "frontier": [_trial(t) for t in f.frontier],
                "searches": [{"seed": s.seed, "wallSeconds": round(s.wall_s, 2), "best": s.best.number,
                              "trials": [_trial(t) for t in s.trials]} for s in f.searches],
                "timing": {k: round(v, 2) for k, v in f.timing.items()},
            }
            for f in result.folds
        ],
    }


def plot(path: Path, result: TuneResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fold = result.final
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    fit_ax, held_ax = axes
    trials = [t for s in fold.searches for t in s.trials if t.outcome is not None]
    fit_ax.scatter([t.outcome.gpu_hours for t in trials], [100 * t.outcome.slo_attainment for t in trials],  # type: ignore[union-attr]
                   s=12, color="0.7", label="candidates")
    # The frontier through the proposal: on the fit part as searched, on the held-out part the same policies.
    points = [(t.outcome, fold.held_out.get(f"frontier {k}")) for k, t in enumerate(fold.frontier, start=1)]
    points.append((fold.pick.outcome, fold.held_out.get("tuned")))
    fit_line = sorted((o for o, _ in points if o is not None), key=lambda o: o.gpu_hours)
    held_points = sorted((o for _, o in points if o is not None), key=lambda o: o.gpu_hours)
    fit_ax.plot([o.gpu_hours for o in fit_line], [100 * o.slo_attainment for o in fit_line], "-o", color="tab:blue",
                ms=4, label="frontier")
    held_ax.plot([o.gpu_hours for o in held_points], [100 * o.slo_attainment for o in held_points], "-o",
                 color="tab:blue", ms=4, label="frontier (same policies)")
    marks: list[tuple[str, str, str, Outcome | None, Outcome | None]] = [
        ("current", "*", "black", fold.fit.get("current"), fold.held_out.get("current")),
        ("tuned", "D", "tab:red", fold.pick.outcome, fold.held_out.get("tuned")),
    ]
    palette = ("tab:green", "tab:orange", "tab:brown", "tab:olive", "tab:cyan", "tab:pink")
    for i, baseline in enumerate(result.request.baselines):
        marks.append((baseline.name, "^", palette[i % len(palette)], fold.fit.get(baseline.name),
                      fold.held_out.get(baseline.name)))
    shown: list[float] = [o.slo_attainment for o in held_points]
    for name, marker, color, fit, held_out in marks:
        for ax, o in ((fit_ax, fit), (held_ax, held_out)):
            if o is None:
                continue
            shown.append(o.slo_attainment)
            ax.scatter([o.gpu_hours], [100 * o.slo_attainment], marker=marker, s=90, color=color, label=name, zorder=3)
            ax.annotate(name, (o.gpu_hours, 100 * o.slo_attainment), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    target = 100 * fold.target_attainment
    for ax, title in ((fit_ax, "fit part (what the search saw)"), (held_ax, "held-out part")):
        ax.axhline(target, color="k", ls=":", lw=0.8, label=f"target {target:.2f}%")
        ax.set_xlabel("GPU-hours")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    low = min([*shown, fold.target_attainment]) * 100
    fit_ax.set_ylim(max(0.0, low - max(0.5, (100 - low) * 0.3)), 100.0 + max(0.05, (100 - low) * 0.05))
    fit_ax.set_ylabel("SLO attainment (%)")
    fig.suptitle(f"tune {result.request.policy.key}: {fold.fold.describe()}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(out: Path, result: TuneResult, *, original: str, original_name: str, builder: CandidateBuilder,
                  plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    tuned = tuned_text(result, original, builder)
    paths = [out / "tuned.yaml", out / "tuned.diff", out / "summary.md", out / "report.json"]
    paths[0].write_text(tuned, encoding="utf-8")
    diff = difflib.unified_diff(original.splitlines(keepends=True), tuned.splitlines(keepends=True),
                                fromfile=original_name, tofile=str(paths[0]))
    paths[1].write_text("".join(diff), encoding="utf-8")
    paths[2].write_text(summary(result), encoding="utf-8")
    paths[3].write_text(json.dumps(report(result), indent=1) + "\n", encoding="utf-8")
    if plots:
        paths.append(out / "frontier.png")
        plot(paths[-1], result)
    return paths
