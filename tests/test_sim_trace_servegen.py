"""The ServeGen reader follows the published per-window rates.

Built on tiny synthetic chunk files written to tmp_path (the layout of ServeGen's
``chunk-<client>-trace.csv``: no header, ``window_start_s, rate, cv, iat_dist, shape, scale``), with
fitted scales whose mean gap is deliberately not ``1 / rate`` (as in the published data) and bursty
shapes (CV > 1), where a process restarted at each window's start over-counts its opening.

Case matrix:
  counts     each window's count, over seeds, within 3% of rate x 600 (Gamma and Weibull, two clients)
  spread     each half of every window holds half of its arrivals; the first tenth, a tenth; a sparse
             bursty client (12 a window, CV 3.2) neither over-counts nor crowds each window's opening
  gaps       an empty window has no arrival, and the process carries over it
  span       only [start, end) is kept, shifted to 0
  errors     an unknown distribution names the file; same seed, same trace
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.sim.trace import TraceError, read_trace

# client 0: Gamma shape 0.3 (CV 1.8), its fitted mean gap 1.3 x 1 / rate; one silent window (1200 s);
# Weibull shape 0.6 (CV 1.8) in the last two
CLIENT_0 = [
    (0, 2.0, 1.8, "Gamma", 0.3, 1.3 / (2.0 * 0.3)),
    (600, 1.0, 1.8, "Gamma", 0.3, 0.8 / (1.0 * 0.3)),
    (1200, 0, 0, "", 0, 0),
    (1800, 0.5, 1.8, "Weibull", 0.6, 1.7),
    (2400, 3.0, 1.8, "Weibull", 0.6, 0.2),
]
# client 1: steadier (Gamma shape 2, CV 0.7) at a rate that changes every window
CLIENT_1 = [
    (0, 1.0, 0.7, "Gamma", 2.0, 0.5),
    (600, 4.0, 0.7, "Gamma", 2.0, 0.1),
    (1200, 0.5, 0.7, "Gamma", 2.0, 1.0),
    (1800, 2.0, 0.7, "Gamma", 2.0, 0.3),
    (2400, 0, 0, "", 0, 0),
]
WINDOWS = np.arange(0, 3000, 600)


def _chunks(tmp_path: Path) -> Path:
    folder = tmp_path / "servegen"
    folder.mkdir()
    for i, rows in enumerate((CLIENT_0, CLIENT_1)):
        lines = [",".join(str(v) for v in row) for row in rows]
        (folder / f"chunk-{i}-trace.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _expected() -> np.ndarray:
    rate = {start: 0.0 for start in WINDOWS.tolist()}
    for start, r, *_ in CLIENT_0 + CLIENT_1:
        rate[start] += r
    return np.array([rate[s] * 600 for s in WINDOWS.tolist()])


SEEDS = 40


def test_counts_follow_the_published_rates(tmp_path: Path) -> None:
    folder = _chunks(tmp_path)
    counts = np.zeros(len(WINDOWS))
    for seed in range(SEEDS):
        trace = read_trace(folder, "servegen", rng=np.random.default_rng(seed), span_s=(0, 3000))
        counts += np.histogram(trace.arrival_s, bins=len(WINDOWS), range=(0, 3000))[0]
    mean = counts / SEEDS
    np.testing.assert_allclose(mean, _expected(), rtol=0.03)


def test_arrivals_spread_over_each_window(tmp_path: Path) -> None:
    folder = _chunks(tmp_path)
    halves = np.zeros(2)
    tenths = np.zeros(10)
    for seed in range(SEEDS):
        offset = read_trace(folder, "servegen", rng=np.random.default_rng(seed), span_s=(0, 3000)).arrival_s % 600
        halves += np.histogram(offset, bins=2, range=(0, 600))[0]
        tenths += np.histogram(offset, bins=10, range=(0, 600))[0]
    assert halves / halves.sum() == pytest.approx([0.5, 0.5], abs=0.02)
    assert tenths[0] / tenths.sum() == pytest.approx(0.1, abs=0.01)  # not front-loaded


def test_a_sparse_bursty_client_is_not_front_loaded(tmp_path: Path) -> None:
    """12 expected arrivals a window, CV 3.2 (Gamma shape 0.1): restarted at every window, a renewal
    process puts about (CV^2 - 1) / 2 = 4.5 extra arrivals at each window's opening."""
    path = tmp_path / "chunk-0-trace.csv"
    path.write_text("".join(f"{600 * k},0.02,3.2,Gamma,0.1,500\n" for k in range(50)), encoding="utf-8")
    offsets = np.concatenate([
        read_trace(path, "servegen", rng=np.random.default_rng(seed)).arrival_s % 600 for seed in range(20)
    ])
    assert len(offsets) / (20 * 50) == pytest.approx(12.0, rel=0.1)
    assert np.mean(offsets < 60) == pytest.approx(0.1, abs=0.03)


def test_a_silent_window_has_no_arrival(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "chunk-0-trace.csv").write_text("0,5.0,1,Gamma,1.0,0.2\n600,0,0,,0,0\n1200,5.0,1,Gamma,1.0,0.2\n")
    trace = read_trace(folder / "chunk-0-trace.csv", "servegen", rng=np.random.default_rng(1), span_s=(0, 1800))
    counts = np.histogram(trace.arrival_s, bins=3, range=(0, 1800))[0]
    assert counts[1] == 0 and counts[0] == pytest.approx(3000, rel=0.1) and counts[2] == pytest.approx(3000, rel=0.1)


def test_span_keeps_start_to_end_shifted_to_zero(tmp_path: Path) -> None:
    folder = _chunks(tmp_path)
    trace = read_trace(folder, "servegen", rng=np.random.default_rng(0), span_s=(900, 1500))
    assert len(trace) > 0 and trace.arrival_s.min() >= 0 and trace.arrival_s.max() < 600
    whole = read_trace(folder, "servegen", rng=np.random.default_rng(0))
    assert 2400 < whole.arrival_s.max() < 3000  # no span: the whole file


def test_unknown_distribution_and_determinism(tmp_path: Path) -> None:
    folder = _chunks(tmp_path)
    a = read_trace(folder, "servegen", rng=np.random.default_rng(3))
    b = read_trace(folder, "servegen", rng=np.random.default_rng(3))
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.input_tokens, b.input_tokens)
    bad = tmp_path / "chunk-9-trace.csv"
    bad.write_text("0,1.0,1,Lognormal,1.0,1.0\n", encoding="utf-8")
    with pytest.raises(TraceError, match=r"chunk-9-trace\.csv: unknown inter-arrival distribution 'Lognormal'"):
        read_trace(bad, "servegen", rng=np.random.default_rng(0))
