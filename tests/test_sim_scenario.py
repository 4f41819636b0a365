"""Scenarios, trace readers and the ``simulate`` command end to end.

Case matrix:
  readers    azure | mooncake | servegen (folder, span) | csv, on the slices of the public traces bundled in
             simulations/traces (README there: source, licence, how each was cut)
  transforms timeScale stretches | rateScale thins and replicates
  scenario   errors name the file, the key and the value | unknown preset in a policy is refused
  command    report.json has exactly the issue's fields per policy | summary.md | PNGs |
             same seed -> identical report | every shipped scenario loads, every baseline builds
  sense      on a trace not tuned for (Mooncake conversation, first 15 min): no-wait cheaper than static-peak, both
             meet the SLO, nothing costs less than the work-bound floor, nothing dropped
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.sim.compare import compare
from autoscaler.sim.scenario import ScenarioError, load_scenario, load_trace
from autoscaler.sim.trace import Trace, read_trace

TRACES = Path(__file__).resolve().parent.parent / "simulations" / "traces"  # bundled slices, nothing outside the repo
FIELDS = ["name", "gpuHours", "gpuHoursFloor", "sloAttainment", "latencyMean", "latencyP50", "latencyP95", "latencyP99", "waitMean",
          "coldStarts", "scaleEvents", "maxReplicas", "requests", "dropped"]


def test_readers_on_public_traces(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    azure = read_trace(TRACES / "azure-code-sample.csv", "azure", rng=rng)  # the first 30 min of the hour
    assert len(azure) == 5740 and azure.arrival_s[0] == 0 and 1780 < azure.duration_s < 1800
    assert np.median(azure.input_tokens) == 1459.5 and np.median(azure.output_tokens) == 13
    moon = read_trace(TRACES / "mooncake-conversation-15min.jsonl", "mooncake", rng=rng)  # the first 15 min
    assert len(moon) == 2728 and 890 < moon.duration_s < 900
    assert np.median(moon.input_tokens) == 7965 and np.median(moon.output_tokens) == 360
    serve = read_trace(TRACES / "servegen-language", "servegen", rng=rng, span_s=(72000, 72600))  # 3 clients
    assert 20 < len(serve) / 600 < 1000 and serve.duration_s < 600  # per-client rates summed, 20:00
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n2.0,10,5\n1.0,20,6\n", encoding="utf-8")
    csv = read_trace(path, "csv", rng=rng)
    assert csv.arrival_s.tolist() == [0.0, 1.0] and csv.input_tokens.tolist() == [20.0, 10.0]


def test_time_and_rate_scale() -> None:
    trace = Trace.of(np.arange(1000.0), np.ones(1000), np.ones(1000))
    rng = np.random.default_rng(0)
    assert trace.scaled(time_scale=2.0, rate_scale=1.0, rng=rng).duration_s == 1998.0
    assert len(trace.scaled(time_scale=1.0, rate_scale=3.0, rng=rng)) == 3000
    assert 450 < len(trace.scaled(time_scale=1.0, rate_scale=0.5, rng=rng)) < 550


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: inference-autoscaler.io/v1alpha1\nkind: Simulation\nmetadata: {name: t}\n" + body,
                    encoding="utf-8")
    return path


def test_scenario_errors_name_file_key_value(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poisson}}\n  fleet: {maxConcurrency: 0}\n"
                               "  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: spec\.fleet\.maxConcurrency = 0: must be >= 1"):
        load_scenario(path)
    path = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poison}}\n  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match=r"spec\.trace\.synthetic\.kind = 'poison'"):
        load_trace(load_scenario(path))


def test_policy_with_custom_query_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poisson, ratePerSecond: 1, durationSeconds: 60}}\n"
                               f"  policies: [{Path('policies/team-b/batch.yaml').resolve()}]\n")
    assert main(["simulate", "--scenario", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "cannot produce" in capsys.readouterr().err


def test_simulate_command_report_and_determinism(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--scenario", "simulations/flash-crowd.yaml", "--duration", "1800"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    table = capsys.readouterr().out
    assert "| policy" in table and "| no-wait" in table and "Cost floor:" in table
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["bounds"]["gpuHoursFloor"] == report["policies"][0]["gpuHoursFloor"] > 0
    assert [list(p) for p in report["policies"]] == [FIELDS] * len(report["policies"])
    for name in ("summary.md", "replicas.png", "latency.png", "cost_vs_slo.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert main([*args, "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()


@pytest.mark.parametrize("path", sorted(Path("simulations").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert len(load_trace(scenario)) > 0


def test_results_are_sensible_on_an_unseen_trace(tmp_path: Path) -> None:
    """Mooncake conversation, first 15 min (long prompts, ~350-token answers): none of the numbers were tuned on it."""
    path = _scenario(tmp_path, f"""spec:
  trace: {{path: {TRACES / 'mooncake-conversation-15min.jsonl'}, format: mooncake}}
  durationSeconds: 900
  fleet: {{maxConcurrency: 16, prefillTokensPerSecond: 40000, decodeSecondsPerToken: 0.02,
          loadTimeSeconds: {{distribution: fixed, value: 120}}, initialReplicas: 4}}
  slo: {{latencySeconds: 30}}
  policies: [{Path('simulations/baselines/static-peak.yaml').resolve()},
             {Path('simulations/baselines/no-wait.yaml').resolve()},
             {Path('simulations/baselines/keda-queue-depth.yaml').resolve()}]
""")
    results = {r.name: r.summary for r in compare(load_scenario(path), progress=None).results}
    static, no_wait, keda = results["static-peak"], results["no-wait"], results["keda-queue-depth"]
    assert static["sloAttainment"] > 0.97 and no_wait["sloAttainment"] > 0.97
    assert no_wait["gpuHours"] < static["gpuHours"]
    assert no_wait["waitMean"] < 1.0 and keda["waitMean"] >= no_wait["waitMean"]
    assert all(r["dropped"] == 0 for r in results.values())
    assert all(r["gpuHoursFloor"] < r["gpuHours"] for r in results.values())
