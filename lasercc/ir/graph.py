"""``Graph``: an SSA dataflow graph of nodes, its constant table, and the verifier.

A graph is immutable: rewrites build a new ``Graph`` (``graph.replace(...)``) that shares the
unchanged node records and constant arrays. Nodes are kept in a topological order (every value is
defined before it is used); the verifier checks that and everything else a backend relies on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from lasercc.errors import VerifyError
from lasercc.ir.nodes import NAME_RE, ConstantView, Input, Node
from lasercc.ir.types import CodeType, Shape, TensorType, ValueType, dtype_name


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
        self._derived: dict[tuple[str, str], object] = {}

    def derived(self, name: str, key: str, make):  # noqa: ANN001 - any cached value
        """A value computed from constant ``name`` (an int64 or float copy, a column sum...), cached:
        constants never change, so backends need not recompute per run."""
        k = (name, key)
        if k not in self._derived:
            self._derived[k] = make(self._d[name])
        return self._derived[k]

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

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def replace(self, **changes: object) -> Graph:
        data = {"name": self.name, "nodes": self.nodes, "outputs": self.outputs, "constants": self.constants}
        data.update(changes)
        return Graph(**data)  # type: ignore[arg-type]

    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.name)
            for i in n.inputs:
                g.add_edge(i, n.name)
        return g

    def text(self) -> str:
        from lasercc.ir.text import print_graph

        return print_graph(self)

    def __str__(self) -> str:
        return self.text()

    def verify(self) -> Graph:
        verify(self)
        return self


def verify(graph: Graph) -> None:
    """Reject malformed graphs with a message naming the node and printing it in IR text.

    Checks: unique, well-formed names; every input defined (no dangling references) and defined
    before use (no cycles); outputs exist and are codes; every constant a node names exists with a
    valid dtype; and each node's own typing rules (bits, shapes, scales, accumulator bounds).
    """
    from lasercc.ir.text import format_node

    if not NAME_RE.match(graph.name):
        raise VerifyError(f"bad graph name {graph.name!r}")
    defined: dict[str, ValueType] = {}
    names = [n.name for n in graph.nodes]
    dupes = {x for x in names if names.count(x) > 1} if len(set(names)) != len(names) else set()
    if dupes:
        n = next(n for n in graph.nodes if n.name in dupes)
        raise VerifyError(f"value %{n.name} is defined more than once", format_node(n), n.name)
    all_names = set(names)
    if not graph.inputs:
        raise VerifyError("graph has no inputs")
    view = ConstantView(graph.constants)
    for n in graph.nodes:
        want = type(n).n_inputs
        if want is not None and len(n.inputs) != want:
            raise VerifyError(f"{n.op} takes {want} input(s), got {len(n.inputs)}", format_node(n), n.name)
        if want is None and not n.inputs:
            raise VerifyError(f"{n.op} needs at least one input", format_node(n), n.name)
        for i in n.inputs:
            if i not in defined:
                if i not in all_names:
                    raise VerifyError(f"%{n.name} reads %{i}, which no node defines (dangling value)",
                                      format_node(n), n.name)
                cyc = _find_cycle(graph)
                msg = (f"cycle through {' -> '.join('%' + c for c in cyc)}" if cyc else
                       f"%{n.name} reads %{i} before it is defined (nodes out of order)")
                raise VerifyError(msg, format_node(n), n.name)
        for c in n.const_refs():
            if c not in graph.constants:
                raise VerifyError(f"%{n.name} names unknown constant @{c}", format_node(n), n.name)
        if isinstance(n, Input) and isinstance(n.type, CodeType) is False and not isinstance(n.type, TensorType):
            raise VerifyError("input type must be f32, i64 or a code", format_node(n), n.name)
        try:
            n.check([defined[i] for i in n.inputs], view)
        except (ValueError, TypeError, KeyError) as e:
            raise VerifyError(f"%{n.name} ({n.op}): {e}", format_node(n), n.name) from None
        defined[n.name] = n.type
    if not graph.outputs:
        raise VerifyError("graph has no outputs")
    for o in graph.outputs:
        if o not in defined:
            raise VerifyError(f"output %{o} is not defined by any node")
        if not isinstance(defined[o], CodeType):
            raise VerifyError(f"output %{o} must be a code (outputs are spike trains)",
                              format_node(graph.node(o)), o)


def _find_cycle(graph: Graph) -> list[str]:
    try:
        return [u for u, _ in nx.find_cycle(graph.to_networkx())]
    except nx.NetworkXNoCycle:
        return []


def toposort(graph: Graph) -> Graph:
    """Reorder nodes topologically (stable: keeps the given order where it is already valid)."""
    g = graph.to_networkx()
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    try:
        names = list(nx.lexicographical_topological_sort(g, key=lambda v: order.get(v, -1)))
    except nx.NetworkXUnfeasible as e:
        raise VerifyError(f"graph has a cycle: {_find_cycle(graph)}") from e
    idx = graph._index()
    return graph.replace(nodes=tuple(idx[n] for n in names if n in idx))
