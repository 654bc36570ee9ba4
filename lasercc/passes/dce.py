"""Dead-node elimination: drop nodes no output depends on, then constants no node references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lasercc.ir.analysis import live_nodes
from lasercc.ir.graph import Graph
from lasercc.passes.base import Pass, PassResult, register_pass
from lasercc.passes.rewrite import prune_constants


@register_pass
@dataclass(frozen=True)
class DeadNodeElimination(Pass):
    """Remove nodes that no graph output depends on and constants that no node references."""

    name: ClassVar[str] = "dce"

    def run(self, graph: Graph) -> PassResult:
        live = live_nodes(graph)
        dead = [n for n in graph.nodes if n.name not in live]
        g = graph.replace(nodes=tuple(n for n in graph.nodes if n.name in live)) if dead else graph
        g, n_consts = prune_constants(g)
        removed: dict[str, int] = {}
        for n in dead:
            removed[n.op] = removed.get(n.op, 0) + 1
        return PassResult(g, bool(dead or n_consts),
                          {"nodes_removed": len(dead), "by_kind": removed, "constants_removed": n_consts})
