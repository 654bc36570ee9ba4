"""The weighted-sum kinds: Soma and the fused Soma -> ASNC."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import ConstantView, Footprint, GpuWork, GraphView, Traits, code_bits, spiking_latency
from lasercc.ir.kinds.blocks import SegmentTable, WeightedSum
from lasercc.ir.types import ValueType

_TRAITS = Traits(spiking=True, emits_spikes=True, reads_signed=True, writes_signed=True, event_driven=True)


class Soma(WeightedSum):
    """Weighted spike integration (LASER Eq. 2-3) + requantize + re-encode.

    ``acc = sum_j term_j + bias`` on the raw input codes, where term_j is ``x_j @ W_j`` (form
    ``matmul``: x [..., K], W [K, N]) or ``x_j * W_j`` (form ``mul``, NumPy broadcasting). The
    input zero points are already folded into ``bias`` by the compiler. The accumulator is then
    requantized with ``scale_in * scale_w / scale_out`` (``scale_w`` per tensor or per output
    channel, i.e. the last axis) in mode ``requant``.
    """

    op: ClassVar[str] = "soma"
    const_fields: ClassVar[tuple[str, ...]] = ("weights", "bias")
    n_inputs: ClassVar[int | None] = None
    traits: ClassVar[Traits] = _TRAITS

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        self._check_soma(in_types, consts)

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return spiking_latency(t_in, self.type.bits)  # type: ignore[union-attr]

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(macs=self._weight_macs(graph), mac_bits=max(code_bits(graph, i) for i in self.inputs),
                       weights=self.weights)

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return self._synapse_footprint(graph)


class SomaASNC(SegmentTable, WeightedSum):
    """A Soma whose accumulator feeds an ASNC comparator bank directly (requant->ASNC fusion, LASER).

    ``acc`` is computed exactly as by :class:`Soma` (same ``weights``/``forms``/``bias``); the
    output code is then ``asnc_evaluate(acc, thresholds, slopes, intercepts, shift)`` -- the
    segment table lives in the *accumulator* domain (signed int64 thresholds), so the Soma's
    requantize + N_mid-bit re-encode and the ASNC's N_mid input steps disappear. ``scale_in``,
    ``scale_w`` and ``requant`` are the fused Soma's (kept so passes can refit or explain the
    table; they take no part in the arithmetic); ``histogram`` is the eliminated intermediate
    code's calibration histogram, if the ASNC had one. It is one spiking node (T = max T(in) + 1 +
    N_out): against Soma -> ASNC it saves the N_mid-bit train and a pipeline step.
    """

    op: ClassVar[str] = "soma_asnc"
    const_fields: ClassVar[tuple[str, ...]] = ("weights", "bias", "thresholds", "slopes", "intercepts",
                                                 "histogram")
    n_inputs: ClassVar[int | None] = None
    traits: ClassVar[Traits] = _TRAITS

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        bound = self._check_soma(in_types, consts)
        self._check_table(consts, bound + 1)

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return spiking_latency(t_in, self.type.bits)  # type: ignore[union-attr]

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(macs=self._weight_macs(graph), mac_bits=max(code_bits(graph, i) for i in self.inputs),
                       weights=self.weights, nonlinear_elements=self._out_elements())

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return self._synapse_footprint(graph, table_entries=self._table_entries(graph))
