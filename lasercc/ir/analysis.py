"""Read-only analyses of an IR graph: use-def (``users``), liveness, order, cycles, last uses and the
latency model.

Why a module of their own, in ``ir``: passes, backends, the frontend and the artifact writer all need
"who reads this value", "what do the outputs depend on" and "how many timesteps is the critical
path"; each used to count them its own way (a ``Counter`` over inputs in one pass, ``consumers()``
in another, liveness in ``passes.rewrite``, latency in ``backends.stats``), and a backend module was
the only home of the latency that passes and the artifact manifest report. Here they are defined once,
below every user (layer ``ir``), so no pass imports a backend to learn a graph fact.

Every function reads a graph through ``nodes`` and ``outputs`` only (any object with those works,
e.g. the frontend's node list before it becomes a :class:`~lasercc.ir.graph.Graph`), and never
mutates. :meth:`Graph.users` caches :func:`users` on the (immutable) graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

import networkx as nx

from lasercc.ir.nodes import Input, Node


class GraphLike(Protocol):
    """What the analyses read of a graph (a :class:`~lasercc.ir.graph.Graph` or a stand-in)."""

    @property
    def nodes(self) -> Sequence[Node]: ...

    @property
    def outputs(self) -> Sequence[str]: ...


Users = Mapping[str, tuple[Node, ...]]


# ------------------------------------------------------------------------------------- use-def
def users(graph: GraphLike) -> Users:
    """Value name -> the nodes reading it, in graph order, one entry per use (a node that reads a
    value twice appears twice). Every node's value has an entry (empty when nothing reads it); a
    value read but defined by no node (a dangling reference in an unverified graph) has one too."""
    out: dict[str, list[Node]] = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return MappingProxyType({k: tuple(v) for k, v in out.items()})


def use_count(graph: GraphLike, value: str) -> int:
    """How many uses ``value`` has (operand slots that name it); graph outputs are not counted."""
    return sum(i == value for n in graph.nodes for i in n.inputs)


def const_users(graph: GraphLike) -> Mapping[str, tuple[Node, ...]]:
    """Constant name -> the nodes naming it (one entry per reference), for constants some node names."""
    out: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for c in n.const_refs():
            out.setdefault(c, []).append(n)
    return MappingProxyType({k: tuple(v) for k, v in out.items()})


# ------------------------------------------------------------------------------------ liveness
def live_names(nodes: Iterable[Node], outputs: Iterable[str]) -> set[str]:
    """Names of the nodes ``outputs`` depend on, plus every graph input (inputs are the interface)."""
    nodes = list(nodes)
    idx = {n.name: n for n in nodes}
    live = {n.name for n in nodes if isinstance(n, Input)}
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if v in live:
            continue
        live.add(v)
        stack.extend(idx[v].inputs)
    return live


def live_nodes(graph: GraphLike) -> set[str]:
    """:func:`live_names` of a graph."""
    return live_names(graph.nodes, graph.outputs)


def values_freed_after(graph: GraphLike) -> list[tuple[str, ...]]:
    """Per node (in graph order), the values it is the last reader of: a walk frees them after the node,
    so peak memory follows the graph's live values, not all of them. Graph outputs are never freed."""
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last_use[v] = i
    keep = set(graph.outputs)
    return [tuple(v for v in dict.fromkeys(n.inputs) if last_use[v] == i and v not in keep)
            for i, n in enumerate(graph.nodes)]


# --------------------------------------------------------------------------------------- order
def to_networkx(nodes: Iterable[Node]) -> nx.DiGraph:
    """The dataflow as a networkx digraph: one vertex per value, an edge from each input to its reader."""
    g = nx.DiGraph()
    for n in nodes:
        g.add_node(n.name)
        for i in n.inputs:
            g.add_edge(i, n.name)
    return g


def find_cycle(nodes: Iterable[Node]) -> list[str]:
    """The values on one dataflow cycle (empty when there is none)."""
    try:
        return [u for u, _ in nx.find_cycle(to_networkx(nodes))]
    except nx.NetworkXNoCycle:
        return []


def topological_order(nodes: Sequence[Node]) -> list[Node]:
    """``nodes`` sorted so every value is defined before it is read; stable: where the given order is
    already valid it is kept, and ties keep the given order. Raises ``ValueError`` naming a cycle."""
    g = to_networkx(nodes)
    order = {n.name: i for i, n in enumerate(nodes)}
    try:
        names = list(nx.lexicographical_topological_sort(g, key=lambda v: order.get(v, -1)))
    except nx.NetworkXUnfeasible:
        raise ValueError(f"graph has a cycle: {find_cycle(nodes)}") from None
    idx = {n.name: n for n in nodes}
    return [idx[n] for n in names if n in idx]


# ------------------------------------------------------------------------------------- latency
def latency_steps(graph: GraphLike) -> dict[str, int]:
    """T(v) for every value: the step by which its last bit has been emitted (docs/contract.md section 4).

    An encoder or a constant source emits N bits from step 0 (T = N); a spiking node integrates until
    its last input bit, fires one pipeline step later and emits N_out bits: T = max T(in) + 1 + N_out;
    the winner-take-all max is bit-pipelined (T = T(in) + 1); data movement is free (T = T(in)). A
    gather by token ids is a source (T = N_out); a gather indexed by a code computed in the network
    decodes that code's train first, so it is a spiking node (T = T(index) + 1 + N_out). A fused
    SomaASNC is one spiking node: against Soma -> ASNC it saves the N_mid-bit train and a step.
    """
    t: dict[str, int] = {}
    types = {n.name: n.type for n in graph.nodes}
    for n in graph.nodes:  # each kind's latency rule (lasercc.ir.kinds)
        t[n.name] = n.latency([t[i] for i in n.inputs], [types[i] for i in n.inputs])
    return t


def critical_path(graph: GraphLike) -> int:
    """Latency of the graph in timesteps: the latest T over its outputs."""
    t = latency_steps(graph)
    return max(t[o] for o in graph.outputs)
