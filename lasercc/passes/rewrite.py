"""Small graph-rewrite helpers shared by the built-in passes (no pass lives here).

Rewrites never mutate: they build a new :class:`Graph` that shares the untouched node records and
constant arrays, as ARCHITECTURE.md asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Input, Node


def resolve(mapping: Mapping[str, str], name: str) -> str:
    """Follow a chain of value substitutions (a -> b -> c) to its end."""
    seen = set()
    while name in mapping:
        if name in seen:  # pragma: no cover - a pass bug
            raise RuntimeError(f"substitution cycle through %{name}")
        seen.add(name)
        name = mapping[name]
    return name


def substitute(nodes: list[Node] | tuple[Node, ...], mapping: Mapping[str, str]) -> list[Node]:
    """Nodes with every input renamed through ``mapping`` (unchanged nodes are shared, not copied)."""
    if not mapping:
        return list(nodes)
    out = []
    for n in nodes:
        new = tuple(resolve(mapping, i) for i in n.inputs)
        out.append(n if new == n.inputs else n.replace(inputs=new))
    return out


def live_nodes(graph: Graph) -> set[str]:
    """Names of the nodes the outputs depend on, plus every graph input (inputs are the interface)."""
    return live_names(graph.nodes, graph.outputs)


def live_names(nodes: Iterable[Node], outputs: Iterable[str]) -> set[str]:
    """:func:`live_nodes` of a node list not yet made a Graph (the frontend's, before verification)."""
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


def prune_constants(graph: Graph) -> tuple[Graph, int]:
    """Drop constants no node references; returns the new graph and how many were dropped."""
    used = {c for n in graph.nodes for c in n.const_refs()}
    dead = [k for k in graph.constants if k not in used]
    if not dead:
        return graph, 0
    return graph.replace(constants={k: v for k, v in graph.constants.items() if k in used}), len(dead)


def fresh_name(taken: set[str], stem: str) -> str:
    """A value/constant name not in ``taken`` (and reserve it)."""
    name, i = stem, 1
    while name in taken:
        i += 1
        name = f"{stem}.{i}"
    taken.add(name)
    return name
