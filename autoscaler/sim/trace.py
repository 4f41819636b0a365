"""Request traces: readers for the public formats, synthetic generators and the scenario's transforms.

A :class:`Trace` is three aligned numpy arrays sorted by arrival: ``arrival_s`` (seconds from the
trace's start), ``input_tokens`` and ``output_tokens``. Everything here is IO at the edge or pure
array arithmetic; randomness comes only from the ``numpy.random.Generator`` passed in.

Formats (as their publishers describe them: Azure/AzurePublicDataset, kvcache-ai/Mooncake, alibaba/ServeGen):

* ``azure``    Azure LLM inference trace 2023: ``TIMESTAMP,ContextTokens,GeneratedTokens``
* ``mooncake`` Mooncake FAST'25 JSON lines: ``timestamp`` (ms), ``input_length``, ``output_length``
* ``servegen`` ServeGen per-client rate windows (a folder of ``chunk-*-trace.csv``, or one file);
  these are statistics, so requests are *generated* from them: per client, a renewal process with each
  window's Gamma/Weibull shape, paced so each window's expected count is its published ``rate x 600``
  (see :func:`servegen_windows`); token lengths come from the scenario's ``tokens`` distributions
* ``csv``      ``arrival_s,input_tokens,output_tokens`` with a header
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.errors import InputError

__all__ = [
    "FORMATS",
    "TokenDistribution",
    "Trace",
    "TraceError",
    "daily_profile",
    "diurnal",
    "flash_crowd",
    "poisson",
    "read_trace",
    "servegen_windows",
]

FloatArray = npt.NDArray[np.float64]
FORMATS = ("azure", "mooncake", "servegen", "csv")


class TraceError(InputError):
    """A trace that cannot be read; the message names the file (and line where known)."""


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """Requests sorted by arrival. Token counts are float64 so the kernel needs no casts."""

    arrival_s: FloatArray
    input_tokens: FloatArray
    output_tokens: FloatArray
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise TraceError(f"{self.source}: column lengths differ")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @staticmethod
    def of(arrival_s: Any, input_tokens: Any, output_tokens: Any, source: str = "") -> Trace:
        """Build a trace from columns, sorting stably by arrival and shifting the start to 0."""
        a = np.asarray(arrival_s, dtype=np.float64)
        order = np.argsort(a, kind="stable")
        a = a[order]
        if len(a) and a[0] != 0.0:
            a = a - a[0]
        return Trace(
            a,
            np.asarray(input_tokens, dtype=np.float64)[order],
            np.asarray(output_tokens, dtype=np.float64)[order],
            source,
        )

    def window(self, duration_s: float) -> Trace:
        """The first ``duration_s`` seconds."""
        end = int(np.searchsorted(self.arrival_s, duration_s, side="left"))
        return Trace(self.arrival_s[:end], self.input_tokens[:end], self.output_tokens[:end], self.source)

    def scaled(self, *, time_scale: float, rate_scale: float, rng: np.random.Generator) -> Trace:
        """Stretch arrival times by ``time_scale``; thin (< 1) or replicate (> 1) arrivals by ``rate_scale``.

        Replication keeps every request ``floor(rate_scale)`` times plus one more with probability
        ``frac(rate_scale)``; the copies arrive jittered by up to a second so they do not collide.
        """
        arrival = self.arrival_s * time_scale
        if rate_scale == 1.0:
            return Trace(arrival, self.input_tokens, self.output_tokens, self.source)
        whole = math.floor(rate_scale)
        copies = np.full(len(self), whole, dtype=np.int64) + (rng.random(len(self)) < rate_scale - whole)
        index = np.repeat(np.arange(len(self)), copies)
        first = np.zeros(len(index), dtype=bool)
        starts = np.cumsum(copies) - copies
        first[starts[copies > 0]] = True
        jitter = np.where(first, 0.0, rng.random(len(index)))
        return Trace.of(arrival[index] + jitter, self.input_tokens[index], self.output_tokens[index], self.source)


@dataclass(frozen=True, slots=True)
class TokenDistribution:
    """Lognormal token lengths (median and p95), or a fixed count; ``exponential`` for queueing tests."""

    distribution: str = "lognormal"
    median: float = 1000.0
    p95: float = 3000.0
    mean: float = 0.0  # exponential only
    value: float = 0.0  # fixed only

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        if self.distribution == "fixed":
            return np.full(n, self.value)
        if self.distribution == "exponential":
            # ceil keeps it integral: geometric, within 1/mean of an exponential.
            return np.ceil(rng.exponential(self.mean, n))
        sigma = math.log(self.p95 / self.median) / 1.6448536269514722
        return np.maximum(1.0, np.round(rng.lognormal(math.log(self.median), sigma, n)))

    @staticmethod
    def parse(raw: Mapping[str, Any], where: str) -> TokenDistribution:
        kind = str(raw.get("distribution", "lognormal"))
        if kind == "fixed":
            return TokenDistribution("fixed", value=float(raw["value"]))
        if kind == "exponential":
            return TokenDistribution("exponential", mean=float(raw["mean"]))
        if kind == "lognormal":
            median, p95 = float(raw["median"]), float(raw["p95"])
            if not 0 < median <= p95:
                raise TraceError(f"{where}: needs 0 < median ({median}) <= p95 ({p95})")
            return TokenDistribution("lognormal", median=median, p95=p95)
        raise TraceError(f"{where}.distribution = {kind!r}: must be lognormal, exponential or fixed")


# ----------------------------------------------------------------------------------------------- readers


def _read_azure(path: Path) -> Trace:
    stamps: list[float] = []
    inputs: list[float] = []
    outputs: list[float] = []
    with path.open(encoding="utf-8") as stream:
        header = stream.readline().strip().split(",")
        if header[:3] != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
            raise TraceError(f"{path}:1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens")
        for number, line in enumerate(stream, start=2):
            parts = line.strip().split(",")
            if len(parts) < 3:
                continue
            try:
                # Seven fractional digits: Python's %f takes six, so cut the last.
                stamp = datetime.strptime(parts[0][:26], "%Y-%m-%d %H:%M:%S.%f")
                stamps.append(stamp.timestamp())
                inputs.append(float(parts[1]))
                outputs.append(float(parts[2]))
            except ValueError as exc:
                raise TraceError(f"{path}:{number}: {exc}") from None
    return Trace.of(stamps, inputs, outputs, str(path))


def _read_mooncake(path: Path) -> Trace:
    arrival: list[float] = []
    inputs: list[float] = []
    outputs: list[float] = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                arrival.append(float(row["timestamp"]) / 1000.0)
                inputs.append(float(row["input_length"]))
                outputs.append(float(row["output_length"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise TraceError(f"{path}:{number}: {exc!r}") from None
    return Trace.of(arrival, inputs, outputs, str(path))


def _read_csv(path: Path) -> Trace:
    with path.open(encoding="utf-8") as stream:
        header = [h.strip() for h in stream.readline().strip().split(",")]
    if header[:3] != ["arrival_s", "input_tokens", "output_tokens"]:
        raise TraceError(f"{path}:1: expected the header arrival_s,input_tokens,output_tokens, got {header}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": an empty trace, refused later
            data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2), dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise TraceError(f"{path}: {exc}") from None
    if data.size == 0:
        data = np.zeros((0, 3))
    return Trace.of(data[:, 0], data[:, 1], data[:, 2], str(path))


def read_trace(
    path: str | Path,
    fmt: str,
    *,
    rng: np.random.Generator,
    tokens_in: TokenDistribution | None = None,
    tokens_out: TokenDistribution | None = None,
    span_s: tuple[float, float] | None = None,
) -> Trace:
    """Read a trace file (or a ServeGen folder). ``rng`` and ``tokens_*`` matter only for servegen."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: no such file or directory")
    if fmt == "azure":
        return _read_azure(path)
    if fmt == "mooncake":
        return _read_mooncake(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "servegen":
        files = sorted(path.glob("chunk-*-trace.csv")) if path.is_dir() else [path]
        if not files:
            raise TraceError(f"{path}: no chunk-*-trace.csv files")
        windows = [np.loadtxt(f, delimiter=",", usecols=(0, 1, 4, 5), ndmin=2,
                              converters={4: lambda s: float(s or 0), 5: lambda s: float(s or 0)}) for f in files]
        dists = [np.loadtxt(f, delimiter=",", usecols=(3,), dtype=str, ndmin=1) for f in files]
        return servegen_windows(
            windows, dists, rng=rng, span_s=span_s,
            tokens_in=tokens_in or TokenDistribution(), tokens_out=tokens_out or TokenDistribution(median=200, p95=800),
            source=str(path),
        )
    raise TraceError(f"{path}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")


# ------------------------------------------------------------------------------------------- synthetic


def _arrivals_from_rate(rate_per_s: FloatArray, step_s: float, rng: np.random.Generator) -> FloatArray:
    """A non-homogeneous Poisson process with piecewise-constant rate per ``step_s`` bin."""
    counts = rng.poisson(np.maximum(rate_per_s, 0.0) * step_s)
    starts = np.repeat(np.arange(len(rate_per_s)) * step_s, counts)
    return np.sort(starts + rng.random(len(starts)) * step_s)


def _with_tokens(arrival: FloatArray, tokens_in: TokenDistribution, tokens_out: TokenDistribution,
                 rng: np.random.Generator, source: str) -> Trace:
    n = len(arrival)
    return Trace(arrival, tokens_in.sample(n, rng), tokens_out.sample(n, rng), source)


def poisson(*, rate_per_s: float, duration_s: float, tokens_in: TokenDistribution, tokens_out: TokenDistribution,
            rng: np.random.Generator) -> Trace:
    """Homogeneous Poisson arrivals (exponential gaps) at ``rate_per_s``."""
    expected = rate_per_s * duration_s
    gaps = rng.exponential(1.0 / rate_per_s, int(expected + 10 * math.sqrt(expected) + 100))
    arrival = np.cumsum(gaps)
    arrival = arrival[arrival < duration_s]
    return _with_tokens(arrival, tokens_in, tokens_out, rng, f"poisson({rate_per_s}/s)")


def diurnal(*, mean_rate_per_s: float, amplitude: float, period_s: float, duration_s: float, noise: float,
            tokens_in: TokenDistribution, tokens_out: TokenDistribution, rng: np.random.Generator,
            phase_s: float = 0.0) -> Trace:
    """Rate = mean x (1 + amplitude x sin(2 pi (t + phase) / period)) x lognormal noise per minute."""
    step = 60.0
    t = np.arange(0.0, duration_s, step)
    rate = mean_rate_per_s * (1.0 + amplitude * np.sin(2 * np.pi * (t + phase_s) / period_s))
    if noise > 0:
        rate = rate * rng.lognormal(-0.5 * noise * noise, noise, len(t))
    arrival = _arrivals_from_rate(rate, step, rng)
    arrival = arrival[arrival < duration_s]
    return _with_tokens(arrival, tokens_in, tokens_out, rng, f"diurnal({mean_rate_per_s}/s)")


def daily_profile(*, mean_rate_per_s: float, hourly: Sequence[float], duration_s: float, noise: float,
                  tokens_in: TokenDistribution, tokens_out: TokenDistribution, rng: np.random.Generator) -> Trace:
    """Rate = mean x the day's profile (24 hourly multipliers, linearly interpolated, repeating every
    day) x lognormal noise per minute: a workday with a sharp morning ramp repeats, as real fleets do."""
    if len(hourly) != 24:
        raise TraceError(f"hourly must list 24 multipliers, got {len(hourly)}")
    step = 60.0
    t = np.arange(0.0, duration_s, step)
    hours = np.mod(t / 3600.0, 24.0)
    profile = np.interp(hours, np.arange(25.0), np.append(np.asarray(hourly, dtype=np.float64), hourly[0]))
    rate = mean_rate_per_s * profile
    if noise > 0:
        rate = rate * rng.lognormal(-0.5 * noise * noise, noise, len(t))
    arrival = _arrivals_from_rate(rate, step, rng)
    arrival = arrival[arrival < duration_s]
    return _with_tokens(arrival, tokens_in, tokens_out, rng, f"daily-profile({mean_rate_per_s}/s)")


def flash_crowd(*, rate_per_s: float, multiplier: float, start_s: float, minutes: float, duration_s: float,
                tokens_in: TokenDistribution, tokens_out: TokenDistribution, rng: np.random.Generator) -> Trace:
    """Poisson at ``rate_per_s``, times ``multiplier`` for ``minutes`` from ``start_s``."""
    step = 1.0
    t = np.arange(0.0, duration_s, step)
    rate = np.where((t >= start_s) & (t < start_s + minutes * 60), rate_per_s * multiplier, rate_per_s)
    arrival = _arrivals_from_rate(rate, step, rng)
    return _with_tokens(arrival, tokens_in, tokens_out, rng, f"flash-crowd({rate_per_s}/s x{multiplier})")


def _unit_gaps(kind: str, shape: float, n: int, rng: np.random.Generator, source: str) -> FloatArray:
    """``n`` inter-arrival gaps of the window's distribution family and shape, rescaled to mean 1.

    Only the shape is kept: the published ``scale`` is a fit whose mean is not ``1 / rate`` (on
    language/m-large, rate x mean gap ranges from 0.03 to 8.9, 1.09 weighted by requests).
    """
    if kind == "Gamma":
        return rng.gamma(shape, 1.0 / shape, n)
    if kind == "Weibull":
        return rng.weibull(shape, n) / math.gamma(1.0 + 1.0 / shape)
    raise TraceError(f"{source}: unknown inter-arrival distribution {kind!r}")


def _equilibrium_first_gap(kind: str, shape: float, rng: np.random.Generator) -> float:
    """The wait to the first arrival of a *stationary* renewal process with mean-1 gaps of this kind.

    It is a uniform fraction of a length-biased gap (the gap an arbitrary instant falls in). The
    length-biased Gamma(k) is Gamma(k + 1); the length-biased Weibull(c) is (Gamma(1 + 1/c))^(1/c).
    Starting from an arrival instead over-counts the opening of a bursty (CV > 1) process.
    """
    if kind == "Gamma":
        biased = rng.gamma(shape + 1.0, 1.0 / shape)
    else:
        biased = rng.gamma(1.0 + 1.0 / shape) ** (1.0 / shape) / math.gamma(1.0 + 1.0 / shape)
    return float(rng.random() * biased)


def servegen_windows(
    windows: list[npt.NDArray[np.float64]],
    dists: list[npt.NDArray[np.str_]],
    *,
    rng: np.random.Generator,
    tokens_in: TokenDistribution,
    tokens_out: TokenDistribution,
    span_s: tuple[float, float] | None = None,
    source: str = "servegen",
) -> Trace:
    """Generate arrivals from ServeGen per-client windows: ``[window_start_s, rate, shape, scale]`` rows.

    Each client is one renewal process running through its windows in *operational time* (time
    measured in expected arrivals): a window of rate ``r`` is ``600 r`` units long, and its gaps are
    drawn from the window's Gamma or Weibull with the published shape, rescaled to mean 1 unit. So
    the expected count of a window is the published ``rate x 600`` and its arrivals spread over the
    whole window; the gap in progress at a window's end carries into the next active window, and the
    process starts stationary (not at an arrival) at the client's first window in the span. A
    window with no rate or no distribution has no arrivals and does not advance the process.
    ``span_s`` keeps only ``[start, end)`` of the day (times are then relative to ``start``).
    """
    length = 600.0
    parts: list[FloatArray] = []
    lo, hi = span_s if span_s is not None else (-math.inf, math.inf)
    for rows, kinds in zip(windows, dists, strict=True):
        carry: float | None = None  # operational time to the client's next arrival
        order = np.argsort(rows[:, 0], kind="stable") if len(rows) else np.zeros(0, dtype=np.int64)
        for i in order.tolist():
            start, rate, shape = float(rows[i, 0]), float(rows[i, 1]), float(rows[i, 2])
            kind = str(kinds[i])
            if rate <= 0 or not kind or start + length <= lo or start >= hi:
                continue
            if kind not in ("Gamma", "Weibull"):
                raise TraceError(f"{source}: unknown inter-arrival distribution {kind!r}")
            if not shape > 0:
                raise TraceError(f"{source}: window {start:g} s: {kind} shape {shape!r} must be > 0")
            units = rate * length
            at = _equilibrium_first_gap(kind, shape, rng) if carry is None else carry  # the pending arrival
            points: list[FloatArray] = []
            while at < units:
                gaps = _unit_gaps(kind, shape, int((units - at) * 1.2 + 20), rng, source)
                cum = at + np.concatenate([[0.0], np.cumsum(gaps)])  # cum[0] is the pending arrival
                inside = int(np.searchsorted(cum, units, side="left"))
                if inside == len(cum):  # all in the window: the last one stays pending for the next draw
                    inside -= 1
                points.append(cum[:inside])
                at = float(cum[inside])
            carry = at - units
            t = start + np.concatenate(points) / rate if points else np.zeros(0)
            parts.append(t[(t >= lo) & (t < hi)])
    arrival = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
    if math.isfinite(lo):
        arrival = arrival - lo
    return _with_tokens(arrival, tokens_in, tokens_out, rng, source)
