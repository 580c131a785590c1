"""Cutting a DAG into segments at the stages every path passes through.

Add a virtual source before the entries and a virtual sink after the exits.
A stage that dominates the sink (every source-to-sink path passes through
it) is a *cut stage*; the cut stages, in order, split the DAG into a series
of elements:

- runs of consecutive cut stages, which are chains (solved exactly by A*);
- the *gaps* between two cut stages, holding the stages that the earlier cut
  dominates and the later one post-dominates. A gap is solved recursively:
  its weakly connected components are parallel branches that each get the
  gap's whole budget.

A region with no cut stage and a single component (a non-series-parallel
core, e.g. two paths crossing) is *irreducible*; the ESG policy handles it
by its critical path (see :mod:`esg_plugin.planner.esg`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import networkx as nx

_SOURCE = ("esg", "source")
_SINK = ("esg", "sink")


@dataclass(frozen=True)
class Element:
    """One element of a series: a chain of cut stages or a gap between cuts."""

    kind: Literal["chain", "gap"]
    stages: tuple[str, ...]
    """A chain's stages in order; a gap's stages in topological order."""


def _with_terminals(graph: nx.DiGraph) -> nx.DiGraph:
    g = nx.DiGraph(graph.edges)
    g.add_nodes_from(graph.nodes)
    entries = [n for n in graph if graph.in_degree(n) == 0]
    exits = [n for n in graph if graph.out_degree(n) == 0]
    g.add_edges_from((_SOURCE, n) for n in entries)
    g.add_edges_from((n, _SINK) for n in exits)
    return g


def _nearest_cut(idom: dict, node, cuts: set, terminal):
    """Walk the (post-)dominator tree up from ``node`` to the first cut stage."""
    current = idom[node]
    while current != terminal and current not in cuts:
        current = idom[current]
    return current


def is_path(graph: nx.DiGraph) -> bool:
    """One chain of stages (a single stage counts)."""
    return (
        nx.is_weakly_connected(graph)
        and all(graph.in_degree(n) <= 1 and graph.out_degree(n) <= 1 for n in graph)
        and graph.number_of_edges() == graph.number_of_nodes() - 1
    )





def series_elements(graph: nx.DiGraph) -> list[Element]:
    """The series decomposition of a (sub-)DAG at its cut stages.

    Returns a single gap holding every stage when there is no cut stage.
    """
    g = _with_terminals(graph)
    dominators = nx.immediate_dominators(g, _SOURCE)
    post_dominators = nx.immediate_dominators(g.reverse(copy=False), _SINK)
    cuts: list = []
    current = dominators[_SINK]
    while current != _SOURCE:
        cuts.append(current)
        current = dominators[current]
    cuts.reverse()
    topo = list(nx.topological_sort(graph))
    if not cuts:
        return [Element("gap", tuple(topo))]
    position = {c: i for i, c in enumerate(cuts)}
    cut_set = set(cuts)
    gaps: list[list[str]] = [[] for _ in range(len(cuts) + 1)]
    for node in topo:
        if node in cut_set:
            continue
        before = _nearest_cut(dominators, node, cut_set, _SOURCE)
        after = _nearest_cut(post_dominators, node, cut_set, _SINK)
        gap = 0 if before == _SOURCE else position[before] + 1
        expected_after = len(cuts) if after == _SINK else position[after]
        if gap != expected_after:  # pragma: no cover - a broken dominator computation
            raise AssertionError(f"stage {node!r} lies between non-consecutive cut stages")
        gaps[gap].append(node)
    elements: list[Element] = []
    for i in range(len(cuts) + 1):
        if gaps[i]:
            elements.append(Element("gap", tuple(gaps[i])))
        if i < len(cuts):
            if elements and elements[-1].kind == "chain":
                elements[-1] = Element("chain", elements[-1].stages + (cuts[i],))
            else:
                elements.append(Element("chain", (cuts[i],)))
    return elements


def critical_path(graph: nx.DiGraph, weight_ms: dict[str, float], hop_ms: float) -> list[str]:
    """The entry-to-exit path with the largest summed ``weight_ms`` plus hops."""
    best: dict[str, tuple[float, list[str]]] = {}
    for node in nx.topological_sort(graph):
        before = max(
            (best[p] for p in graph.predecessors(node)), key=lambda t: t[0], default=None
        )
        if before is None:
            best[node] = (weight_ms[node], [node])
        else:
            best[node] = (before[0] + hop_ms + weight_ms[node], before[1] + [node])
    exits = [n for n in graph if graph.out_degree(n) == 0]
    return max((best[n] for n in exits), key=lambda t: t[0])[1]
