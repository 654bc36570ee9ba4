"""What an ONNX tensor *is* while it is being lowered.

The lowering walks the ONNX graph once, in order, and maps every tensor name to one of these
records. The important distinction is between the ONNX value and the IR value behind it:

* :class:`Const` -- a constant (initializer or folded subgraph), any dtype.
* :class:`QWeight` -- ``DequantizeLinear`` of an integer constant: integer data plus its scale and
  zero point, kept apart so weights stay integers (never re-quantized from floats).
* :class:`Act` -- an activation, always backed by an IR code value. ``quantized=True`` when the
  ONNX tensor is the integer tensor itself (uint8/int8/... output of QuantizeLinear or a QLinear op;
  signed ONNX integers are the codes minus ``2^(bits-1)``); ``False`` when the ONNX tensor is the
  float ``scale * (code - zero_point)`` (output of DequantizeLinear or of a float op we quantized).
* :class:`Masked` -- an activation plus a constant boolean mask whose true entries are -inf in the
  ONNX graph (additive ``finfo.min`` masks, ``Where`` masks): the mask is applied by Softmax.
* :class:`Ids` -- an integer (token id) graph input.
* An integer tensor *computed* from integer inputs (``cumsum(ids != pad)``, ``cumsum(mask) * mask - 1``) is
  an :class:`Act` with ``int_range`` set: exact integer codes of scale 1 (``ops_int.py``, ``common.int_binary``).
* :class:`DynScale` / :class:`IntAcc` -- the pieces of dynamic quantization (see ``ops.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lasercc.ir.types import CodeType


@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class QWeight:
    """Integer constant ``q`` with real value ``scale * (q - zero_point)`` (per tensor or along ``axis``)."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None

    def real(self) -> np.ndarray:
        s, z = self.scale.astype(np.float32), self.zero_point.astype(np.int64)
        if self.axis is not None and s.size > 1:
            shape = [1] * self.q.ndim
            shape[self.axis] = s.size
            s, z = s.reshape(shape), z.reshape(shape)
        return ((self.q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


@dataclass(frozen=True)
class Act:
    name: str
    type: CodeType
    quantized: bool = False
    signed: bool = False  # the ONNX integer tensor is signed (code = q + 2^(bits-1))
    boolean: bool = False  # an ONNX bool tensor (attention masks): true where the real value is nonzero
    # An ONNX *integer* tensor computed from integer inputs (position ids, cumulative sums of masks): exact,
    # scale 1, real value = code - zero point, known to lie in ``int_range`` (interval arithmetic, not
    # calibration: position arithmetic must never saturate). None for every other activation.
    int_range: tuple[int, int] | None = None

    @property
    def integer(self) -> bool:
        return self.int_range is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.type.shape)

    @property
    def scale(self) -> float:
        return float(self.type.scale[0])

    @property
    def zp(self) -> int:
        return int(self.type.zero_point[0])

    def as_float(self) -> Act:
        return Act(self.name, self.type, False, self.signed)

    def moved(self, name: str, type: CodeType) -> Act:  # noqa: A002
        """The same kind of value under a new IR name/type (data movement keeps the flags)."""
        return Act(name, type, self.quantized, self.signed, self.boolean, self.int_range)


@dataclass(frozen=True)
class Masked:
    """``act`` with entries where ``mask`` is true replaced by -inf (only Softmax may consume this).

    ``mask`` is a constant boolean array, or -- for a mask computed from an input such as BERT's
    ``attention_mask`` -- an activation whose nonzero real values mark the dropped entries.
    """

    act: Act
    mask: np.ndarray | Act


@dataclass(frozen=True)
class DynMask:
    """``factor * src`` with a huge negative factor (``(1 - attention_mask) * finfo.min``): a mask, not data."""

    src: Act
    factor: float


@dataclass(frozen=True)
class Ids:
    """Integer graph input ``name`` (shape ``base``), viewed with ``shape`` after Unsqueeze/Reshape."""

    name: str
    shape: tuple[int, ...]
    base: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DynScale:
    """``scale(act) * factor``: the runtime scale of DynamicQuantizeLinear, made static by calibration."""

    act: Act
    factor: np.ndarray
    what: str = "scale"  # "scale" or "zero_point"


@dataclass(frozen=True)
class IntAcc:
    """An exact integer product ``(x - zp_x) @ W`` (MatMulInteger) waiting for its real scale."""

    act: Act
    weights: np.ndarray  # int64 [K, N], weight zero point already subtracted
    cast: bool = False
    # a permutation of the [..., N] result into the ONNX layout (ConvInteger: act holds the im2col columns
    # channels-last, [N, out..., K]; the result is [N, C_out, out...]); None: the result is the layout
    layout: tuple[int, ...] | None = None
    source: str | None = None  # the quantized activation ``act`` was moved from (whose dynamic scale applies)


@dataclass(frozen=True)
class MaskLengths:
    """A 1-D ``mask_index``: per batch row, the number of ones in the 0/1 attention mask ``mask``.

    What ``ReduceSum(Cast(attention_mask), axis=1)`` and EmbedLayerNormalization's second output
    compute; Attention masks keys at positions ``>= length`` (right padding).
    """

    mask: Ids


Val = Const | QWeight | Act | Masked | DynMask | Ids | DynScale | IntAcc | MaskLengths


def code_type(bits: int, scale: float, zero_point: int, shape: tuple[int, ...]) -> CodeType:
    """A per-tensor code type; the scale is rounded to float32 (every ONNX scale is float32)."""
    return CodeType.per_tensor_type(int(bits), float(np.float32(scale)), int(zero_point), tuple(int(d) for d in shape))


def range_type(lo: float, hi: float, bits: int, shape: tuple[int, ...], symmetric: bool = False) -> CodeType:
    """The code type that covers [lo, hi] and 0 (the MinMax rule of onnxruntime's calibrators).

    ``symmetric`` puts the zero point in the middle (used for signed internals such as x - mean).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    n = (1 << bits) - 1
    if symmetric:
        m = max(abs(lo), abs(hi), 1e-12)
        half = (n + 1) // 2
        return code_type(bits, m / (half - 1), half, shape)
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    scale = float(np.float32((hi - lo) / n))
    zp = int(np.clip(round(-lo / scale), 0, n))
    return code_type(bits, scale, zp, shape)


def onnx_int_bits(dtype: np.dtype) -> tuple[int, bool]:
    """(bits, signed) of an ONNX integer quantization type."""
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        raise ValueError(f"not an integer quantization type: {dt}")
    return dt.itemsize * 8, dt.kind == "i"
