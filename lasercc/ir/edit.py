"""``GraphEditor``: use-def rewriting of an immutable graph, finished into a new, clean ``Graph``.

Why: every pass used to rebuild its graph by hand -- a substitution map resolved while walking, a
list of kept nodes, then "drop what no output reads", "drop constants no node names", and (in some)
nothing re-establishing topological order when a rewrite moved a definition. Those steps were
repeated, subtly differently, in each pass. The editor holds the draft (nodes in graph order, a
use index, the constant table, the outputs), offers the few operations a rewrite is made of --
replace a node, replace all uses of a value, erase, add, add a constant -- and ``finish()`` does the
clean-up once: restore topological order (stable: a valid order is kept as it is), drop dead nodes,
drop unreferenced constants. The input graph is never touched (docs/contract.md section 5: no in-place mutation
behind a caller's back); unchanged nodes and constant arrays are shared with the result.

Example (remove identity reshapes)::

    ed = GraphEditor(graph)
    for n in graph.nodes:
        n = ed.node(n.name)                    # the current version, operands already rewired
        if isinstance(n, Reshape) and same_shape(n) and not ed.is_output(n.name):
            ed.replace_all_uses(n.name, n.inputs[0])
            ed.erase(n.name)
    new_graph = ed.finish()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lasercc.ir.analysis import live_names, topological_order
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Node


def fresh_name(taken: set[str], stem: str) -> str:
    """A value/constant name not in ``taken`` (and reserve it): ``stem``, ``stem.2``, ``stem.3``..."""
    name, i = stem, 1
    while name in taken:
        i += 1
        name = f"{stem}.{i}"
    taken.add(name)
    return name


class GraphEditor:
    """A mutable draft of a graph. Operations keep a node's slot in the order; ``finish`` returns the
    new graph (or the original object when nothing was edited)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._nodes: dict[str, Node] = {n.name: n for n in graph.nodes}
        self._users: dict[str, dict[str, None]] = {}  # value -> names of the nodes reading it (ordered set)
        for n in graph.nodes:
            self._add_uses(n)
        self._outputs: list[str] = list(graph.outputs)
        self._consts: dict[str, Any] = dict(graph.constants.items())
        self._taken: set[str] = set(self._nodes) | set(self._consts)
        self.edits = 0

    # ---- queries ---------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The current node defining ``name`` (KeyError if none)."""
        return self._nodes[name]

    def get(self, name: str) -> Node | None:
        return self._nodes.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The draft's nodes, in their current order (not yet re-sorted or pruned)."""
        return tuple(self._nodes.values())

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self._outputs)

    @property
    def constants(self) -> Mapping[str, Any]:
        return self._consts

    def users(self, value: str) -> list[Node]:
        """The nodes currently reading ``value``, once each (in the order they started reading it)."""
        return [self._nodes[u] for u in self._users.get(value, ())]

    def use_count(self, value: str) -> int:
        """Operand slots currently naming ``value`` (a node reading it twice counts twice)."""
        return sum(self._nodes[u].inputs.count(value) for u in self._users.get(value, ()))

    def is_output(self, value: str) -> bool:
        return value in self._outputs

    # ---- edits -----------------------------------------------------------------------------
    def replace(self, node: Node) -> Node:
        """Put ``node`` in the slot of the existing node of the same name (its uses stay)."""
        old = self._nodes[node.name]
        if node is not old:
            self._drop_uses(old)
            self._nodes[node.name] = node
            self._add_uses(node)
            self.edits += 1
        return node

    def set_inputs(self, name: str, inputs: Iterable[str]) -> Node:
        """Rewire the operands of node ``name``."""
        n = self._nodes[name]
        inputs = tuple(inputs)
        return n if inputs == n.inputs else self.replace(n.replace(inputs=inputs))

    def replace_all_uses(self, old: str, new: str, outputs: bool = False) -> int:
        """Every operand naming ``old`` names ``new`` instead; with ``outputs=True`` graph outputs too
        (they are the user's interface, so by default an output keeps its name). Returns the number of
        nodes rewired."""
        if old == new:
            return 0
        readers = list(self._users.get(old, ()))
        for u in readers:
            n = self._nodes[u]
            self.replace(n.replace(inputs=tuple(new if i == old else i for i in n.inputs)))
        if outputs and old in self._outputs:
            self._outputs = [new if o == old else o for o in self._outputs]
            self.edits += 1
        return len(readers)

    def erase(self, name: str) -> Node:
        """Remove node ``name``; it must have no users left and must not be a graph output."""
        n = self._nodes[name]
        if self._users.get(name):
            raise ValueError(f"cannot erase %{name}: still read by "
                             + ", ".join(f"%{u}" for u in self._users[name]))
        if name in self._outputs:
            raise ValueError(f"cannot erase %{name}: it is a graph output")
        self._drop_uses(n)
        del self._nodes[name]
        self._users.pop(name, None)
        self.edits += 1
        return n

    def add(self, node: Node, before: str | None = None) -> Node:
        """Add a new node, at the end or just before node ``before`` (``finish`` re-sorts anyway)."""
        if node.name in self._nodes:
            raise ValueError(f"value %{node.name} is already defined")
        if before is None:
            self._nodes[node.name] = node
        else:
            items = list(self._nodes.items())
            at = next(i for i, (k, _) in enumerate(items) if k == before)
            items.insert(at, (node.name, node))
            self._nodes = dict(items)
        self._taken.add(node.name)
        self._add_uses(node)
        self.edits += 1
        return node

    def fresh_name(self, stem: str) -> str:
        """A value or constant name not used in the draft (reserved)."""
        return fresh_name(self._taken, stem)

    def add_constant(self, stem: str, array: Any, exact: bool = False) -> str:
        """Add a constant under a fresh name made from ``stem`` (exactly ``stem`` with ``exact=True``,
        which must be free); returns its name."""
        if exact:
            if stem in self._taken:
                raise ValueError(f"name @{stem} is taken")
            self._taken.add(stem)
            name = stem
        else:
            name = self.fresh_name(stem)
        self._consts[name] = array
        self.edits += 1
        return name

    def set_constant(self, name: str, array: Any) -> None:
        """Replace the array of constant ``name`` (or add it under that name)."""
        self._taken.add(name)
        self._consts[name] = array
        self.edits += 1

    # ---- result ----------------------------------------------------------------------------
    def finish(self, prune_nodes: bool = True, prune_constants: bool = True) -> Graph:
        """The edited graph: nodes in topological order (the draft's order where it is valid), without
        nodes no output depends on (graph inputs always stay) and constants no node names. Returns
        the original graph object when no edit was made and nothing needs pruning."""
        nodes = list(self._nodes.values())
        if not _ordered(nodes):
            nodes = topological_order(nodes)
        if prune_nodes:
            live = live_names(nodes, self._outputs)
            nodes = [n for n in nodes if n.name in live]
        consts: Mapping[str, Any] = self._consts
        if prune_constants:
            used = {c for n in nodes for c in n.const_refs()}
            consts = {k: v for k, v in consts.items() if k in used}
        if not self.edits and len(nodes) == len(self.graph.nodes) and len(consts) == len(self.graph.constants):
            return self.graph
        if consts.keys() == self.graph.constants.keys() and all(consts[k] is self.graph.constants[k] for k in consts):
            consts = self.graph.constants  # share the table (and the backends' caches keyed by it)
        return self.graph.replace(nodes=tuple(nodes), outputs=tuple(self._outputs), constants=consts)

    # ---- internals -------------------------------------------------------------------------
    def _add_uses(self, n: Node) -> None:
        for i in n.inputs:
            self._users.setdefault(i, {})[n.name] = None

    def _drop_uses(self, n: Node) -> None:
        for i in n.inputs:
            us = self._users.get(i)
            if us is not None:
                us.pop(n.name, None)


def _ordered(nodes: list[Node]) -> bool:
    """Is every operand defined by an earlier node? (Operands no node defines are left to the verifier.)"""
    names = {n.name for n in nodes}
    seen: set[str] = set()
    for n in nodes:
        if any(i in names and i not in seen for i in n.inputs):
            return False
        seen.add(n.name)
    return True
