"""Block-wise low-bit weights: com.microsoft ``MatMulNBits`` and blocked / 4-bit ``DequantizeLinear`` weights.

``MatMulNBits`` is what onnxruntime's ``MatMulNBitsQuantizer`` (ORT GenAI, Olive) writes for LLMs: ``Y = A @
dequant(B)`` with B stored per output column in blocks of ``block_size`` values along K, each block with its
own float scale and (optional) ``bits``-wide zero point. A spiking Soma has one scale per output channel, so
a block-wise weight cannot be kept as integers in general. The handler therefore:

1. dequantizes B exactly as onnxruntime does, ``(float(q) - float(zp)) * scale`` in float32
   (:func:`dequantize_nbits`; checked against onnxruntime itself in tests/frontends/test_quant_tools.py);
2. when every column has a single block (``block_size >= K``: a per-channel weight), keeps the integers
   and the per-column scales unchanged -- lossless (:func:`single_block_weight`);
3. otherwise lowers it like a float weight: ``ops_linear.weight_ints`` re-quantizes it symmetrically per
   output channel at ``Options.weight_bits`` (8). This is LOSSY: a column of 4-bit blocks with different
   scales does not lie on one 8-bit grid. Measured (bench/quant_tools.py, tiny_gpt / tiny_llama, 4-bit,
   block 16): the 8-bit weights differ from the 4-bit ones by 0.5-0.6 % relative RMS (worst layer); the
   logits stay at cosine 0.9995-0.9997 against onnxruntime running the same model -- the same as the
   float model compiled by lasercc (8-bit activations dominate) -- while the 4-bit quantization itself
   costs 0.996 against the float model.

``accuracy_level`` 4 makes onnxruntime quantize A to int8 per block at run time; lasercc quantizes A per
tensor from calibration instead, so such models match onnxruntime only as closely as that allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

from lasercc.frontends.onnx.values import Const, QWeight, Val

NBITS = (2, 4, 8)  # the widths onnxruntime's CPU MatMulNBits kernel accepts


def widen_int(q: np.ndarray) -> np.ndarray:
    """ONNX int4/uint4 initializers load as ``ml_dtypes`` (u)int4 arrays (numpy kind 'V'): as (u)int8."""
    q = np.asarray(q)
    if q.dtype.kind in "iu":
        return q
    name = q.dtype.name
    if name in ("int4", "int2"):
        return q.astype(np.int8)
    if name in ("uint4", "uint2"):
        return q.astype(np.uint8)
    raise FrontendError(f"quantized weights of dtype {name} are not supported (integers up to 32 bits only)")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` ``bits``-wide codes of each row of ``packed`` (uint8), low bits first."""
    per = 8 // bits
    p = np.asarray(packed, np.uint8)
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    codes = (p[..., :, None] >> shifts) & np.uint8((1 << bits) - 1)
    codes = codes.reshape(p.shape[:-1] + (p.shape[-1] * per,))
    if codes.shape[-1] < count:
        raise FrontendError(f"packed data holds {codes.shape[-1]} codes per row, {count} needed")
    return codes[..., :count]


def check_layout(bits: int, block_size: int) -> None:
    if bits not in NBITS:
        raise FrontendError(f"MatMulNBits with bits={bits} is not supported (onnxruntime's CPU kernel takes {NBITS})")
    if block_size < 16 or block_size & (block_size - 1):
        raise FrontendError(f"MatMulNBits block_size must be a power of two >= 16, got {block_size}")


