"""RFC 34 task maps."""

import pytest
from flux.core.job.taskmap import TaskMap, TaskMapError
from hypothesis import given
from hypothesis import strategies as st


def test_spec_examples():
    assert TaskMap.block([4] * 4).to_list() == [[0, 4, 4, 1]]
    assert TaskMap.cyclic([4] * 4).to_list() == [[0, 4, 1, 4]]
    assert TaskMap.cyclic([4] * 4, chunk=2).to_list() == [[0, 4, 2, 2]]


def test_queries():
    m = TaskMap.decode("[[0,4,1,4]]")
    assert (m.nnodes, m.total_ntasks) == (4, 16)
    assert m.taskids(1) == [1, 5, 9, 13]
    assert m.ntasks(3) == 4 and m.ntasks(9) == 0 and m.taskids(9) == []
    assert [m.nodeid(t) for t in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(LookupError):
        m.nodeid(16)
    with pytest.raises(LookupError):
        m.nodeid(-1)


def test_forms():
    m = TaskMap.block([4, 4])
    assert m.encode() == "[[0,2,4,1]]"
    assert m.encode("wrapped") == '{"version":1,"map":[[0,2,4,1]]}'
    assert m.encode("raw") == "0-3;4-7"
    assert m.encode("raw_deranged") == "0,1,2,3;4,5,6,7"
    assert m.encode("pmi") == "(vector,(0,2,4))"
    assert TaskMap.cyclic([2, 2]).encode("pmi") == "(vector,(0,2,1),(0,2,1))"
    for text in ("[[0,2,4,1]]", '{"version":1,"map":[[0,2,4,1]]}', "0-3;4-7", "(vector,(0,2,4))",
                 "(vector,(0,1,4),(1,1,4))"):
        assert TaskMap.decode(text) == m, text
    assert TaskMap.decode({"version": 1, "map": [[0, 2, 4, 1]]}) == m
    assert TaskMap.decode([]).unknown and TaskMap.decode("").unknown
    assert TaskMap().encode("pmi") == ""
    with pytest.raises(ValueError):
        m.encode("yaml")


@pytest.mark.parametrize("bad", [
    "[[0,1,1]]", "[[0,0,1,1]]", "[[-1,1,1,1]]", "[[0,1,1,true]]", '{"version":2,"map":[]}', "[1]",
    "{", "(vector,(0,1))", "(0,1,1)", "(vector,)", "0-1;1-2", "0;2", "a;b", '"x"',
])
def test_decode_rejects(bad):
    with pytest.raises(TaskMapError):
        TaskMap.decode(bad)


def test_append_merges():
    m = TaskMap()
    for node in (0, 1, 2, 3, 0, 1, 2, 3):
        m.append(node)
    assert m.to_list() == [[0, 4, 1, 2]]
    m = TaskMap().append(0, 1, 2).append(0, 1, 1)
    assert m.to_list() == [[0, 1, 3, 1]]
    m = TaskMap([[0, 1, 2, 3]]).append(0, 1, 1)
    assert m.total_ntasks == 7  # a repeated block is not widened
    with pytest.raises(TaskMapError):
        TaskMap().append(0, 0, 1)


def test_check():
    a = TaskMap.block([2, 2])
    a.check(TaskMap.cyclic([2, 2]))
    with pytest.raises(TaskMapError, match="node 0 has 3 tasks"):
        a.check(TaskMap.block([3, 1]))
    with pytest.raises(TaskMapError, match="nodes"):
        a.check(TaskMap.block([4]))


counts = st.lists(st.integers(0, 6), min_size=1, max_size=6)


@given(counts, st.integers(1, 3))
def test_property_forms_agree(c, chunk):
    for m in (TaskMap.block(c), TaskMap.cyclic(c, chunk)):
        assert m.total_ntasks == sum(c)
        for node, n in enumerate(c):
            assert m.ntasks(node) == n
            for t in m.taskids(node):
                assert m.nodeid(t) == node
        if m.unknown:
            continue
        for form in ("json", "wrapped", "pmi", "raw"):
            text = m.encode(form)
            if form == "raw" and 0 in c:
                continue  # nodes with no task cannot be expressed in the raw form
            again = TaskMap.decode(text)
            again.check(m)
            assert [again.nodeid(t) for t in range(m.total_ntasks)] == \
                [m.nodeid(t) for t in range(m.total_ntasks)]
