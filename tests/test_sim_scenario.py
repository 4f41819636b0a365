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


def test_scenario_errors_name_file_line_key_value(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poisson}}\n  fleet: {maxConcurrency: 0}\n"
                               "  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:6: spec\.fleet\.maxConcurrency = 0: must be >= 1"):
        load_scenario(path)
    path = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poison}}\n  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:5: spec\.trace\.synthetic\.kind = poison: must be one of "
                                            r"poisson, .*\(did you mean 'poisson'\?\)"):
        load_scenario(path)


def test_every_scenario_key_is_checked_with_did_you_mean_and_all_problems_at_once(tmp_path: Path) -> None:
    """Item 6 of issue 11: the same declarative schema as policies. Each of these was silently ignored
    (or crashed with a KeyError) before."""
    body = """spec:
  trace: {synthetic: {kind: poisson, ratePerSecnd: 3}}
  fleet: {maxConcurency: 8, loadTimeSeconds: {distribution: lognormal, median: 200, p95: 100}}
  slo: {latencySeconds: 1e999}
  policies: [x.yaml]
  seeed: 4
"""
    with pytest.raises(ScenarioError) as info:
        load_scenario(_scenario(tmp_path, body))
    lines = str(info.value).splitlines()
    assert any(":5: spec.trace.synthetic.ratePerSecnd = 3: unknown field (did you mean 'ratePerSecond'?)" in x
               for x in lines), lines
    assert any(":6: spec.fleet.maxConcurency = 8: unknown field (did you mean 'maxConcurrency'?)" in x for x in lines)
    assert any(":7: spec.slo.latencySeconds = 1e999: must be a finite number" in x for x in lines)
    assert any(":9: spec.seeed = 4: unknown field (did you mean 'seed'?)" in x for x in lines)
    # cross-field rules run once the fields are valid, with their lines too
    body = "spec:\n  trace: {synthetic: {kind: poisson}, path: x.csv}\n  policies: [x.yaml]\n"
    with pytest.raises(ScenarioError, match=r":5: spec\.trace = .*needs exactly one of synthetic"):
        load_scenario(_scenario(tmp_path, body))
    wrong = _scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poisson}}\n  policies: [x.yaml]\n")
    wrong.write_text(wrong.read_text().replace("v1alpha1", "v1"))
    with pytest.raises(ScenarioError, match=r":1: apiVersion = inference-autoscaler\.io/v1: must be one of "
                                            r"inference-autoscaler\.io/v1alpha1"):
        load_scenario(wrong)


def test_scenario_defaults_come_from_one_place(tmp_path: Path) -> None:
    """An absent key takes the simulator's own default (the config dataclasses), not a second copy."""
    from autoscaler.sim.fleet import FleetConfig
    from autoscaler.sim.pipeline import PipelineConfig
    from autoscaler.sim.run import Slo

    scenario = load_scenario(_scenario(tmp_path, "spec:\n  trace: {synthetic: {kind: poisson}}\n  policies: [x.yaml]\n"))
    assert scenario.fleet.max_concurrency == FleetConfig().max_concurrency
    assert scenario.fleet.scheduling_delay_s == FleetConfig().scheduling_delay_s
    assert scenario.pipeline == PipelineConfig(scrape_interval_s=PipelineConfig().scrape_interval_s)
    assert scenario.slo == Slo()


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


@pytest.mark.parametrize("kind", ["Simulation", "SimulationBaseline"])
def test_json_schema_of_simulation_files_accepts_every_shipped_file_and_refuses_a_typo(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import jsonschema
    import yaml

    assert main(["schema", "--kind", kind]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    files = [path for path in sorted(Path("simulations").rglob("*.yaml"))
             if yaml.safe_load(path.read_text()).get("kind") == kind]  # baselines/ also holds ScalingPolicy files
    assert len(files) >= 4
    for path in files:
        document = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(document)), path
        document["spec"]["typo"] = 1
        assert list(validator.iter_errors(document)), path


def test_null_keys_and_partial_load_times_take_the_old_defaults(tmp_path: Path) -> None:
    """Files that loaded before the schema still load: ``key:`` left empty is a key not set."""
    body = """spec:
  trace: {synthetic: {kind: poisson, durationSeconds: 60}, inputTokens: null}
  fleet: {loadTimeSeconds: {distribution: fixed}, prefillTokensPerSecond: null}
  metricsPipeline:
  slo:
  durationSeconds:
  policies: [x.yaml]
"""
    scenario = load_scenario(_scenario(tmp_path, body))
    assert scenario.fleet.load_time.median_s == scenario.fleet.load_time.p95_s == 180.0
    assert scenario.fleet.prefill_tokens_per_s == float("inf") and scenario.duration_s is None
    lognormal = _scenario(tmp_path, body.replace("{distribution: fixed}", "{p95: 300}"))
    assert load_scenario(lognormal).fleet.load_time.median_s == 180.0


def test_unreadable_trace_files_are_errors_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 4)
    for trace in ("folder", "bin.csv"):
        args = ["simulate", "--trace", str(tmp_path / trace), "--format", "csv",
                "--policy", "simulations/baselines/knative-kpa.yaml", "--out", str(tmp_path / "o"), "--no-plots"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"simulate (command line): spec.trace: {tmp_path / trace} (csv): " in err and "Traceback" not in err


def test_simulate_trace_replaces_the_scenarios_trace_and_scaling_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: the Azure scenario replicates its own trace x12; a user's trace is not scaled unless asked."""
    trace = TRACES / "mooncake-conversation-15min.jsonl"
    base = ["simulate", "--scenario", "simulations/azure-code-30min.yaml", "--trace", str(trace),
            "--policy", "simulations/baselines/static-peak.yaml", "--no-plots"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert f"trace: read {trace} (mooncake): 2,728 requests over 900 s" in err
    assert "rate scale" not in err and "time scale" not in err
    assert json.loads((tmp_path / "a" / "report.json").read_text())["policies"][0]["requests"] == 2728
    assert main([*base, "--keep-scaling", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "rate scale x12 (rateScale): " in err
    kept = json.loads((tmp_path / "b" / "report.json").read_text())["policies"][0]["requests"]
    assert 12 * 2728 * 0.9 < kept < 12 * 2728 * 1.1
    assert main([*base, "--rate-scale", "2", "--out", str(tmp_path / "c")]) == 0
    assert "rate scale x2 (rateScale): " in capsys.readouterr().err


def test_simulate_command_line_overrides_get_the_files_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "o"), "--no-plots"]
    assert main(["simulate", "--scenario", "simulations/flash-crowd.yaml", "--rate-scale", "1e12", *out]) == 1
    assert "--rate-scale 1000000000000.0: must be <= 10000" in capsys.readouterr().err
    assert main(["simulate", "--scenario", "simulations/flash-crowd.yaml", "--duration", "-5", *out]) == 1
    assert "--duration -5.0: must be > 0" in capsys.readouterr().err
    assert main(["simulate", "--trace", "x.csv", "--policy", "p.yaml", "--keep-scaling", *out]) == 1
    assert "--keep-scaling keeps a scenario's scaling: it needs --scenario" in capsys.readouterr().err
    assert main(["simulate", "--scenario", "simulations/flash-crowd.yaml", "--format", "csv", *out]) == 1
    assert "--format is the format of --trace" in capsys.readouterr().err
