"""Real <-> code conversion (DESIGN.md section 2).

real = scale * (code - zero_point); quantization follows ONNX QuantizeLinear exactly as
onnxruntime computes it: saturate(rint(x / scale) + zero_point) with a float32 *division* and
round-half-to-even. ONNX has no activation type wider than 16 bits, so codes of more than 16 bits
divide in float64 (float32 would lose the low bits of the quotient); that choice is part of this
single definition and every backend inherits it.
"""

from __future__ import annotations

import numpy as np


def code_range(bits: int) -> tuple[int, int]:
    """Inclusive range of an unsigned ``bits``-bit code."""
    return 0, (1 << int(bits)) - 1


def _broadcast_param(p: np.ndarray | float | int, ndim: int, axis: int | None) -> np.ndarray:
    arr = np.asarray(p)
    if axis is None or arr.ndim == 0 or arr.size == 1:
        return arr.reshape(())
    shape = [1] * ndim
    shape[axis] = arr.size
    return arr.reshape(shape)


def quantize(
    x: np.ndarray,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    bits: int,
    axis: int | None = None,
) -> np.ndarray:
    """Quantize real values to int64 codes: clip(rint(x / scale) + zero_point, 0, 2^bits - 1)."""
    ftype = np.float32 if bits <= 16 else np.float64
    xa = np.asarray(x, dtype=ftype)
    ax = None if axis is None else axis % max(xa.ndim, 1)
    s = _broadcast_param(np.asarray(scale, dtype=ftype), xa.ndim, ax)
    z = _broadcast_param(np.asarray(zero_point, dtype=np.int64), xa.ndim, ax)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(xa / s)
    lo, hi = code_range(bits)
    # clip in float first so that huge quotients (and +-inf) saturate instead of overflowing int64
    q = np.clip(q, lo - 2.0**33, hi + 2.0**33)
    q = np.nan_to_num(q, nan=0.0).astype(np.int64) + z
    return np.clip(q, lo, hi)


def dequantize(
    codes: np.ndarray,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    axis: int | None = None,
) -> np.ndarray:
    """Real value of codes, as float32 (the type onnxruntime's DequantizeLinear returns)."""
    c = np.asarray(codes, dtype=np.int64)
    ax = None if axis is None else axis % max(c.ndim, 1)
    s = _broadcast_param(np.asarray(scale, dtype=np.float32), c.ndim, ax)
    z = _broadcast_param(np.asarray(zero_point, dtype=np.int64), c.ndim, ax)
    return ((c - z).astype(np.float32) * s).astype(np.float32)
