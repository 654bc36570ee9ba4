"""``asnc-fit``: refit every ASNCSegment of a graph as an adaptive piecewise-affine table.

Each ASNC node names the real function it stands for (``function`` + ``params``), its input and
output code types are in the graph, and the frontend may have stored a calibration histogram per
input code (``histogram``). That is everything :func:`lasercc.asnc.fit` needs, so this pass turns
the ideal lookup-table form (one segment per code, LASER's "ideal SNN") into a compact table of at
most ``max_segments`` segments -- or refits an existing table with other options. Nodes whose
function is not in the registry (``"table"``, ``"random"``, an unregistered callable) are left as
they are: there is nothing to refit them from.

The rewrite is immutable: a new graph with new node records and constants. A node's old constants
are overwritten in place when no other node reads them (so no stale tables linger); otherwise the
new table gets fresh ``<node>.asnc.*`` names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from lasercc.asnc import FUNCTIONS, fit
from lasercc.asnc.distribution import BREAKPOINTS, ASNCFitError
from lasercc.asnc.fit import check_max_segments
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
        refs = Counter(c for n in graph.nodes for c in n.const_refs())
        nodes: list[Node] = []
        new_consts: dict[str, np.ndarray] = {}
        changed = False
        fitted: dict[str, dict[str, object]] = {}
        for n in graph.nodes:
            if not isinstance(n, ASNCSegment) or n.function not in FUNCTIONS:
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
            table = fit(n.function, params=tuple(n.params), input_q=in_type, output_q=n.type, histogram=hist,
                        max_segments=self.max_segments, target_mse=self.target_mse, breakpoints=self.breakpoints)
            own = all(refs[c] == 1 for c in (n.thresholds, n.slopes, n.intercepts))
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
