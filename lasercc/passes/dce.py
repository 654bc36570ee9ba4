"""Dead-node elimination: drop nodes no output depends on, then constants no node references."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lasercc.ir.edit import GraphEditor
from lasercc.ir.graph import Graph
from lasercc.passes.base import Pass, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class DeadNodeElimination(Pass):
    """Remove nodes that no graph output depends on and constants that no node references."""

    name: ClassVar[str] = "dce"

    def run(self, graph: Graph) -> PassResult:
        g = GraphEditor(graph).finish()  # finishing an unedited draft is exactly dead-node elimination
        kept = {n.name for n in g.nodes}
        dead = [n for n in graph.nodes if n.name not in kept]
        n_consts = len(graph.constants) - len(g.constants)
        removed: dict[str, int] = {}
        for n in dead:
            removed[n.op] = removed.get(n.op, 0) + 1
        return PassResult(g, bool(dead or n_consts),
                          {"nodes_removed": len(dead), "by_kind": removed, "constants_removed": n_consts})
