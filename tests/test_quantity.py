"""Quantity parsing and canonical formatting.

Cases: the reference's canonical-form examples; MilliValue rounding up; suffixes and exponents;
binary noise in measured floats; bad strings.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.core.quantity import QuantityError, format_milli, parse_quantity_milli, to_milli


@pytest.mark.parametrize(
    ("milli", "text"),
    [
        (1500, "1500m"),
        (1000, "1"),
        (250, "250m"),
        (120000, "120"),
        (1500000, "1500"),
        (2000000, "2k"),
        (7 * 10**9, "7M"),
        (-500, "-500m"),
        (1234567, "1234567m"),
        (0, "0"),
    ],
)
def test_format_milli_matches_apimachinery_canonical_form(milli: int, text: str) -> None:
    assert format_milli(milli) == text


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("5", 5000),
        (5, 5000),
        ("500m", 500),
        ("2k", 2_000_000),
        ("0.05", 50),
        ("1e3", 1_000_000),
        ("1.5", 1500),
        ("33333u", 34),
        ("1n", 1),
        ("1Ki", 1_024_000),
        (0.5, 500),
        ("-1", -1000),
    ],
)
def test_parse_quantity_milli_rounds_up_like_milli_value(text: object, milli: int) -> None:
    assert parse_quantity_milli(text) == milli  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "abc", "5 m", "1.2.3", "5mm", "ki", float("nan"), True])
def test_parse_quantity_rejects_garbage(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity_milli(bad)  # type: ignore[arg-type]


def test_to_milli_ignores_binary_noise_but_rounds_real_fractions_up() -> None:
    assert to_milli(0.1 + 0.2) == 300
    assert to_milli(0.3001) == 301  # 300.1 milli is a real fraction: up
    assert to_milli(40.0) == 40000
    assert to_milli(0.0004) == 1


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_round_trips(milli: int) -> None:
    assert parse_quantity_milli(format_milli(milli)) == milli
