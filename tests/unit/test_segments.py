"""Cutting DAGs at the stages every path passes through."""

import networkx as nx

from esg_plugin.planner.segments import Element, Region, critical_path, series_elements


def region(edges, nodes=None):
    g = nx.DiGraph(edges)
    g.add_nodes_from(nodes or [])
    return Region.induced(g, tuple(nx.lexicographical_topological_sort(g)))


def test_fan_out_fan_in():
    r = region([("decode", "detect"), ("detect", "car"), ("detect", "person"), ("detect", "plate"),
                ("car", "agg"), ("person", "agg"), ("plate", "agg")])
    assert series_elements(r) == [
        Element("chain", ("decode", "detect")),
        Element("gap", ("car", "person", "plate")),
        Element("chain", ("agg",)),
    ]
    gap = Region.induced(nx.DiGraph(r.preds and [(p, s) for s in r.stages for p in r.preds[s]]),
                         ("car", "person", "plate"))
    assert sorted(gap.components()) == [("car",), ("person",), ("plate",)]


def test_multiple_entries_and_exits():
    r = region([("a", "c"), ("b", "c"), ("c", "d"), ("c", "e")])
    assert series_elements(r) == [Element("gap", ("a", "b")), Element("chain", ("c",)), Element("gap", ("d", "e"))]


def test_nested_branches_are_one_gap_with_a_series_inside():
    r = region([("s", "a"), ("a", "b1"), ("a", "b2"), ("b1", "j"), ("b2", "j"), ("s", "x"), ("j", "t"), ("x", "t")])
    elements = series_elements(r)
    assert elements[0] == Element("chain", ("s",)) and elements[-1] == Element("chain", ("t",))
    inner = Region.induced(nx.DiGraph([(p, s) for s in r.stages for p in r.preds[s]]), elements[1].stages)
    components = inner.components()
    assert sorted(map(sorted, components)) == [["a", "b1", "b2", "j"], ["x"]]
    branch = Region.induced(nx.DiGraph([(p, s) for s in r.stages for p in r.preds[s]]), ("a", "b1", "b2", "j"))
    assert [e.kind for e in series_elements(branch)] == ["chain", "gap", "chain"]


def test_crossing_paths_have_no_cut_stage():
    # a->c, a->d, b->d: one component, no stage on every path
    r = region([("a", "c"), ("a", "d"), ("b", "d")])
    assert series_elements(r) == [Element("gap", r.stages)]
    assert len(r.components()) == 1
    assert not r.is_path()


def test_path_detection_and_critical_path():
    assert region([("a", "b"), ("b", "c")]).is_path()
    assert region([], nodes=["solo"]).is_path()
    assert not region([("a", "b"), ("a", "c")]).is_path()
    r = region([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    assert critical_path(r, {"a": 1, "b": 5, "c": 9, "d": 1}, hop_ms=1.0) == ["a", "c", "d"]
