"""DecodeMAC: activation x activation products, decoded and multiplied densely."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import (
    ACC_LIMIT_BITS,
    ConstantView,
    Footprint,
    Form,
    GpuWork,
    GraphView,
    Node,
    NoSynapses,
    RequantMode,
    Traits,
    _broadcast,
    code_bits,
    spiking_latency,
)
from lasercc.ir.types import ValueType


class DecodeMAC(NoSynapses, Node):
    """Activation x activation: decode both codes, exact (a-za)*(b-zb) product or matmul in int64,
    requantize with s_a*s_b/s_out, re-encode (LASER section 3.1)."""

    op: ClassVar[str] = "decode_mac"
    n_inputs: ClassVar[int | None] = 2
    traits: ClassVar[Traits] = Traits(spiking=True, emits_spikes=True, reads_signed=True, writes_signed=True)

    form: Form
    requant: RequantMode = "ort"

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        a, b = self._codes_in(in_types)
        self._expect_code()
        for i, t in enumerate((a, b)):
            if not t.per_tensor:
                raise ValueError(f"decode_mac input {i} must have per-tensor quantization")
        if self.form == "matmul":
            if len(a.shape) < 2 or len(b.shape) < 2:
                raise ValueError("decode_mac matmul needs rank >= 2 inputs")
            if a.shape[-1] != b.shape[-2]:
                raise ValueError(f"matmul inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
            shape = _broadcast(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            k = a.shape[-1]
        else:
            shape = _broadcast(a.shape, b.shape)
            k = 1
        self._expect_shape(shape)
        if (a.hi * b.hi) * max(k, 1) >= 1 << ACC_LIMIT_BITS:
            raise ValueError(f"decode_mac accumulator can exceed 2^{ACC_LIMIT_BITS} "
                             f"({a.bits}-bit x {b.bits}-bit, K={k})")

    def _k(self, graph: GraphView) -> int:
        return int(graph.type_of(self.inputs[0]).shape[-1]) if self.form == "matmul" else 1

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return spiking_latency(t_in, self.type.bits)  # type: ignore[union-attr]

    def neuron_updates(self, graph: GraphView) -> int:
        return self._out_elements()  # one update per output, after decoding

    def macs(self, graph: GraphView) -> int:
        return self._out_elements() * self._k(graph)

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(macs=self.macs(graph), mac_bits=max(code_bits(graph, i) for i in self.inputs))

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        ba, bb = (code_bits(graph, i) or 8 for i in self.inputs)
        if self.form == "matmul":
            k = self._k(graph)  # the row of A streams through; each neuron holds one column of B
            return Footprint(k=k, matmul=True, fixed_bits=k * ba, code_bits_per_neuron=k * bb, axons_per_neuron=1)
        return Footprint(code_bits_per_neuron=ba + bb, axons_per_neuron=2)
