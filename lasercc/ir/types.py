"""Value types of the spiking IR.

``CodeType`` is docs/contract.md section 2's ``code<N, scale, zero_point>[shape]``: an unsigned N-bit integer code
whose real value is scale*(code - zero_point), per tensor or per axis. ``TensorType`` types the
only non-code values that exist: real graph inputs (``f32``, encoded by BSEEncode) and token ids
(``i64``, consumed by an embedding Gather).

``CodeType.encoding`` says how a value's spikes travel, never what its codes are: ``bse`` (the
default) is docs/contract.md section 2's unsigned MSB-first bit train of the code; ``signed`` (SDLLM's bidirectional
encoding, per-tensor only) is a ternary MSB-first train of the offset code - zero_point, so a value
at its zero point emits no spike at all (see :func:`lasercc.semantics.bse.bse_encode_signed`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from lasercc.ir.bounds import check_scale_f32
from lasercc.semantics.bse import MAX_BITS, MIN_BITS

Shape = tuple[int, ...]
Encoding = Literal["bse", "signed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_shape(shape: Shape) -> Shape:
    for d in shape:
        if d < 0:
            raise ValueError(f"negative dimension in shape {list(shape)}")
    return shape


class CodeType(_Frozen):
    """``code<bits, scale, zero_point>[shape]`` with per-tensor (axis=None) or per-axis parameters."""

    bits: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    shape: Shape
    axis: int | None = None
    encoding: Encoding = "bse"

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: Shape) -> Shape:
        return _check_shape(v)

    @model_validator(mode="after")
    def _check(self) -> CodeType:
        if not (MIN_BITS <= self.bits <= MAX_BITS):
            raise ValueError(f"bits must be in [{MIN_BITS}, {MAX_BITS}], got {self.bits}")
        if len(self.scale) == 0 or len(self.scale) != len(self.zero_point):
            raise ValueError("scale and zero_point must be non-empty and of equal length")
        for s in self.scale:
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"scale must be finite and positive, got {s}")
            check_scale_f32(s)  # dequantize and requantize use float32 scales
        hi = (1 << self.bits) - 1
        for z in self.zero_point:
            if not 0 <= z <= hi:
                raise ValueError(f"zero_point {z} outside the {self.bits}-bit code range [0, {hi}]")
        if self.encoding == "signed" and self.axis is not None:
            raise ValueError("signed (bidirectional) encoding needs per-tensor quantization")
        if self.axis is None:
            if len(self.scale) != 1:
                raise ValueError("per-tensor code type needs exactly one scale (or give axis=)")
        else:
            if not 0 <= self.axis < len(self.shape):
                raise ValueError(f"axis {self.axis} out of range for rank {len(self.shape)}")
            if len(self.scale) != self.shape[self.axis]:
                raise ValueError(
                    f"per-axis scale has {len(self.scale)} entries but axis {self.axis} has size "
                    f"{self.shape[self.axis]}"
                )
        return self

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    @property
    def lo(self) -> int:
        return 0

    @property
    def hi(self) -> int:
        return (1 << self.bits) - 1

    def scale_array(self, ndim: int | None = None) -> np.ndarray:
        """Scales as float32, shaped to broadcast against a tensor of this type."""
        return self._param(np.asarray(self.scale, dtype=np.float32), ndim)

    def zero_point_array(self, ndim: int | None = None) -> np.ndarray:
        return self._param(np.asarray(self.zero_point, dtype=np.int64), ndim)

    def _param(self, arr: np.ndarray, ndim: int | None) -> np.ndarray:
        if self.axis is None:
            return arr.reshape(())
        nd = len(self.shape) if ndim is None else ndim
        shape = [1] * nd
        shape[nd - len(self.shape) + self.axis] = arr.size
        return arr.reshape(shape)

    def with_shape(self, shape: Shape, axis: int | None = None) -> CodeType:
        """Same quantization, new shape (data movement). Per-axis types must say where the axis went."""
        if self.axis is not None and axis is None:
            raise ValueError("moving a per-axis code type needs the new axis")
        return CodeType(bits=self.bits, scale=self.scale, zero_point=self.zero_point, shape=tuple(shape),
                        axis=axis if self.axis is not None else None, encoding=self.encoding)

    def with_encoding(self, encoding: Encoding) -> CodeType:
        """Same codes, spikes carried another way (what the ``signed-encode`` pass rewrites)."""
        return CodeType(bits=self.bits, scale=self.scale, zero_point=self.zero_point, shape=self.shape,
                        axis=self.axis, encoding=encoding)

    @property
    def signed(self) -> bool:
        """True when spikes are the ternary train of code - zero_point (bidirectional encoding)."""
        return self.encoding == "signed"

    def same_quant(self, other: object) -> bool:
        """Same bits, scale, zero point *and* spike encoding: data movement keeps all four, since it
        forwards spike trains untouched."""
        return (isinstance(other, CodeType) and self.bits == other.bits and self.scale == other.scale
                and self.zero_point == other.zero_point and self.encoding == other.encoding)

    @classmethod
    def per_tensor_type(cls, bits: int, scale: float, zero_point: int, shape: Shape) -> CodeType:
        return cls(bits=bits, scale=(float(scale),), zero_point=(int(zero_point),), shape=tuple(shape))


class TensorType(_Frozen):
    """A non-code tensor: ``f32`` real graph inputs or ``i64`` token ids."""

    dtype: Literal["f32", "i64"]
    shape: Shape

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: Shape) -> Shape:
        return _check_shape(v)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.dtype == "f32" else np.int64)


ValueType = CodeType | TensorType

CONST_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "i8": np.dtype(np.int8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "u8": np.dtype(np.uint8),
    "u16": np.dtype(np.uint16),
    "u32": np.dtype(np.uint32),
}
DTYPE_NAMES: dict[np.dtype, str] = {v: k for k, v in CONST_DTYPES.items()}


def dtype_name(dtype: np.dtype) -> str:
    """IR name of an integer/bool numpy dtype; floats are not allowed in the constant table."""
    dt = np.dtype(dtype)
    if dt not in DTYPE_NAMES:
        raise ValueError(f"constant dtype {dt} is not allowed in the IR (integers and bool only)")
    return DTYPE_NAMES[dt]


# ------------------------------------------------------------------------------------ printing
# The type printer lives with the types (not in ``text``) so that node validation messages can name a
# type without importing the text module, which imports the nodes: one direction only.
def format_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_num(v: float | int) -> str:
    """Floats with ``repr`` (shortest round-trip form), so scales survive print/parse exactly."""
    return repr(float(v)) if isinstance(v, float) else str(int(v))


def format_type(t: ValueType) -> str:
    """``f32[4, 16]`` or ``code<8, 0.05, 128>[4, 16]`` (per-axis: lists and ``axis = k``)."""
    if isinstance(t, TensorType):
        return f"{t.dtype}{format_shape(t.shape)}"
    if t.axis is None:
        head = f"code<{t.bits}, {format_num(t.scale[0])}, {t.zero_point[0]}"
    else:
        sc = ", ".join(format_num(s) for s in t.scale)
        zp = ", ".join(str(z) for z in t.zero_point)
        head = f"code<{t.bits}, [{sc}], [{zp}], axis = {t.axis}"
    if t.encoding != "bse":  # the default prints as it always did, so existing .lir files are unchanged
        head += f", {t.encoding}"
    return f"{head}>{format_shape(t.shape)}"
