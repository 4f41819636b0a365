"""The simulation report: ``report.json``, ``summary.md`` and matplotlib PNGs (Agg backend, no display).

Two reference points frame the policies' cost. ``gpuHoursFloor`` (from
:func:`autoscaler.sim.compare.gpu_hours_floor`) is the work bound: the GPU-hours if every slot were
busy all the time; no schedule spends less, and the table's ``x floor`` column is each policy's
GPU-hours over it. The ``no-wait`` baseline (once called ``oracle``) is the schedule under which no
request ever waits, knowing the future; it is not a lower bound, and a policy letting requests wait
within the SLO may cost less.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.sim.run import RunResult, Slo

__all__ = ["COLUMNS", "FLOOR_NOTE", "NO_WAIT_NOTE", "summary_table", "write_report"]

FLOOR_NOTE = ("gpuHoursFloor is the work bound: the sum over requests of service time / maxConcurrency "
              "(x GPUs per replica), the GPU-hours if every slot were busy all the time; no schedule spends less.")
NO_WAIT_NOTE = ("no-wait (formerly 'oracle') holds, knowing the future, enough replicas that no request ever "
                "waits: the running max of offered concurrency over the load time. It is not a cost lower "
                "bound: a policy that lets requests wait within the SLO may spend less.")

# (report.json field, table header, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("name", "policy", "{}"),
    ("gpuHours", "GPU-h", "{:.2f}"),
    ("gpuHoursOverFloor", "x floor", "{:.2f}"),  # derived: gpuHours / gpuHoursFloor
    ("sloAttainment", "SLO met", "{:.2%}"),
    ("latencyMean", "mean s", "{:.2f}"),
    ("latencyP50", "p50 s", "{:.2f}"),
    ("latencyP95", "p95 s", "{:.2f}"),
    ("latencyP99", "p99 s", "{:.2f}"),
    ("waitMean", "wait s", "{:.2f}"),
    ("coldStarts", "cold starts", "{}"),
    ("scaleEvents", "scale events", "{}"),
    ("maxReplicas", "max replicas", "{}"),
    ("requests", "requests", "{}"),
    ("dropped", "dropped", "{}"),
)


def _cell(fmt: str, value: Any) -> str:
    return "-" if value is None else fmt.format(value)


def _floor(results: Sequence[RunResult]) -> float | None:
    values = [r.summary.get("gpuHoursFloor") for r in results]
    return next((float(v) for v in values if v is not None), None)


def _value(summary: dict[str, Any], key: str) -> Any:
    if key == "gpuHoursOverFloor":
        floor = summary.get("gpuHoursFloor")
        return summary["gpuHours"] / floor if floor else None
    return summary[key]


def summary_table(results: Sequence[RunResult]) -> str:
    """A Markdown table, one row per policy, aligned for reading as plain text too; below it the
    work-bound floor and what the no-wait baseline is, when the results carry the floor."""
    columns = [c for c in COLUMNS if c[0] != "gpuHoursOverFloor" or _floor(results) is not None]
    rows = [[header for _, header, _ in columns]]
    rows += [[_cell(fmt, _value(r.summary, key)) for key, _, fmt in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    floor = _floor(results)
    if floor is not None:
        lines += ["", f"Cost floor: {floor:.2f} GPU-h. {FLOOR_NOTE}"]
    if any(name in str(r.summary.get("name")) for r in results for name in ("no-wait", "oracle")):
        lines += ["", NO_WAIT_NOTE]
    verdict = who_wins(results)
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def who_wins(results: Sequence[RunResult]) -> str:
    """Who wins, in one paragraph: the highest SLO attainment (ties: fewer GPU-hours), and every policy
    that another beats on both attainment and GPU-hours. The no-wait reference (it knows the future)
    is left out."""
    runs = [r.summary for r in results if not any(n in str(r.summary.get("name")) for n in ("no-wait", "oracle"))]
    if len(runs) < 2:
        return ""
    best = max(runs, key=lambda s: (s["sloAttainment"], -s["gpuHours"]))

    def beats(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return bool(a["sloAttainment"] >= b["sloAttainment"] and a["gpuHours"] <= b["gpuHours"] and a is not b
                    and (a["sloAttainment"], -a["gpuHours"]) != (b["sloAttainment"], -b["gpuHours"]))

    text = (f"Who wins: {best['name']}, the highest SLO attainment ({best['sloAttainment']:.2%}) "
            f"at {best['gpuHours']:.2f} GPU-h.")
    dominated = [(b["name"], next(a["name"] for a in runs if beats(a, b))) for b in runs
                 if any(beats(a, b) for a in runs)]
    if dominated:
        text += " Beaten on both SLO attainment and GPU-hours: " + ", ".join(
            f"{name} (by {by})" for name, by in dominated) + "."
    return text


def write_report(out: Path, *, scenario: str, seed: int, slo: Slo, results: Sequence[RunResult],
                 demand_t: np.ndarray[Any, Any], demand_replicas: np.ndarray[Any, Any],
                 plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "summary.md"]
    report: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "slo": {"latencySeconds": slo.latency_s, "metric": slo.metric},
    }
    floor = _floor(results)
    if floor is not None:
        report["bounds"] = {"gpuHoursFloor": floor, "gpuHoursFloorIs": FLOOR_NOTE, "noWaitIs": NO_WAIT_NOTE}
    report["policies"] = [r.summary for r in results]
    written[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written[1].write_text(
        f"# Simulation {scenario}\n\nSLO: {slo.metric} latency <= {slo.latency_s:g} s; seed {seed}.\n\n"
        + summary_table(results) + "\n", encoding="utf-8",
    )
    if plots:
        written += _plot(out, results, slo, demand_t, demand_replicas)
    return written


def _plot(out: Path, results: Sequence[RunResult], slo: Slo, demand_t: np.ndarray[Any, Any],
          demand_replicas: np.ndarray[Any, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out / "replicas.png", out / "latency.png", out / "cost_vs_slo.png"]
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n + 0.6), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        ax.fill_between(demand_t / 3600, demand_replicas, step="post", color="0.85",
                        label="demand (replicas, no queueing)")
        ax.step(r.times_s / 3600, r.spec_replicas, where="post", label="replicas (spec)")
        ax.step(r.times_s / 3600, r.ready_replicas, where="post", label="ready", alpha=0.7)
        ax.set_ylabel("replicas")
        ax.set_title(r.name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("hours")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    for r in results:
        ax.plot(r.latency_minute_s / 3600, r.latency_p95_s, label=r.name, lw=1)
    ax.axhline(slo.latency_s, color="k", ls="--", lw=0.8, label=f"SLO {slo.latency_s:g} s")
    ax.set_yscale("log")
    ax.set_xlabel("hours")
    ax.set_ylabel(f"p95 {slo.metric} latency per minute (s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.scatter(r.summary["gpuHours"], 100 * r.summary["sloAttainment"])
        ax.annotate(r.name, (r.summary["gpuHours"], 100 * r.summary["sloAttainment"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    floor = _floor(results)
    if floor is not None:
        ax.axvline(floor, color="k", ls=":", lw=0.8, label=f"work-bound floor {floor:.2f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths
