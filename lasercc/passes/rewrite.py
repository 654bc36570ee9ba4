"""Small graph-rewrite helpers shared by the built-in passes (no pass lives here).

Rewrites never mutate: they build a new :class:`Graph` that shares the untouched node records and
constant arrays (docs/contract.md section 5: nodes are frozen, never changed in place).
"""

from __future__ import annotations

from collections.abc import Mapping

from lasercc.ir.analysis import live_names, live_nodes
from lasercc.ir.edit import fresh_name
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Node

# ``live_names``/``live_nodes`` moved to :mod:`lasercc.ir.analysis` and ``fresh_name`` to
# :mod:`lasercc.ir.edit`; re-exported here for callers that still import them from this module (the ONNX
# frontend's ``lower.py``). New rewrites should use :class:`lasercc.ir.edit.GraphEditor`.
__all__ = ["fresh_name", "live_names", "live_nodes", "prune_constants", "resolve", "substitute"]


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


def prune_constants(graph: Graph) -> tuple[Graph, int]:
    """Drop constants no node references; returns the new graph and how many were dropped."""
    used = {c for n in graph.nodes for c in n.const_refs()}
    dead = [k for k in graph.constants if k not in used]
    if not dead:
        return graph, 0
    return graph.replace(constants={k: v for k, v in graph.constants.items() if k in used}), len(dead)
