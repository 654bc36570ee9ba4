"""Data movement: rearranges codes, changes no code value, costs no spikes.

The family's rules are declared once on :class:`Move`: free in time (T = max T(in)), no neuron or
synaptic cost, no GPU kernel (a view or an index map fused into its reader), no neuro-core (it is
routing between the cores of its producers and consumers), and its output carries its input's
encoding (linked)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lasercc.ir.kinds.base import (
    ConstantView,
    Footprint,
    GpuWork,
    GraphView,
    Node,
    NoNeuronCost,
    Traits,
    _broadcast,
)
from lasercc.ir.types import CodeType, Shape, ValueType


class Move(NoNeuronCost, Node):
    """Base of the data-movement kinds."""

    traits: ClassVar[Traits] = Traits(spiking=False, emits_spikes=False, data_movement=True, linked=True,
                                      reads_signed=True, writes_signed=True)

    def _same_quant(self, x: CodeType) -> None:
        out = self._expect_code()
        if not x.same_quant(out):
            raise ValueError("data movement must keep bits, scale and zero point")

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        return max(t_in)

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        return None

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        return None


class Reshape(Move):
    """Reshape to the result type's shape."""

    op: ClassVar[str] = "reshape"

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not x.per_tensor:
            raise ValueError("reshape of a per-axis code is not supported")
        if int(np.prod(x.shape)) != int(np.prod(self.type.shape)):
            raise ValueError(f"cannot reshape {list(x.shape)} to {list(self.type.shape)}")


class Transpose(Move):
    op: ClassVar[str] = "transpose"
    perm: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if sorted(self.perm) != list(range(len(x.shape))):
            raise ValueError(f"perm {list(self.perm)} is not a permutation of rank {len(x.shape)}")
        self._expect_shape(tuple(x.shape[p] for p in self.perm))
        if x.axis is not None and self.type.axis != self.perm.index(x.axis):  # type: ignore[union-attr]
            raise ValueError("per-axis quantization axis must follow the permutation")


class Slice(Move):
    """numpy-style ``x[start:stop:step]`` on the listed axes."""

    op: ClassVar[str] = "slice"
    axes: tuple[int, ...]
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    steps: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not (len(self.axes) == len(self.starts) == len(self.stops) == len(self.steps)):
            raise ValueError("axes, starts, stops and steps must have equal length")
        if any(s == 0 for s in self.steps):
            raise ValueError("slice step cannot be 0")
        self._expect_shape(slice_shape(x.shape, self.axes, self.starts, self.stops, self.steps))
        if x.axis is not None and x.axis in self.axes:
            raise ValueError("cannot slice along a per-axis quantization axis")


def slice_shape(shape: Shape, axes, starts, stops, steps) -> Shape:
    out = list(shape)
    for a, b, e, s in zip(axes, starts, stops, steps):
        if not 0 <= a < len(shape):
            raise ValueError(f"slice axis {a} out of range")
        out[a] = len(range(*slice(b, e, s).indices(shape[a])))
    return tuple(out)


class Concat(Move):
    op: ClassVar[str] = "concat"
    n_inputs: ClassVar[int | None] = None
    axis: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        xs = self._codes_in(in_types)
        for x in xs:
            self._same_quant(x)
            if not x.per_tensor:
                raise ValueError("concat inputs must be per-tensor codes")
        r = len(xs[0].shape)
        if not 0 <= self.axis < r or any(len(x.shape) != r for x in xs):
            raise ValueError("concat inputs must share rank and the axis must be in range")
        shape = list(xs[0].shape)
        for x in xs[1:]:
            for d in range(r):
                if d != self.axis and x.shape[d] != shape[d]:
                    raise ValueError(f"concat shapes differ off axis {self.axis}: "
                                     f"{[list(x.shape) for x in xs]}")
        shape[self.axis] = sum(x.shape[self.axis] for x in xs)
        self._expect_shape(tuple(shape))


class Take(Move):
    """Constant indices along one axis of a code tensor (e.g. the last token or [CLS])."""

    op: ClassVar[str] = "take"
    axis: int
    indices: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not 0 <= self.axis < len(x.shape):
            raise ValueError(f"axis {self.axis} out of range")
        n = x.shape[self.axis]
        if any(not -n <= i < n for i in self.indices):
            raise ValueError(f"indices {list(self.indices)} out of range for size {n}")
        shape = list(x.shape)
        shape[self.axis] = len(self.indices)
        self._expect_shape(tuple(shape))


class Mask(Move):
    """Where the boolean constant ``mask`` is true, the code becomes ``fill`` (e.g. causal masking
    before Softmax). The mask broadcasts against the input; no spike carries it."""

    op: ClassVar[str] = "mask"
    const_fields: ClassVar[tuple[str, ...]] = ("mask",)
    mask: str
    fill: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not consts.has(self.mask):
            raise ValueError(f"unknown constant @{self.mask} (mask)")
        dt, ms = consts.spec(self.mask)
        if dt != np.bool_:
            raise ValueError(f"mask @{self.mask} must be bool, got {dt}")
        if _broadcast(x.shape, ms) != tuple(x.shape):
            raise ValueError(f"mask shape {list(ms)} does not broadcast to {list(x.shape)}")
        self._expect_shape(x.shape)
        if not x.lo <= self.fill <= x.hi:
            raise ValueError(f"fill {self.fill} outside the {x.bits}-bit code range")
