"""Sources of spike trains: graph inputs and the BSE encoder."""

from __future__ import annotations

from typing import ClassVar

from lasercc.ir.kinds.base import (
    ConstantView,
    Footprint,
    GpuWork,
    GraphView,
    Node,
    NoNeuronCost,
    NoSynapses,
    Traits,
    _type_str,
)
from lasercc.ir.types import CodeType, TensorType, ValueType


class Input(NoNeuronCost, Node):
    """A graph input: real ``f32`` values to be encoded, ``i64`` token ids, or codes given directly.

    Given as codes, it is a source emitting its N bits from step 0 (T = N). It runs no kernel on a
    GPU (its consumers read it from DRAM) and holds no neuron on a core."""

    op: ClassVar[str] = "input"
    n_inputs: ClassVar[int | None] = 0
    traits: ClassVar[Traits] = Traits(spiking=False, emits_spikes=True, writes_signed=True)

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return self.type.bits if isinstance(self.type, CodeType) else 0

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return None

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return None


class BSEEncode(NoSynapses, Node):
    """Real input -> code spike train: quantize (ONNX QuantizeLinear rule) and BSE-encode."""

    op: ClassVar[str] = "bse_encode"
    traits: ClassVar[Traits] = Traits(spiking=True, emits_spikes=True, writes_signed=True)

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (t,) = in_types
        if not (isinstance(t, TensorType) and t.dtype == "f32"):
            raise ValueError(f"bse_encode reads a real f32 tensor, got {_type_str(t)}")
        self._expect_code()
        self._expect_shape(t.shape)

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return max(t_in + [0]) + self.type.bits  # type: ignore[union-attr]  # a source: N bits from step 0

    def neuron_updates(self, graph: GraphView) -> int:
        return self._out_elements() * self.type.bits  # type: ignore[union-attr]

    def macs(self, graph: GraphView) -> int:
        return 0

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return GpuWork(macs=self._out_elements(), mac_bits=32)  # a float quantize per element

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return Footprint()
