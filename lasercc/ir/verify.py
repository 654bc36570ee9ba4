"""The graph verifier: everything a backend relies on, checked once, with the offending node printed.

Why a module of its own: the verifier needs the printer (every error shows the node's IR text) and
``Graph`` needs the verifier (``Graph.verify()``); with both in ``graph.py`` the graph, node and text
modules imported one another. Here the verifier sits below ``Graph`` and reads a graph through its
attributes, so the IR's imports run one way: types < nodes < printer < analysis < verify < graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from lasercc.errors import VerifyError
from lasercc.ir.analysis import find_cycle
from lasercc.ir.nodes import NAME_RE, ConstantView, Input, Node
from lasercc.ir.printer import format_node
from lasercc.ir.types import CodeType, TensorType, ValueType


class VerifiableGraph(Protocol):
    """What the verifier reads of a :class:`~lasercc.ir.graph.Graph`."""

    @property
    def name(self) -> str: ...

    @property
    def nodes(self) -> Sequence[Node]: ...

    @property
    def outputs(self) -> Sequence[str]: ...

    @property
    def constants(self) -> Mapping[str, Any]: ...


def verify(graph: VerifiableGraph) -> None:
    """Reject malformed graphs with a message naming the node and printing it in IR text.

    Checks: unique, well-formed names; every input defined (no dangling references) and defined
    before use (no cycles); outputs exist and are codes; every constant a node names exists with a
    valid dtype; and each node's own typing rules (bits, shapes, scales, accumulator bounds).
    """
    if not NAME_RE.match(graph.name):
        raise VerifyError(f"bad graph name {graph.name!r}")
    defined: dict[str, ValueType] = {}
    names = [n.name for n in graph.nodes]
    dupes = {x for x in names if names.count(x) > 1} if len(set(names)) != len(names) else set()
    if dupes:
        n = next(n for n in graph.nodes if n.name in dupes)
        raise VerifyError(f"value %{n.name} is defined more than once", format_node(n), n.name)
    all_names = set(names)
    if not any(isinstance(n, Input) for n in graph.nodes):
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
                cyc = find_cycle(graph.nodes)
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
    by_name = {n.name: n for n in graph.nodes}
    for o in graph.outputs:
        if o not in defined:
            raise VerifyError(f"output %{o} is not defined by any node")
        if not isinstance(defined[o], CodeType):
            raise VerifyError(f"output %{o} must be a code (outputs are spike trains)", format_node(by_name[o]), o)
