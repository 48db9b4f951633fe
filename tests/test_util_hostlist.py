"""RFC 29 hostlists."""

import pytest
from flux.core.util import hostlist
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize("text,hosts", [
    ("", []),
    ("foo", ["foo"]),
    ("foo[0-4]-eth2", [f"foo{i}-eth2" for i in range(5)]),
    ("foo[1,1,2,1]", ["foo1", "foo1", "foo2", "foo1"]),
    ("[00-2]", ["00", "01", "02"]),
    ("n[08-10]", ["n08", "n09", "n10"]),
    ("a,b[1-2],c", ["a", "b1", "b2", "c"]),
    ("n[3,1]", ["n3", "n1"]),
])
def test_decode(text, hosts):
    assert hostlist.decode(text) == hosts


@pytest.mark.parametrize("bad", ["foo[", "foo]", "foo[1-", "foo[a]", "foo[3-1]", "a,,b", "f[²]",
                                 "foo[]"])
def test_decode_rejects(bad):
    with pytest.raises(ValueError, match="invalid hostlist"):
        hostlist.decode(bad)


@pytest.mark.parametrize("hosts,text", [
    (["n9", "n10"], "n[9-10]"),
    (["n08", "n09", "n10"], "n[08-10]"),
    (["n1", "n01"], "n[1,01]"),
    (["foo1", "foo2", "bar", "foo3"], "foo[1-2],bar,foo3"),
    (["n099", "n100"], "n[099-100]"),
    (["x"], "x"),
])
def test_encode(hosts, text):
    assert hostlist.encode(hosts) == text
    assert hostlist.decode(text) == hosts


hosts = st.lists(st.builds(lambda p, n, w: f"{p}{n:0{w}d}", st.sampled_from(["n", "rack", "x-"]),
                           st.integers(0, 120), st.integers(0, 3)), max_size=20)


@given(hosts)
def test_roundtrip_keeps_order(names):
    assert hostlist.decode(hostlist.encode(names)) == names
