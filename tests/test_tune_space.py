"""The tuning space, the fit/held-out split and the in-place editing of the tuned file (no simulation).

Case matrix:
  space       a valid mapping (range or low/high; int inferred from integer bounds; log; objective;
              targetAttainment) | every invalid field named with its value: unknown key (did you mean),
              no parameters, path outside spec, bad selector, low >= high, log with low <= 0, int with
              fractional bounds, duplicate path, bad objective, attainment outside (0, 1]
  --param     PATH=LOW:HIGH[:int|:float][:log] and its errors
  resolve     [name] and [index] selectors against the effective document | an unset mapping is created |
              a missing item, an unknown name, a non-number: errors naming the parameter
  defaults    ratio policy: both targets +-50%, the scale-down window, the first rule of each direction;
              predictive: its quantile and spare cap; SLO: forecast quantile and the concurrency prior
              bounded by the replica's slots; every default parameter yields a valid candidate
  candidates  built through the loader: a value the loader refuses is a PolicyError, never simulated
  folds       one fold: the last holdout | rolling origin: consecutive held-out stretches | auto: three
              folds on 14 days, one on 3 days | defaults (1 day from 3 days on, else a quarter) | errors
  yaml edit   a value set in place keeps the file's layout and comments (the team's comment kept as
              'was:') | a default the file lacks goes into its block mapping | into a flow mapping | a
              list the file lacks is inserted whole | the result loads to exactly the candidate policy
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from autoscaler.errors import InputError, PolicyError
from autoscaler.policy import load_policy_file, policy_to_document
from autoscaler.tune.candidates import CandidateBuilder
from autoscaler.tune.space import (
    Parameter,
    TuningError,
    TuningSpace,
    default_space,
    parse_parameter,
    parse_space,
    resolve,
    with_values,
)
from autoscaler.tune.split import DAY_S, parse_duration, plan_folds
from autoscaler.tune.yamledit import Edit, set_values

ROOT = Path(__file__).resolve().parent.parent
REACTIVE = ROOT / "simulations" / "policies" / "chat-reactive.yaml"
PREDICTIVE = ROOT / "simulations" / "policies" / "chat-predictive.yaml"
SLO = ROOT / "simulations" / "policies" / "chat-slo.yaml"
TEAM_CHAT = ROOT / "policies" / "team-a" / "chat.yaml"


# ------------------------------------------------------------------------------------------------ space


def test_a_valid_space() -> None:
    space = parse_space({
        "parameters": [
            {"path": "spec.metrics[tokens].target.averageValue", "range": [100, 300]},
            {"path": "spec.predictive.quantile", "low": 0.5, "high": 0.99, "log": True},
            {"path": "spec.behavior.scaleDown.stabilizationWindowSeconds", "range": [0, 600], "type": "float"},
        ],
        "objective": "frontier",
        "targetAttainment": 0.99,
    })
    tokens, quantile, window = space.parameters
    assert tokens == Parameter("spec.metrics[tokens].target.averageValue", 100.0, 300.0, integer=True)
    assert quantile.log and not quantile.integer
    assert not window.integer
    assert (space.objective, space.target_attainment) == ("frontier", 0.99)
    assert parse_space({"parameters": [{"path": "spec.minReplicas", "range": [1, 3]}]}).target_attainment == "policy"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"parameters": [], "objective": "frontier"}, "tuning.parameters = []: must list at least one parameter"),
        ({"parametres": []}, "tuning.parametres: unknown field (did you mean 'parameters'?)"),
        ({"parameters": [{"path": "spec.x", "rnage": [1, 2]}]}, "tuning.parameters[0].rnage: unknown field"),
        ({"parameters": [{"path": "metadata.name", "range": [1, 2]}]}, "must name a field under spec."),
        ({"parameters": [{"path": "spec.metrics[A B].x", "range": [1, 2]}]}, "[A B] is neither an index nor"),
        ({"parameters": [{"path": "spec.x", "range": [3, 2]}]}, "range = [3, 2]: the low bound must be below"),
        ({"parameters": [{"path": "spec.x", "range": [0, 2], "log": True}]}, "a log-scale range must be above 0"),
        ({"parameters": [{"path": "spec.x", "range": [0.5, 2], "type": "int"}]}, "type int needs integer bounds"),
        ({"parameters": [{"path": "spec.x", "range": [1, "2"]}]}, "range[1] = '2': must be a finite number"),
        ({"parameters": [{"path": "spec.x"}]}, "tuning.parameters[0]: range (or low and high) is required"),
        ({"parameters": [{"path": "spec.x", "range": [1, 2]}, {"path": "spec.x", "range": [1, 3]}]},
         "path = spec.x: declared twice"),
        ({"parameters": [{"path": "spec.x", "range": [1, 2]}], "objective": "cheapest"},
         "tuning.objective = 'cheapest': must be one of min-gpu-hours, frontier"),
        ({"parameters": [{"path": "spec.x", "range": [1, 2]}], "targetAttainment": 99},
         "tuning.targetAttainment = 99: must be a fraction in (0, 1]"),
        ({"parameters": [{"path": "spec.x", "range": [1, 2]}], "targetAttainment": "best"},
         "tuning.targetAttainment = 'best'"),
        ("parameters", "tuning = 'parameters': must be a mapping"),
    ],
)
def test_an_invalid_space_names_the_field_and_the_value(raw: object, message: str) -> None:
    with pytest.raises(TuningError) as caught:
        parse_space(raw)
    assert message in str(caught.value)
    assert isinstance(caught.value, InputError)  # exit status 1, like every bad input document


def test_command_line_parameters() -> None:
    assert parse_parameter("spec.metrics[0].target.averageValue=100:300") == Parameter(
        "spec.metrics[0].target.averageValue", 100, 300, integer=True)
    assert parse_parameter("spec.slo.forecastQuantile=0.5:0.99") == Parameter("spec.slo.forecastQuantile", 0.5, 0.99)
    assert parse_parameter("spec.metrics[0].target.averageValue=100:300:float:log") == Parameter(
        "spec.metrics[0].target.averageValue", 100, 300, integer=False, log=True)
    for text, message in [("spec.x=1:2:fast", "allowed are int or float, and log"),
                          ("spec.x=a:2", "LOW and HIGH must be numbers"),
                          ("spec.x=1:inf", "must be finite"),
                          ("spec.x", "expected PATH=LOW:HIGH")]:
        with pytest.raises(TuningError, match="--param " + text.split("=")[0]) as caught:
            parse_parameter(text)
        assert message in str(caught.value)


def test_snapped_values_are_what_the_tuned_file_says() -> None:
    assert Parameter("a", 90, 270, integer=False).snap(181.37) == 181  # a span of 180: whole numbers
    assert Parameter("a", 2, 6).snap(4.4449) == 4.44
    assert Parameter("a", 0.5, 0.99).snap(0.87654) == 0.877
    assert Parameter("a", 0, 600, integer=True).snap(599.7) == 600


def test_resolve_against_the_effective_document() -> None:
    doc = policy_to_document(load_policy_file(REACTIVE))
    assert resolve(doc, parse_parameter("spec.metrics[queue].target.averageValue=1:8")) == (
        ("spec", "metrics", 1, "target", "averageValue"), 4.0)
    assert resolve(doc, parse_parameter("spec.behavior.scaleDown.policies[0].value=5:100")) == (
        ("spec", "behavior", "scaleDown", "policies", 0, "value"), 100.0)  # the HPA default, filled in
    assert resolve(doc, parse_parameter("spec.warmPool.minSpare=0:2")) == (("spec", "warmPool", "minSpare"), None)
    updated = with_values(doc, {("spec", "warmPool", "minSpare"): 1})
    assert updated["spec"]["warmPool"] == {"minSpare": 1} and "warmPool" not in doc["spec"]
    for text, message in [
        ("spec.metrics[latency].target.averageValue=1:2", "has no item named 'latency' (has: tokens, queue)"),
        ("spec.metrics[5].target.averageValue=1:2", "spec.metrics has 2 item(s), so [5] does not exist"),
        ("spec.target.name=1:2", "spec.target.name = 'llm': is not a number"),
        ("spec.mode=1:2", "is not a number"),
        ("spec.warmPool.policies[0].value=1:2", "spec.warmPool is not set, so policies[0].value does not exist"),
    ]:
        with pytest.raises(TuningError) as caught:
            resolve(doc, parse_parameter(text))
        assert message in str(caught.value), str(caught.value)


# --------------------------------------------------------------------------------------------- defaults


def test_default_spaces_follow_the_policy_kind() -> None:
    reactive = default_space(load_policy_file(REACTIVE))
    assert [(p.path, p.low, p.high) for p in reactive.parameters] == [
        ("spec.metrics[tokens].target.averageValue", 90.0, 270.0),
        ("spec.metrics[queue].target.averageValue", 2.0, 6.0),
        ("spec.behavior.scaleDown.stabilizationWindowSeconds", 0.0, 600.0),
        ("spec.behavior.scaleUp.policies[0].value", 1.0, 8.0),
        ("spec.behavior.scaleDown.policies[0].value", 5.0, 100.0),
    ]
    predictive = [p.path for p in default_space(load_policy_file(PREDICTIVE)).parameters]
    assert "spec.predictive.quantile" in predictive and "spec.warmPool.maxSpare" in predictive
    slo = {p.path: p for p in default_space(load_policy_file(SLO), replica_slots=16).parameters}
    assert slo["spec.slo.forecastQuantile"].high == 0.99
    assert (slo["spec.slo.concurrencyPerReplica"].low, slo["spec.slo.concurrencyPerReplica"].high) == (4, 16)
    assert "spec.slo.concurrencyPerReplica" not in [p.path for p in default_space(load_policy_file(SLO)).parameters]
    team = load_policy_file(TEAM_CHAT, root=ROOT / "policies")  # its scale-up rules come from team defaults
    for policy in (load_policy_file(REACTIVE), load_policy_file(PREDICTIVE), load_policy_file(SLO), team):
        space = default_space(policy, replica_slots=16)
        with CandidateBuilder(policy, space) as builder:
            builder.check()  # every default parameter can make a valid policy
            middle = {p.path: p.snap((p.low + p.high) / 2) for p in space.parameters}
            assert builder.build(middle).name == policy.name


def test_candidates_go_through_the_loader() -> None:
    policy = load_policy_file(PREDICTIVE)
    space = TuningSpace((parse_parameter("spec.warmPool.maxSpare=0:8"),))
    with CandidateBuilder(policy, space) as builder:
        assert builder.build({"spec.warmPool.maxSpare": 6}).warm_pool.max_spare == 6  # type: ignore[union-attr]
        assert builder.build({"spec.warmPool.maxSpare": 4}) == replace(policy, source=policy.source)
    spare = replace(policy, warm_pool=replace(policy.warm_pool, min_spare=2))  # type: ignore[arg-type]
    with CandidateBuilder(spare, space) as builder, pytest.raises(PolicyError, match=r"must be >= spec\.warmPool\.minSpare"):
        builder.build({"spec.warmPool.maxSpare": 1})
    bad = TuningSpace((parse_parameter("spec.metrics[tokens].target.avgValue=1:9"),))
    with CandidateBuilder(policy, bad) as builder, pytest.raises(TuningError, match="avgValue"):
        builder.check()


# ------------------------------------------------------------------------------------------------ folds


def test_folds() -> None:
    (one,) = plan_folds(5399.8, holdout_s=1800, folds=1)  # a trace whose last request is just before 1.5 h
    assert (one.origin_s, one.end_s, one.last) == (3600, 5400, True)
    rolling = plan_folds(14 * DAY_S - 3, holdout_s=DAY_S, folds=3)
    assert [(f.origin_s / DAY_S, f.end_s / DAY_S) for f in rolling] == [(11, 12), (12, 13), (13, 14)]
    assert [f.last for f in rolling] == [False, False, True]
    assert len(plan_folds(14 * DAY_S)) == 3 and plan_folds(14 * DAY_S)[0].end_s - plan_folds(14 * DAY_S)[0].origin_s \
        == DAY_S
    assert len(plan_folds(3 * DAY_S)) == 1 and plan_folds(3 * DAY_S)[0].origin_s == 2 * DAY_S
    assert plan_folds(4 * 3600, folds=1)[0].origin_s == 3 * 3600  # short: a quarter held out
    assert [f.origin_s for f in plan_folds(4 * 3600)] == [2 * 3600, 3 * 3600]  # auto: two quarters of history left
    assert parse_duration("6h", total_s=1) == 21600 and parse_duration("0.25", total_s=100) == 25
    for call, message in [
        (lambda: plan_folds(3600, holdout_s=3600), "must be shorter than the trace"),
        (lambda: plan_folds(3 * DAY_S, holdout_s=DAY_S, folds=3), "leaves 0s of the 3d trace to fit"),
        (lambda: parse_duration("a day", total_s=1), "--holdout = 'a day': must be a duration"),
        (lambda: parse_duration("1.5", total_s=1), "between 0 and 1"),
    ]:
        with pytest.raises(TuningError) as caught:
            call()
        assert message in str(caught.value), str(caught.value)


# -------------------------------------------------------------------------------------------- yaml edit


def _edits(policy_path: Path, changes: dict[str, float | int], root: Path | None = None) -> tuple[str, object,
                                                                                                  list[Edit]]:
    policy = load_policy_file(policy_path, root=root)
    space = TuningSpace(tuple(Parameter(path, 0, 1000) for path in changes))
    builder = CandidateBuilder(policy, space)
    effective = builder.document_with(changes)
    edits = [Edit(builder.paths[path], value, f"tuned: {builder.current[path]} -> {value}", effective)
             for path, value in changes.items()]
    candidate = builder.build(changes)
    builder.close()
    return policy_path.read_text(), candidate, edits


def test_a_value_set_in_place_keeps_the_layout_and_comments(tmp_path: Path) -> None:
    text, candidate, edits = _edits(REACTIVE, {"spec.metrics[tokens].target.averageValue": 262,
                                               "spec.behavior.scaleDown.stabilizationWindowSeconds": 120,
                                               "spec.behavior.scaleUp.policies[0].value": 8})
    edited = set_values(text, "chat-reactive", edits, header="Tuned.")
    assert edited is not None
    assert edited.startswith("# Tuned.\n# The chat model scaled reactively")
    assert ("      target: {type: AverageValue, averageValue: 262}  # tuned: 180.0 -> 262; was: ~70% of a full "
            "batch: 8 slots / 0.03 s per token = 266\n") in edited
    assert "      target: {type: AverageValue, averageValue: 4}\n" in edited  # untouched lines stay as they were
    assert "  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 120  # tuned: 300.0 -> 120\n" in edited
    assert "    scaleUp:\n      policies:  # tuned [0].value: 4.0 -> 8\n      - type: Pods\n        value: 8\n" in edited
    (tmp_path / "tuned.yaml").write_text(edited)
    assert replace(load_policy_file(tmp_path / "tuned.yaml"), source="") == replace(candidate, source="")  # type: ignore[type-var]


def test_values_go_into_a_flow_mapping_and_a_layered_policy(tmp_path: Path) -> None:
    text, candidate, edits = _edits(TEAM_CHAT, {"spec.slo.forecastQuantile": 0.75,
                                                "spec.slo.concurrencyPerReplica": 12,
                                                "spec.behavior.scaleUp.policies[0].value": 8},
                                    root=ROOT / "policies")
    edited = set_values(text, "chat", edits)
    assert edited is not None
    assert ("  slo: {objective: ttft, percentile: 95, seconds: 2, forecastQuantile: 0.75, concurrencyPerReplica: 12}"
            "  # tuned: 0.9 -> 0.75; tuned: None -> 12\n") in edited
    # The scale-up rules came from the team's defaults (60 s periods): the whole list is stated, periods kept.
    assert "periodSeconds: 60" in edited and "value: 8" in edited
    team = tmp_path / "policies" / "team-a"
    team.mkdir(parents=True)
    for name in ("org-defaults.yaml",):
        (tmp_path / "policies" / name).write_text((ROOT / "policies" / name).read_text())
    (team / "defaults.yaml").write_text((ROOT / "policies" / "team-a" / "defaults.yaml").read_text())
    (team / "chat.yaml").write_text(edited)
    loaded = load_policy_file(team / "chat.yaml", root=tmp_path / "policies")
    assert replace(loaded, source="") == replace(candidate, source="")  # type: ignore[type-var]


def test_an_edit_that_cannot_be_made_faithfully_returns_none() -> None:
    text, _, edits = _edits(REACTIVE, {"spec.metrics[tokens].target.averageValue": 262})
    assert set_values(text, "no-such-policy", edits) is None
    assert set_values("a: [1, 2\n", "chat-reactive", edits) is None