def dequantize_nbits(b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int, n: int, bits: int,
                     block_size: int) -> np.ndarray:
    """MatMulNBits' B as the float32 [K, N] matrix onnxruntime multiplies by.

    ``b``: uint8 [N, n_blocks, block_size*bits/8]; ``scales``: [N, n_blocks] (or flat); ``zero_points``:
    uint8 packed ``bits``-wide per column ([N, ceil(n_blocks*bits/8)], or flat), or unpacked floats of the
    scales' shape, or absent (then ``2^(bits-1)``). Matches onnxruntime 1.32's CPU kernel to the bit.
    """
    check_layout(bits, block_size)
    n_blocks = -(-k // block_size)
    q = unpack_bits(np.asarray(b).reshape(n, -1), bits, n_blocks * block_size).reshape(n, n_blocks, block_size)
    s = np.asarray(scales, np.float32).reshape(n, n_blocks)
    if zero_points is None:
        z = np.full((n, n_blocks), float(1 << (bits - 1)), np.float32)
    elif np.asarray(zero_points).dtype.kind == "f":
        # Float zero points: onnxruntime computes q*s + (-(zp*s)), each product rounded to float32.
        zf = np.asarray(zero_points, np.float32).reshape(n, n_blocks)
        qf = q.astype(np.float32)
        w = qf * s[:, :, None] + (-(zf * s))[:, :, None]
        return np.ascontiguousarray(w.reshape(n, -1)[:, :k].T.astype(np.float32))
    else:
        zp = np.asarray(zero_points, np.uint8).reshape(n, -1)
        z = unpack_bits(zp, bits, n_blocks).astype(np.float32)
    qk = q.reshape(n, n_blocks * block_size)[:, :k].astype(np.float32)  # [N, K]
    blk = np.arange(k) // block_size
    w = (qk - z[:, blk]) * s[:, blk]  # float32 throughout, as onnxruntime's dequantization
    return np.ascontiguousarray(w.T.astype(np.float32))


def single_block_weight(b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int, n: int,
                        bits: int) -> QWeight | None:
    """A one-block-per-column B (``block_size >= K``) as exact integers with per-column scales, else None."""
    if np.asarray(scales).size != n or (zero_points is not None and np.asarray(zero_points).dtype.kind == "f"):
        return None
    q = unpack_bits(np.asarray(b).reshape(n, -1), bits, k).T.astype(np.int64)  # [K, N]
    if zero_points is None:
        z = np.full(n, 1 << (bits - 1), np.int64)
    else:
        z = unpack_bits(np.asarray(zero_points, np.uint8).reshape(n, -1), bits, 1).reshape(n).astype(np.int64)
    return signed_weight(q - z, np.asarray(scales, np.float32).reshape(n))


def signed_weight(q: np.ndarray, scale: np.ndarray) -> QWeight:
    """Integers ``q`` [K, N] (zero point removed) with per-column ``scale`` as a QWeight with positive scales.

    Why: onnxruntime's symmetric block quantizer stores ``max|w| / -8`` -- negative scales, to use the
    code -8 -- and a Soma's scales must be positive; ``q * s == (-q) * (-s)`` exactly. An all-zero
    column (scale 0) gets scale 1 and zero weights.
    """
    s = np.asarray(scale, np.float32).reshape(-1)
    sign = np.where(s < 0, -1, 1).astype(np.int64)
    qs = (np.asarray(q, np.int64) * sign[None, :]) * (s != 0)[None, :]
    return QWeight(qs.astype(np.int16), np.where(s != 0, np.abs(s), np.float32(1)).astype(np.float32),
                   np.zeros(s.size, np.int16), 1)


def dequantize_blocked(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int,
                       block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21) with ``block_size``: element i along ``axis`` uses block i // size."""
    qi = widen_int(q)
    ax = axis % qi.ndim
    s = np.asarray(scale, np.float32)
    z = np.zeros(s.shape, np.int64) if zero_point is None else widen_int(zero_point).astype(np.int64)
    if s.ndim != qi.ndim or s.shape[ax] != -(-qi.shape[ax] // block_size):
        raise FrontendError(f"blocked DequantizeLinear: scale shape {list(s.shape)} does not fit data "
                            f"{list(qi.shape)} with block_size {block_size} on axis {ax}")
    idx = np.arange(qi.shape[ax]) // block_size
    s, z = np.take(s, idx, axis=ax), np.take(z, idx, axis=ax)
    return ((qi.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def blocked_weight(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int,
                   block_size: int) -> Val:
    """What a blocked DequantizeLinear of a constant is: exact integers when each slice is one block, else float."""
    qi = widen_int(q)
    ax = axis % qi.ndim
    s = np.asarray(scale, np.float32)
    if qi.ndim == 2 and s.shape[ax] == 1:  # one block spans the axis: per-channel along the other axis
        z = np.zeros(s.size, np.int64) if zero_point is None else widen_int(zero_point).astype(np.int64).reshape(-1)
        qc = qi.astype(np.int64) - (z[None, :] if ax == 0 else z[:, None])
        if ax == 0:
            return signed_weight(qc, s)
        w = signed_weight(qc.T, s)
        return QWeight(w.q.T, w.scale, w.zero_point, 0)
    return Const(dequantize_blocked(qi, s, zero_point, ax, block_size))


def const_or_none(L: Lowerer, v: Val | None, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if not isinstance(v, Const):
        raise FrontendError(f"MatMulNBits {what} must be a constant")
    return np.asarray(v.value)



def dequantize_weight(L: Lowerer, n: onnx.NodeProto, ins: list) -> Val | None:
    """``DequantizeLinear`` of a constant that ops_elementwise's handler does not take: 4-bit (``ml_dtypes``)
    integers and/or ``block_size`` (opset 21; onnxruntime's ``MatMulNBitsQuantizer`` QDQ output). None when
    the node is not such a case (an activation, or a plain 8/16/32-bit per-tensor/per-axis weight)."""
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else None
    block = int(attr(n, "block_size", 0) or 0)
    if not isinstance(x, Const) or (x.value.dtype.kind in "iu" and not block):
        return None
    q = widen_int(x.value)
    sv = np.asarray(L.const_value(s, "scale"), np.float32)
    zv = None if z is None else np.asarray(z.value if isinstance(z, Const) else L.const_value(z, "zero point"))
    axis = int(attr(n, "axis", 1))
    if block:
        return blocked_weight(q, sv, zv, axis, block)
    zi = np.zeros(sv.shape, np.int64) if zv is None else widen_int(zv).astype(np.int64)
    ax = axis % q.ndim if sv.size > 1 else None
    return QWeight(q, sv.reshape(-1), zi.reshape(-1), ax)
