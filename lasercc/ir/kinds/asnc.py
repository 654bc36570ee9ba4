"""The ASNC segment: a nonlinearity as a piecewise-affine integer map."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import (
    ConstantView,
    Footprint,
    GpuWork,
    GraphView,
    NoSynapses,
    Traits,
    code_bits,
    spiking_latency,
)
from lasercc.ir.kinds.blocks import SegmentTable
from lasercc.ir.types import ValueType


class ASNCSegment(NoSynapses, SegmentTable):
    """A nonlinearity as a piecewise-affine integer map (see :mod:`lasercc.semantics.asnc`).

    ``thresholds`` (K-1 interior breakpoints), ``slopes`` and ``intercepts`` (K each) are
    constants; ``function`` (with numeric ``params``, e.g. the epsilon of rsqrt) names the real
    function it approximates, so passes can refit it; ``histogram`` optionally names an i64
    constant of calibration counts per input code (what adaptive fitting places breakpoints by).
    """

    op: ClassVar[str] = "asnc"
    const_fields: ClassVar[tuple[str, ...]] = ("thresholds", "slopes", "intercepts", "histogram")
    traits: ClassVar[Traits] = Traits(spiking=True, emits_spikes=True, reads_signed=True, writes_signed=True)

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._expect_code()
        self._expect_shape(x.shape)
        self._check_table(consts, x.hi + 1)

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return spiking_latency(t_in, self.type.bits)  # type: ignore[union-attr]

    def neuron_updates(self, graph: GraphView) -> int:
        """Each comparator neuron reads every input bit."""
        return self._out_elements() * code_bits(graph, self.inputs[0])

    def macs(self, graph: GraphView) -> int:
        return 0

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(nonlinear_elements=self._out_elements())

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return Footprint(table_entries=self._table_entries(graph))
