"""Encode/decode pair elimination: remove data movement and re-encodings that change no code.

Every value on a spiking chip is a BSE spike train; a node that decodes a train and re-encodes
the very same codes (a reshape back to the same shape, a transpose undone by another, a Soma whose
requantization maps every code to itself) costs routing, neurons or N timesteps for nothing.
Rewrites, all exact (codes unchanged, which the tests check by running before and after):

* reshape of a reshape -> one reshape; a reshape to the same shape -> removed;
* transpose of a transpose -> one transpose (composed permutation); identity permutation -> removed;
* slice that keeps everything, take of ``0..n-1``, concat of a single input -> removed;
* a Soma that is an exact identity: one ``mul`` input, a uniform weight and bias, same
  quantization in and out, and ``requantize(w*x + b) == x`` for *every* input code (checked
  exhaustively with the shared semantics, so no arithmetic is re-implemented here);
* an ASNC segment table that maps every input code to itself (same quantization) -> removed.

A node that is a graph output is kept (its name is the user's interface), but its input is still
rewired past removable predecessors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lasercc.ir.edit import GraphEditor
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNCSegment, Concat, Node, Reshape, Slice, Soma, Take, Transpose
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, option, register_pass
from lasercc.semantics import asnc_evaluate, requantize


@register_pass
@dataclass(frozen=True)
class EncodeElimination(Pass):
    """Remove identity data movement and re-encodings (reshape/transpose chains, identity Somas)."""

    name: ClassVar[str] = "encode-elim"
    max_exhaustive_bits: int = option(16, "widest code checked exhaustively for identity Somas/ASNCs")

    def run(self, graph: Graph) -> PassResult:
        ed = GraphEditor(graph)
        counts: dict[str, int] = {}

        def bump(k: str) -> None:
            counts[k] = counts.get(k, 0) + 1

        for name in [n.name for n in graph.nodes]:
            n = ed.node(name)  # operands already rewired past removed predecessors
            src = ed.get(n.inputs[0]) if n.inputs else None
            # compose with the producer
            if isinstance(n, Reshape) and isinstance(src, Reshape):
                n = ed.replace(n.replace(inputs=src.inputs))
                bump("reshape_chain")
                src = ed.get(n.inputs[0])
            if isinstance(n, Transpose) and isinstance(src, Transpose):
                n = ed.replace(n.replace(inputs=src.inputs, perm=tuple(src.perm[p] for p in n.perm)))
                bump("transpose_chain")
                src = ed.get(n.inputs[0])
            if not ed.is_output(n.name) and self._is_identity(n, graph, ed):
                ed.replace_all_uses(n.name, n.inputs[0])
                ed.erase(n.name)
                bump(f"identity_{n.op}")
        g = ed.finish()
        changed = bool(counts) or len(g.nodes) < len(ed.nodes)  # a rewrite, or dead nodes dropped
        return PassResult(g if changed else graph, changed,
                          {"rewrites": counts, "nodes_removed": len(graph.nodes) - len(g.nodes)})

    def _is_identity(self, n: Node, graph: Graph, ed: GraphEditor) -> bool:
        if not n.inputs:
            return False
        src_type = ed.node(n.inputs[0]).type
        if not (isinstance(src_type, CodeType) and isinstance(n.type, CodeType)):
            return False
        same_shape = tuple(src_type.shape) == tuple(n.type.shape)
        if isinstance(n, Reshape):
            return same_shape
        if isinstance(n, Transpose):
            return n.perm == tuple(range(len(n.perm)))
        if isinstance(n, Slice):
            return same_shape and all(s == 1 for s in n.steps)
        if isinstance(n, Take):
            size = src_type.shape[n.axis]
            return tuple(i % size for i in n.indices) == tuple(range(size))
        if isinstance(n, Concat):
            return len(n.inputs) == 1
        if not (same_shape and src_type == n.type.with_shape(src_type.shape, src_type.axis)
                and src_type.per_tensor and src_type.bits <= self.max_exhaustive_bits):
            return False
        codes = np.arange(src_type.hi + 1, dtype=np.int64)
        if isinstance(n, Soma):
            return _soma_identity(n, graph, src_type, codes)
        if isinstance(n, ASNCSegment):
            c = graph.constants
            if any(not isinstance(c[k], np.ndarray) for k in (n.thresholds, n.slopes, n.intercepts)):
                return False
            y = asnc_evaluate(codes, c[n.thresholds], c[n.slopes], c[n.intercepts], n.shift, n.type.bits)
            return bool(np.array_equal(y, codes))
        return False


def _uniform(arr: object) -> int | None:
    if not isinstance(arr, np.ndarray) or arr.size == 0:
        return None
    flat = arr.reshape(-1)
    return int(flat[0]) if np.all(flat == flat[0]) else None


def _soma_identity(n: Soma, graph: Graph, t: CodeType, codes: np.ndarray) -> bool:
    """True iff this one-input ``mul`` Soma maps every code to itself under the shared requantization."""
    if len(n.inputs) != 1 or n.forms != ("mul",) or len(set(n.scale_w)) != 1:
        return False
    w = _uniform(graph.constants[n.weights[0]])
    b = 0 if n.bias is None else _uniform(graph.constants[n.bias])
    if w is None or b is None:
        return False
    acc = codes * np.int64(w) + np.int64(b)
    y = requantize(acc, n.scale_in, np.float32(n.scale_w[0]), t.scale_array(), t.zero_point_array(), t.bits,
                   n.requant)
    return bool(np.array_equal(y, codes))
