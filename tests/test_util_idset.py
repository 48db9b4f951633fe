"""RFC 22 idsets."""

import pytest
from flux.core.util import idset
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize("text,ids", [
    ("", []), ("[]", []), ("0", [0]), ("1-3,5-6,42", [1, 2, 3, 5, 6, 42]),
    ("[1-3]", [1, 2, 3]), (" 3, 1 ,2 ", [1, 2, 3]), ("2,2,1-2", [1, 2]), ("5-5", [5]),
])
def test_decode(text, ids):
    assert idset.decode(text) == ids
    assert idset.count(text) == len(ids)


@pytest.mark.parametrize("bad", ["a", "1,,2", "3-1", "-1", "1-", "1-2-3", "1.5", "²", "١", "[1", ","])
def test_decode_rejects(bad):
    with pytest.raises(ValueError, match="invalid idset"):
        idset.decode(bad)


def test_ranges_do_not_expand():
    assert idset.decode_ranges("0-4294967295,5") == [(0, 4294967295)]
    assert idset.count("0-4294967295") == 2**32
    assert idset.contains("1-3,10-20", 15) and not idset.contains("1-3,10-20", 5)
    assert idset.decode_ranges("7,1-2,3,9-10") == [(1, 3), (7, 7), (9, 10)]


def test_encode():
    assert idset.encode([]) == ""
    assert idset.encode([5, 1, 2, 3, 3]) == "1-3,5"
    assert idset.encode([1, 2], brackets=True) == "[1-2]"
    assert idset.encode([7], brackets=True) == "7"
    with pytest.raises(ValueError):
        idset.encode([-1])


@given(st.sets(st.integers(0, 2000)))
def test_roundtrip(ids):
    text = idset.encode(ids)
    assert idset.decode(text) == sorted(ids)
    assert idset.decode(idset.encode(ids, brackets=True)) == sorted(ids)
