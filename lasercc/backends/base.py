"""The executor interface every backend implements.

A backend is a table of per-node-kind implementations (methods marked ``@impl(Kind)``) walked in
topological order over an environment of values, freeing each value after its last use, and
re-raising any failure with the failing node printed in IR text (after torch.fx's Interpreter).
Arithmetic comes from :mod:`lasercc.semantics`; a backend only chooses how to run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lasercc.errors import ExecutionError, LasercError
from lasercc.ir.analysis import values_freed_after
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Node
from lasercc.ir.printer import format_node

__all__ = ["ExecResult", "Executor", "impl", "values_freed_after"]  # values_freed_after: an IR analysis


def impl(*kinds: type[Node]) -> Callable:
    """Mark an executor method as the implementation of these node kinds."""

    def mark(fn: Callable) -> Callable:
        fn._impl_kinds = kinds  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class ExecResult:
    """Output codes of one run (NumPy int64 arrays) and per-node statistics (if collected)."""

    codes: dict[str, np.ndarray]
    node_stats: dict[str, Any] = field(default_factory=dict)


class Executor:
    """Walks a graph with a per-node-kind implementation table.

    Subclasses define ``@impl`` methods ``(self, node, *inputs) -> value`` plus ``to_numpy_codes``
    to turn their value representation into NumPy codes, and may override ``observe`` to collect
    statistics.
    """

    name: ClassVar[str] = "base"
    _table: ClassVar[dict[type[Node], str]] = {}
    # Called as ``acc_observer(node, acc)`` with the accumulator of a Soma, DecodeMAC or fused SomaASNC before
    # it is requantized (or read by the table): exact run-time saturation counts need the pre-clip value,
    # which no statistic otherwise keeps. ``acc`` holds exact integers (int64, or integer-valued float).
    acc_observer: Callable[[Node, Any], None] | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        table: dict[type[Node], str] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                for k in getattr(fn, "_impl_kinds", ()):
                    table[k] = attr
        cls._table = table

    def supports(self, graph: Graph) -> list[str]:
        """Node kinds in ``graph`` this executor cannot run (empty when it can run all)."""
        return sorted({n.op for n in graph.nodes if type(n) not in self._table and n.op != "input"})

    def prepare(self, graph: Graph) -> None:
        """Per-graph set-up (caches of converted weights); called once before the first batch."""
        self.graph = graph

    def feed(self, node: Node, array: np.ndarray) -> Any:
        """Turn a validated NumPy graph input into this backend's value representation."""
        return array

    def to_numpy_codes(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        """Hook called after each node (statistics); default: nothing."""

    def check_supported(self, graph: Graph) -> None:
        missing = self.supports(graph)
        if missing:
            raise LasercError(f"the {self.name} backend cannot run node kinds: {', '.join(missing)}")

    def run(self, graph: Graph, feeds: dict[str, np.ndarray]) -> ExecResult:
        if getattr(self, "graph", None) is not graph:
            self.prepare(graph)
        self.check_supported(graph)
        frees = values_freed_after(graph)
        env: dict[str, Any] = {}
        for i, node in enumerate(graph.nodes):
            if node.op == "input":
                env[node.name] = self.feed(node, feeds[node.name])
                continue
            args = [env[v] for v in node.inputs]
            try:
                out = getattr(self, self._table[type(node)])(node, *args)
                self.observe(node, args, out)
            except LasercError:
                raise
            except Exception as e:  # re-raise with the node's text: the IR is the debugging interface
                raise ExecutionError(f"{self.name} backend failed at %{node.name}: {type(e).__name__}: {e}\n"
                                     f"    {format_node(node)}") from e
            env[node.name] = out
            for v in frees[i]:
                env.pop(v, None)
        codes = {o: self.to_numpy_codes(env[o]) for o in graph.outputs}
        return ExecResult(codes=codes, node_stats=self.collected_stats())

    def collected_stats(self) -> dict[str, Any]:
        return {}
