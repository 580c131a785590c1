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

Regions are plain adjacency tuples in topological order; networkx computes
the dominator trees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, Mapping

import networkx as nx

_SOURCE = ("esg", "source")
_SINK = ("esg", "sink")


@dataclass(frozen=True)
class Element:
    """One element of a series: a chain of cut stages or a gap between cuts."""

    kind: Literal["chain", "gap"]
    stages: tuple[str, ...]
    """A chain's stages in order; a gap's stages in topological order."""


@dataclass(frozen=True)
class Region:
    """The subgraph induced by some stages of a workflow."""

    stages: tuple[str, ...]
    """Topological order."""
    preds: Mapping[str, tuple[str, ...]]
    """Predecessors of each stage inside the region."""
    succs: Mapping[str, tuple[str, ...]]
    """Successors of each stage inside the region."""

    @staticmethod
    def induced(graph: nx.DiGraph, stages: tuple[str, ...]) -> "Region":
        """``stages`` must be in topological order (any order-preserving
        subset of a topological order is)."""
        members = set(stages)
        preds = {s: tuple(p for p in graph.predecessors(s) if p in members) for s in stages}
        succs = {s: tuple(q for q in graph.successors(s) if q in members) for s in stages}
        return Region(stages, preds, succs)

    def entries(self) -> list[str]:
        return [s for s in self.stages if not self.preds[s]]

    def exits(self) -> list[str]:
        return [s for s in self.stages if not self.succs[s]]

    def is_path(self) -> bool:
        """One chain of stages (a single stage counts)."""
        return all(
            len(self.preds[s]) == (0 if i == 0 else 1) and (i == 0 or self.preds[s][0] == self.stages[i - 1])
            for i, s in enumerate(self.stages)
        )

    def components(self) -> list[tuple[str, ...]]:
        """Weakly connected components, each in topological order."""
        label: dict[str, int] = {}
        count = 0
        for root in self.stages:
            if root in label:
                continue
            label[root] = count
            stack = [root]
            while stack:
                s = stack.pop()
                for t in self.preds[s] + self.succs[s]:
                    if t not in label:
                        label[t] = count
                        stack.append(t)
            count += 1
        groups: list[list[str]] = [[] for _ in range(count)]
        for s in self.stages:
            groups[label[s]].append(s)
        return [tuple(g) for g in groups]


def _nearest_cut(idom: dict, node, cuts: set, terminal):
    """Walk the (post-)dominator tree up from ``node`` to the first cut stage."""
    current = idom[node]
    while current != terminal and current not in cuts:
        current = idom[current]
    return current


def series_elements(region: Region) -> list[Element]:
    """The series decomposition of a region at its cut stages.

    Returns a single gap holding every stage when there is no cut stage.
    Depends on the region's shape only, so each shape is decomposed once
    (a control loop re-plans the same workflows every few seconds).
    """
    stages = region.stages
    return list(_series_elements(stages, tuple(region.preds[s] for s in stages),
                                 tuple(region.succs[s] for s in stages)))


@functools.lru_cache(maxsize=1024)
def _series_elements(stages: tuple[str, ...], preds: tuple[tuple[str, ...], ...],
                     succs: tuple[tuple[str, ...], ...]) -> tuple[Element, ...]:
    region = Region(stages, dict(zip(stages, preds)), dict(zip(stages, succs)))
    g = nx.DiGraph()
    g.add_nodes_from(region.stages)
    g.add_edges_from((p, s) for s in region.stages for p in region.preds[s])
    g.add_edges_from((_SOURCE, s) for s in region.entries())
    g.add_edges_from((s, _SINK) for s in region.exits())
    dominators = nx.immediate_dominators(g, _SOURCE)
    post_dominators = nx.immediate_dominators(g.reverse(copy=False), _SINK)
    cuts: list = []
    current = dominators[_SINK]
    while current != _SOURCE:
        cuts.append(current)
        current = dominators[current]
    cuts.reverse()
    if not cuts:
        return (Element("gap", region.stages),)
    position = {c: i for i, c in enumerate(cuts)}
    cut_set = set(cuts)
    gaps: list[list[str]] = [[] for _ in range(len(cuts) + 1)]
    for node in region.stages:
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
    return tuple(elements)


def critical_path(region: Region, weight_ms: Mapping[str, float], hop_ms: float) -> list[str]:
    """The entry-to-exit path with the largest summed ``weight_ms`` plus hops."""
    length: dict[str, float] = {}
    parent: dict[str, str | None] = {}
    for s in region.stages:
        best = max(region.preds[s], key=length.__getitem__, default=None)
        parent[s] = best
        length[s] = weight_ms[s] + (0.0 if best is None else length[best] + hop_ms)
    node: str | None = max(region.exits(), key=length.__getitem__)
    path = []
    while node is not None:
        path.append(node)
        node = parent[node]
    path.reverse()
    return path
