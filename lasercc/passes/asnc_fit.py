"""``asnc-fit``: refit every ASNCSegment of a graph as an adaptive piecewise-affine table.

Each ASNC node names the real function it stands for (``function`` + ``params``), its input and
output code types are in the graph, and the frontend may have stored a calibration histogram per
input code (``histogram``). That is everything :func:`lasercc.asnc.fit` needs, so this pass turns
the ideal lookup-table form (one segment per code, LASER's "ideal SNN") into a compact table of at
most ``max_segments`` segments -- or refits an existing table with other options. Nodes whose
function is not in the registry (``"table"``, ``"random"``, an unregistered callable) are left as
they are: there is nothing to refit them from -- except ``onnx_chain`` lookup tables (the frontend's
evaluated elementwise chains), whose own codes are their definition.

The rewrite is immutable: a new graph with new node records and constants. A node's old constants
are overwritten in place when no other node reads them (so no stale tables linger); otherwise the
new table gets fresh ``<node>.asnc.*`` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from lasercc.asnc import FUNCTIONS, fit
from lasercc.asnc.distribution import BREAKPOINTS, ASNCFitError
from lasercc.asnc.fit import check_max_segments
from lasercc.ir.analysis import const_users
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNCSegment, Node
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class AsncFit(Pass):
    """Refit ASNC nodes: ``asnc-fit{max_segments=16, target_mse=1e-7, breakpoints=adaptive}``."""

    name: ClassVar[str] = "asnc-fit"
    max_segments: int = 32
    target_mse: float | None = None
    breakpoints: Literal["adaptive", "uniform"] = "adaptive"

    def __post_init__(self) -> None:
        if self.breakpoints not in BREAKPOINTS:
            raise ASNCFitError(f"asnc-fit: breakpoints must be one of {', '.join(BREAKPOINTS)}, "
                               f"got {self.breakpoints!r}")
        check_max_segments(self.max_segments, "asnc-fit: ")
        if self.target_mse is not None and not self.target_mse > 0:
            raise ASNCFitError(f"asnc-fit: target_mse must be positive, got {self.target_mse}")

    def run(self, graph: Graph) -> PassResult:
        refs = const_users(graph)
        nodes: list[Node] = []
        new_consts: dict[str, np.ndarray] = {}
        changed = False
        fitted: dict[str, dict[str, object]] = {}
        for n in graph.nodes:
            if not isinstance(n, ASNCSegment) or (n.function not in FUNCTIONS and _own_lut(n, graph) is None):
                nodes.append(n)
                continue
            in_type = graph.type_of(n.inputs[0])
            if not (isinstance(in_type, CodeType) and in_type.per_tensor and isinstance(n.type, CodeType)
                    and n.type.per_tensor):
                nodes.append(n)  # per-axis code types: one table cannot serve every channel
                continue
            hist = None
            if n.histogram is not None:
                h = graph.constants[n.histogram]
                hist = h if isinstance(h, np.ndarray) else None
            table = fit(n.function if n.function in FUNCTIONS else _own_lut(n, graph), params=tuple(n.params),  # type: ignore[arg-type]
                        input_q=in_type, output_q=n.type, histogram=hist,
                        max_segments=self.max_segments, target_mse=self.target_mse, breakpoints=self.breakpoints)
            own = all(len(refs.get(c, ())) == 1 for c in (n.thresholds, n.slopes, n.intercepts))
            prefix = f"{n.name}.asnc"
            while not own and any(f"{prefix}.{k}" in graph.constants for k in ("thresholds", "slopes", "intercepts")):
                prefix += "_"
            node, consts = table.to_node(n.name, n.inputs[0], n.type, graph_constants_prefix=prefix,
                                         histogram=n.histogram)
            if own:  # reuse the node's own constant names: the old arrays are replaced, not orphaned
                rename = {node.thresholds: n.thresholds, node.slopes: n.slopes, node.intercepts: n.intercepts}
                consts = {rename[k]: v for k, v in consts.items()}
                node = node.replace(thresholds=n.thresholds, slopes=n.slopes, intercepts=n.intercepts)
            changed = changed or node != n or any(_differs(graph.constants.get(k), v) for k, v in consts.items())
            new_consts.update(consts)
            nodes.append(node)
            fitted[n.name] = {"function": n.function, "segments": table.n_segments, "mse": table.mse,
                              "mse_lut": table.mse_lut, "mse_floor": table.mse_floor,
                              "max_code_error": table.max_code_error, "distribution": table.distribution}
        info = {"refitted": len(fitted), "nodes": fitted}
        if not changed:
            return PassResult(graph, False, info)
        new = graph.replace(nodes=tuple(nodes), constants=graph.constants.with_items(**new_consts))
        return PassResult(new, True, info)


def _differs(old: object, new: np.ndarray) -> bool:
    return not (isinstance(old, np.ndarray) and np.array_equal(old, new))


TABLE_DEFINED = "onnx_chain"  # the function name of a table whose own codes define it (see _own_lut)


def _own_lut(n: ASNCSegment, graph: Graph):  # noqa: ANN202
    """The real function an exact lookup table *is*, for a node whose function has no registered definition.

    Why: the frontend evaluates any chain of elementwise ONNX ops into one exact table named ``onnx_chain``
    (lasercc/frontends/onnx/chains.py); the table's own codes are its definition, and they are saved with
    the graph, so a loaded artifact refits it too. Only the lookup form (one slope-0 segment per input
    code) defines a function; a node already fitted has lost it (None: left as it is).
    """
    from lasercc.semantics.quant import dequantize, quantize

    in_type = graph.type_of(n.inputs[0])
    if n.function != TABLE_DEFINED:
        return None
    k = graph.constants
    t, s, c = (k.get(x) for x in (n.thresholds, n.slopes, n.intercepts))
    if n.function != TABLE_DEFINED:
        return None
    if not (isinstance(in_type, CodeType) and in_type.per_tensor and isinstance(n.type, CodeType)
            and isinstance(t, np.ndarray) and isinstance(s, np.ndarray) and isinstance(c, np.ndarray)):
        return None
    size = 1 << in_type.bits
    if n.shift != 0 or c.size != size or np.any(s) or not np.array_equal(t, np.arange(1, size)):
        return None
    si, zi, so, zo = in_type.scale[0], in_type.zero_point[0], n.type.scale[0], n.type.zero_point[0]
    table = np.asarray(dequantize(np.asarray(c, np.int64), so, zo), np.float64)

    def lut(u: np.ndarray) -> np.ndarray:
        return table[quantize(np.asarray(u, np.float32), si, zi, in_type.bits)]

    lut.__name__ = n.function if n.function.isidentifier() else "table"
    return lut
