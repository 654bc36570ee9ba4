"""Constant folding: computations whose result depends only on constants and token ids.

In this IR the only constant *codes* are embedding tables read by ``Gather``. A node that reads a
Gather and acts on each gathered row independently -- an elementwise or per-row Soma (e.g. the
embedding scale, a projection of the embedding), an ASNC nonlinearity, a slice/take of feature
columns, a feature-only mask -- computes a function of the token id alone. Its result for every
possible id is a new table (vocabulary x features), so the node becomes one Gather of that table:
the Soma's synapses, neurons, N timesteps and spikes disappear, at the cost of table memory
(bounded by ``max_table_elements``). The new table is computed by running the node through the
NumPy reference backend on all ids, so the folded graph is bit-identical by construction (and
tested by running before and after). Chains fold one node at a time, in one sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lasercc.ir.edit import GraphEditor
from lasercc.ir.graph import ConstSpec, Graph
from lasercc.ir.nodes import ASNCSegment, Gather, Input, Mask, Node, Slice, Soma, Take
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes.base import Pass, PassResult, option, register_pass


@register_pass
@dataclass(frozen=True)
class ConstantFold(Pass):
    """Fold per-row nodes that read an embedding Gather into a precomputed Gather table."""

    name: ClassVar[str] = "fold"
    max_table_elements: int = option(1 << 24, "largest folded table (vocabulary x features) to create")

    def run(self, graph: Graph) -> PassResult:
        ed = GraphEditor(graph)
        consts = ed.constants
        folded: dict[str, int] = {}
        saved_neurons = 0
        for n in graph.nodes:
            src = ed.get(n.inputs[0]) if len(n.inputs) == 1 else None  # already folded, if it was
            if isinstance(src, Gather) and isinstance(consts[src.table], np.ndarray):
                new = self._fold(n, src, graph, ed)
                if new is not None:
                    folded[n.op] = folded.get(n.op, 0) + 1
                    if n.is_compute:
                        saved_neurons += int(np.prod(n.type.shape))
                    ed.replace(new)
        if not folded:
            return PassResult(graph, False, {"folded": {}})
        n_consts = len(consts)
        g = ed.finish()
        return PassResult(g, True, {"folded": folded, "neurons_removed": saved_neurons,
                                    "constants_removed": n_consts - len(g.constants)})

    def _fold(self, n: Node, src: Gather, graph: Graph, ed: GraphEditor) -> Gather | None:
        consts = ed.constants
        ids_t = graph.type_of(src.inputs[0])
        lead = len(ids_t.shape)
        table = consts[src.table]
        vocab = table.shape[0]
        out_t = n.type
        if not isinstance(out_t, CodeType) or not _per_row(n, lead, consts):
            return None
        feat = tuple(out_t.shape[lead:])
        if vocab * int(np.prod(feat, dtype=np.int64)) > self.max_table_elements:
            return None
        # a one-row-per-id copy of the node: ids [vocab] -> gather -> node
        row_in = src.type.with_shape((vocab,) + tuple(src.type.shape[lead:]),
                                     None if src.type.axis is None else src.type.axis - lead + 1)
        row_out = out_t.with_shape((vocab,) + feat, None if out_t.axis is None else out_t.axis - lead + 1)
        changes: dict[str, object] = {"inputs": ("g",), "type": row_out}
        if isinstance(n, (Slice, Take)):
            if isinstance(n, Slice):
                changes["axes"] = tuple(a - lead + 1 for a in n.axes)
            else:
                changes["axis"] = n.axis - lead + 1
        ids = Input(name="ids", type=TensorType(dtype="i64", shape=(vocab,)))
        g = Gather(name="g", inputs=("ids",), table=src.table, type=row_in)
        mini = Graph("fold", (ids, g, n.replace(**changes)), (n.name,),
                     {k: consts[k] for k in (src.table, *n.const_refs())})
        from lasercc.backends.numpy_ref import NumpyCodes

        codes = NumpyCodes(collect_stats=False).run(mini, {"ids": np.arange(vocab, dtype=np.int64)}).codes[n.name]
        dtype = np.uint8 if out_t.bits <= 8 else np.uint16 if out_t.bits <= 16 else np.int64
        name = ed.add_constant(f"{n.name}.table", codes.astype(dtype))
        return Gather(name=n.name, inputs=src.inputs, table=name, type=out_t)


def _per_row(n: Node, lead: int, consts: dict) -> bool:
    """Does ``n`` act on each gathered row (the trailing feature axes) independently?"""
    def feat_only(c: str) -> bool:
        a = consts[c]
        return not isinstance(a, ConstSpec) and a.ndim <= len(n.type.shape) - lead

    if isinstance(n, Soma):
        mul_ok = all(feat_only(w) for w, f in zip(n.weights, n.forms) if f == "mul")
        return (len(n.inputs) == 1 and len(n.type.shape) > lead and mul_ok
                and (n.bias is None or feat_only(n.bias)) and not isinstance(consts[n.weights[0]], ConstSpec))
    if isinstance(n, ASNCSegment):
        return True
    if isinstance(n, Mask):
        return feat_only(n.mask)
    if isinstance(n, Slice):
        return all(a >= lead for a in n.axes)
    if isinstance(n, Take):
        return n.axis >= lead
    return False
