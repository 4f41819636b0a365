"""Label selectors with Kubernetes semantics (apimachinery ``labels.Parse``).

Cases: every operator parses and matches as in Go (including ``!=``/``notin`` matching an absent
key, ``gt``/``lt`` on integers, ``in``/``notin`` as values); the canonical string sorts by key and
sorts set values; the Go error messages for bad syntax, bad keys, bad values and bad operators
(taken from apimachinery's own tests where they exist, e.g. ``found '', expected: identifier after ','``).
"""

from __future__ import annotations

import pytest

from autoscaler.metrics_api.selector import SelectorError, parse_selector

LABELS = {"policy": "chat", "tier": "gold", "replicas": "4", "example.com/team": "a"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("policy=chat", True),
        ("policy==chat", True),
        ("policy=other", False),
        ("policy!=other", True),
        ("absent!=x", True),
        ("tier in (gold,silver)", True),
        ("tier in (silver)", False),
        ("tier notin (silver)", True),
        ("absent notin (x)", True),
        ("absent in (x)", False),
        ("policy", True),
        ("absent", False),
        ("!absent", True),
        ("!policy", False),
        ("replicas>3", True),
        ("replicas<4", False),
        ("absent>1", False),
        ("example.com/team=a", True),
        ("  policy = chat ,  tier  in ( gold ) ", True),
        ("policy=chat,tier=silver", False),
        ("x in (in,notin)", False),
        ("policy=", False),
    ],
)
def test_operators_match_like_kubernetes(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_canonical_string_sorts_keys_and_values() -> None:
    assert str(parse_selector("tier in (b,a),!canary,queue=orders")) == "!canary,queue=orders,tier in (a,b)"
    assert str(parse_selector("a>3,b<2,c!=d,e==f")) == "a>3,b<2,c!=d,e==f"
    assert parse_selector("").empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app=myapp,", "found '', expected: identifier after ','"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a>x", 'unable to parse requirement: values[0]: Invalid value: "x": '
                "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("x_=1", 'unable to parse requirement: <nil>: Invalid value: "x_": name part must consist of alphanumeric '
                 "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',"
                 "  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    ],
)
def test_errors_carry_the_go_parser_message(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_selector(text)
    assert str(raised.value) == message


def test_bad_values_and_prefixes_are_rejected() -> None:
    for text in ("a=@@", "a/b/c=1", "/a=1", "UPPER.com/a=1", "a in (x y)", "a" * 64):
        with pytest.raises(SelectorError, match="unable to parse requirement"):
            parse_selector(text)
