"""``inference-autoscaler backtest``: what a policy would have decided over a recorded window, against
what the target actually did (replicas over time, the differences, a plot).

Times: RFC 3339 (``2026-11-28T09:00:00Z``), unix seconds, ``now``, or relative to now (``-6h``, ``-30m``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from autoscaler.commands.common import Exit, add_prometheus_arguments, exit_code, prometheus_config
from autoscaler.errors import AutoscalerError

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: float) -> float:
    text = text.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (RFC 3339, unix seconds, now, or -6h/-30m/-2d)"
        ) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay a policy over recorded Prometheus history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", required=True, metavar="FILE")
    parser.add_argument("--name", help="policy name, when the file holds several")
    parser.add_argument("--root", metavar="DIR", help="the policy tree's root, whose folders' defaults apply")
    parser.add_argument("--from", dest="start", required=True, metavar="TIME")
    parser.add_argument("--to", dest="end", default="now", metavar="TIME")
    parser.add_argument("--step", type=float, metavar="SECONDS", help="tick (default: the policy's interval)")
    parser.add_argument(
        "--replicas-query",
        metavar="PROMQL",
        help="the target's replicas over time, if not from kube-state-metrics or our own metrics",
    )
    parser.add_argument("--ready-query", metavar="PROMQL", help="its ready replicas (default: --replicas-query)")
    parser.add_argument("--out", metavar="DIR", help="write backtest.json and backtest.png here")
    add_prometheus_arguments(parser)
    parser.set_defaults(run=run)


class _PromRanges:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def series(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> dict[float, float]:
        from autoscaler.prometheus.ranges import summed_range

        return await summed_range(self.client, expr, start_s=start_s, end_s=end_s, step_s=step_s, context="backtest")


def run(args: argparse.Namespace) -> int:
    from autoscaler.backtest import backtest, summarize
    from autoscaler.policy import load_policy_file
    from autoscaler.prometheus import PrometheusClient

    now = time.time()
    try:
        start, end = parse_time(args.start, now=now), parse_time(args.end, now=now)
    except argparse.ArgumentTypeError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return Exit.USAGE
    if end <= start:
        print(f"backtest: --to ({args.end}) must be after --from ({args.start})", file=sys.stderr)
        return Exit.USAGE
    policy = load_policy_file(args.policy, args.name, root=args.root)

    async def go() -> list[Any]:
        async with PrometheusClient(prometheus_config(args)) as client:
            return await backtest(
                _PromRanges(client),
                policy,
                start_s=start,
                end_s=end,
                step_s=args.step,
                window=args.window,
                replicas_query=args.replicas_query,
                ready_query=args.ready_query,
            )

    try:
        ticks = asyncio.run(go())
    except AutoscalerError as exc:  # no history to backtest (1), Prometheus unavailable (3)
        print(f"backtest of {policy.key}: {exc}", file=sys.stderr)
        return exit_code(exc)
    step = float(args.step or policy.interval_s)
    summary = summarize(ticks, step)
    print(f"backtest of {policy.key} ({policy.target.kind}/{policy.target.name}), {summary['ticks']} ticks")
    for key in (
        "agreement",
        "ticksAbove",
        "ticksBelow",
        "meanAbsDifference",
        "maxAbove",
        "maxBelow",
        "replicaHoursActual",
        "replicaHoursRecommended",
    ):
        print(f"  {key:24} {summary.get(key)}")
    print(f"  {'reasons':24} {json.dumps(summary.get('reasons', {}))}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "policy": policy.key,
            "summary": summary,
            "ticks": [
                {
                    "time": t.time_s,
                    "actual": t.actual,
                    "ready": t.ready,
                    "desired": t.desired,
                    "reason": t.reason,
                    "metrics": dict(t.metrics),
                    "message": t.message,
                }
                for t in ticks
            ],
        }
        (out / "backtest.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if importlib.util.find_spec("matplotlib") is not None:
            _plot(out / "backtest.png", policy.key, ticks)
            print(f"wrote {out / 'backtest.json'}, {out / 'backtest.png'}")
        else:  # the runtime install: the plot comes with the sim extra
            print(f"wrote {out / 'backtest.json'} (no plot: pip install 'inference-autoscaler[sim]' for it)")
    return Exit.OK


def _plot(path: Path, title: str, ticks: list[Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = ticks[0].time_s if ticks else 0.0
    hours = [(t.time_s - t0) / 3600 for t in ticks]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(hours, [t.actual for t in ticks], where="post", label="actual (spec)")
    ax.step(hours, [t.ready for t in ticks], where="post", label="ready", alpha=0.6)
    ax.step(hours, [t.desired for t in ticks], where="post", label="policy would decide", linestyle="--")
    ax.set_xlabel("hours from start")
    ax.set_ylabel("replicas")
    ax.set_title(f"backtest: {title}")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
