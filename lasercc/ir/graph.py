"""``Graph``: an SSA dataflow graph of nodes and its constant table.

A graph is immutable: rewrites build a new ``Graph`` (``graph.replace(...)``, or a
:class:`lasercc.ir.edit.GraphEditor`) that shares the unchanged node records and constant arrays.
Nodes are kept in a topological order (every value is defined before it is used); the verifier
(:mod:`lasercc.ir.verify`, re-exported here) checks that and everything else a backend relies on.
Because a graph never changes, derived facts (the name index, :meth:`Graph.users`) are computed once
and cached on it; a rewrite builds a new graph, which starts with no cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from lasercc.errors import VerifyError
from lasercc.ir import analysis
from lasercc.ir.analysis import topological_order
from lasercc.ir.nodes import NAME_RE, Input, Node
from lasercc.ir.printer import print_graph
from lasercc.ir.types import Shape, ValueType, dtype_name
from lasercc.ir.verify import verify

__all__ = ["ConstSpec", "ConstantTable", "Constant", "Graph", "toposort", "verify"]


@dataclass(frozen=True)
class ConstSpec:
    """A constant known only by dtype and shape (lazy: e.g. a LLaMA-7B-shaped graph for partitioning)."""

    dtype: np.dtype
    shape: Shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)


Constant = np.ndarray | ConstSpec


class ConstantTable(Mapping[str, Constant]):
    """Read-only name -> array (or ConstSpec) map. Arrays are made read-only when added."""

    def __init__(self, items: Mapping[str, Constant] | Iterable[tuple[str, Constant]] = ()):
        d = dict(items)
        for k, v in d.items():
            if not NAME_RE.match(k):
                raise VerifyError(f"bad constant name {k!r}")
            if isinstance(v, np.ndarray):
                dtype_name(v.dtype)  # integer / bool only
                if v.flags.writeable:
                    v = v.view()
                    v.flags.writeable = False
                d[k] = v
            elif not isinstance(v, ConstSpec):
                raise VerifyError(f"constant {k!r} must be a numpy array, got {type(v).__name__}")
        self._d = d

    def __getitem__(self, k: str) -> Constant:
        return self._d[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def with_items(self, **items: Constant) -> ConstantTable:
        return ConstantTable({**self._d, **items})

    def specs(self) -> dict[str, tuple[str, Shape]]:
        return {k: (dtype_name(v.dtype), tuple(v.shape)) for k, v in self._d.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self._d.items() if isinstance(v, np.ndarray)}


@dataclass(frozen=True, eq=False)
class Graph:
    """The spiking IR graph. Equality is structural: nodes, outputs and constant specs (not data)."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    constants: ConstantTable = field(default_factory=ConstantTable)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.constants, ConstantTable):
            object.__setattr__(self, "constants", ConstantTable(self.constants))

    # ---- structure ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Graph) and self.name == other.name and self.nodes == other.nodes
                and self.outputs == other.outputs and self.constants.specs() == other.constants.specs())

    def __hash__(self) -> int:
        return hash((self.name, self.nodes, self.outputs))

    @property
    def inputs(self) -> tuple[Input, ...]:
        return tuple(n for n in self.nodes if isinstance(n, Input))

    def node(self, name: str) -> Node:
        return self._index()[name]

    def type_of(self, name: str) -> ValueType:
        return self.node(name).type

    def _index(self) -> dict[str, Node]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_idx", idx)
        return idx

    def users(self) -> analysis.Users:
        """Value -> the nodes reading it, one entry per use (:func:`lasercc.ir.analysis.users`);
        computed once per graph and shared, read-only."""
        u = self.__dict__.get("_users")
        if u is None:
            u = analysis.users(self)
            object.__setattr__(self, "_users", u)
        return u

    def __getstate__(self) -> dict[str, object]:
        """Pickle the graph, not its caches (a read-only mapping of uses does not pickle)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_idx", "_users")}

    def consumers(self) -> dict[str, list[Node]]:
        """:meth:`users` as a fresh ``dict`` of lists (the older spelling; the caller may modify it)."""
        return {k: list(v) for k, v in self.users().items()}

    def replace(self, **changes: object) -> Graph:
        data: dict[str, Any] = {"name": self.name, "nodes": self.nodes, "outputs": self.outputs,
                                "constants": self.constants}
        data.update(changes)
        return Graph(**data)  # type: ignore[arg-type]

    def to_networkx(self) -> nx.DiGraph:
        return analysis.to_networkx(self.nodes)

    def text(self) -> str:
        return print_graph(self)

    def __str__(self) -> str:
        return self.text()

    def verify(self) -> Graph:
        verify(self)
        return self


def toposort(graph: Graph) -> Graph:
    """Reorder nodes topologically (stable: keeps the given order where it is already valid)."""
    try:
        return graph.replace(nodes=tuple(topological_order(graph.nodes)))
    except ValueError as e:
        raise VerifyError(str(e)) from None
