"""RFC 23 Flux Standard Duration."""

import math

import pytest
from flux.core.util.fsd import format_fsd, parse_fsd
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize("text,seconds", [
    ("1", 1.0), ("1.5", 1.5), ("1s", 1.0), ("2ms", 0.002), ("1.5m", 90.0), ("2h", 7200.0),
    ("1d", 86400.0), (".5s", 0.5), ("+3", 3.0), ("1e3", 1000.0), ("0", 0.0), (" 10s ", 10.0),
    (5, 5.0), (2.5, 2.5),
])
def test_parse(text, seconds):
    assert parse_fsd(text) == seconds


@pytest.mark.parametrize("text", ["inf", "INF", "infinity", "Infinity"])
def test_infinity(text):
    assert parse_fsd(text) == math.inf


@pytest.mark.parametrize("bad", ["banana", "-1", "-1s", "1_000", "10h5m", "1 s", "", "s", "nan",
                                 "1x", "1e999", "0x10", -1, float("nan"), None, True, [1]])
def test_rejects(bad):
    with pytest.raises(ValueError):
        parse_fsd(bad)


def test_format():
    assert format_fsd(30) == "30s"
    assert format_fsd(600) == "10m"
    assert format_fsd(7200) == "2h"
    assert format_fsd(172800) == "2d"
    assert format_fsd(0.05) == "50ms"
    assert format_fsd(math.inf) == "infinity"


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_format_parses_back(seconds):
    assert parse_fsd(format_fsd(seconds)) == pytest.approx(seconds, rel=1e-3, abs=1e-6)
