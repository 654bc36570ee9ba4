"""Gather: rows of a constant code table selected by token ids or by an index code."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import (
    ConstantView,
    Footprint,
    GpuWork,
    GraphView,
    Node,
    NoNeuronCost,
    Traits,
    _require_int,
    _type_str,
)
from lasercc.ir.types import CodeType, TensorType, ValueType


class Gather(NoNeuronCost, Node):
    """Rows of a constant code table selected by an index: out = table[index].

    The index is either i64 token ids (a graph input: the embedding lookup, done on the host) or a
    per-tensor *code* value, whose integer code itself is the row number (not its real value; the
    frontend arranges the table so that code ``c`` selects the right row, e.g. shifted by the zero
    point for negative positions). Codes index tables for positions computed inside the model --
    RoBERTa's ``cumsum(ids != pad) * (ids != pad) + pad``, OPT's ``cumsum(mask) * mask - 1 + 2``.

    Why an index input of codes rather than a one-hot lowering (an ASNC equality table per row plus a
    Soma over the whole table): the one-hot form costs a table-sized fan-out per token (positions x
    features synapses and ``seq x positions`` comparator neurons) for what is a memory read on any
    core with a lookup table; every NumPy/torch backend does it exactly with one indexing. The Lava
    backend decodes the index train in a ``gather_by_code`` process and emits the rows one step after
    the last index bit (latency T = T(index) + 1 + N, as ``ir.analysis.latency_steps`` counts it).
    Codes at or beyond the table's rows are a run-time index error on every backend, as for ids.
    """

    op: ClassVar[str] = "gather"
    traits: ClassVar[Traits] = Traits(spiking=False, emits_spikes=True, writes_signed=True)
    const_fields: ClassVar[tuple[str, ...]] = ("table",)
    table: str

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (ids,) = in_types
        if isinstance(ids, CodeType):
            if not ids.per_tensor:
                raise ValueError(f"gather index codes must be per-tensor, got {_type_str(ids)}")
        elif not (isinstance(ids, TensorType) and ids.dtype == "i64"):
            raise ValueError(f"gather reads i64 token ids or an index code, got {_type_str(ids)}")
        out = self._expect_code()
        _, ts = _require_int(consts, self.table, "table")
        if len(ts) < 1:
            raise ValueError("gather table must have rank >= 1")
        self._expect_shape(tuple(ids.shape) + tuple(ts[1:]))
        data = consts.data(self.table)
        if data is not None and data.size and (data.min() < 0 or data.max() > out.hi):
            raise ValueError(f"table @{self.table} holds values outside the {out.bits}-bit code range")

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        bits = self.type.bits if isinstance(self.type, CodeType) else 0
        if isinstance(in_types[0], CodeType):
            return t_in[0] + 1 + bits  # decodes its index train: a spiking node
        return max(t_in + [0]) + bits  # token ids: a source

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(rows_from_table=True)  # the selected rows, read from the table in DRAM

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return None  # looked up by the host (ids) or a gather process, not placed on a neuro-core
