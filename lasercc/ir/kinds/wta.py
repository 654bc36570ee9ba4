"""Winner-take-all maximum."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import ConstantView, Footprint, GpuWork, GraphView, Node, NoSynapses, Traits, elements
from lasercc.ir.types import ValueType


class WTAMax(NoSynapses, Node):
    """Maximum along one axis (keepdims) by a bit-serial winner-take-all over MSB-first codes:
    at each step the candidates that show a 1 while another candidate also does stay in.

    It forwards the winner's train bit by bit, one step behind (T = T(in) + 1), so its output
    shares its input's encoding (linked)."""

    op: ClassVar[str] = "wta_max"
    traits: ClassVar[Traits] = Traits(spiking=True, emits_spikes=True, linked=True, reads_signed=True,
                                      writes_signed=True)
    axis: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        out = self._expect_code()
        if not x.per_tensor or not x.same_quant(out):
            raise ValueError("wta_max keeps the (per-tensor) quantization of its input")
        if not 0 <= self.axis < len(x.shape):
            raise ValueError(f"axis {self.axis} out of range for rank {len(x.shape)}")
        shape = list(x.shape)
        shape[self.axis] = 1
        self._expect_shape(tuple(shape))

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return t_in[0] + 1

    def neuron_updates(self, graph: GraphView) -> int:
        return self._out_elements() * self.type.bits  # type: ignore[union-attr]

    def macs(self, graph: GraphView) -> int:
        return 0

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(compares=sum(elements(graph, i) for i in self.inputs))

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return Footprint()
