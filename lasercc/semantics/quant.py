"""Real <-> code conversion (docs/contract.md section 2).

real = scale * (code - zero_point); quantization follows ONNX QuantizeLinear exactly as
onnxruntime computes it: saturate(rint(x / scale) + zero_point) with a float32 *division* and
round-half-to-even. ONNX has no activation type wider than 16 bits, so codes of more than 16 bits
divide in float64 (float32 would lose the low bits of the quotient); that choice is part of this
single definition and every backend inherits it.

``quantize`` and ``dequantize`` accept NumPy arrays or torch tensors (see :mod:`._xp`); the
parameters are always formed in NumPy so both namespaces divide by the very same float.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lasercc.semantics._xp import namespace


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
    x: Any,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    bits: int,
    axis: int | None = None,
) -> Any:
    """Quantize real values to int64 codes: clip(rint(x / scale) + zero_point, 0, 2^bits - 1).

    ``x`` may be a NumPy array or a torch tensor; the result is of the same kind.
    """
    xp = namespace(x)
    nftype = np.float32 if bits <= 16 else np.float64
    xa = xp.asarray(x, nftype)
    ax = None if axis is None else axis % max(xa.ndim, 1)
    s = xp.asarray(_broadcast_param(np.asarray(scale, dtype=nftype), xa.ndim, ax))
    z = xp.asarray(_broadcast_param(np.asarray(zero_point, dtype=np.int64), xa.ndim, ax))
    with xp.errstate():
        q = xp.rint(xa / s)
    lo, hi = code_range(bits)
    # clip in float first so that huge quotients (and +-inf) saturate instead of overflowing int64
    q = xp.clip(q, lo - 2.0**33, hi + 2.0**33)
    q = xp.astype(xp.nan_to_zero(q), np.int64) + z
    return xp.clip(q, lo, hi)


def dequantize(
    codes: Any,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    axis: int | None = None,
) -> Any:
    """Real value of codes, as float32 (the type onnxruntime's DequantizeLinear returns)."""
    xp = namespace(codes)
    c = xp.asarray(codes, np.int64)
    ax = None if axis is None else axis % max(c.ndim, 1)
    s = xp.asarray(_broadcast_param(np.asarray(scale, dtype=np.float32), c.ndim, ax))
    z = xp.asarray(_broadcast_param(np.asarray(zero_point, dtype=np.int64), c.ndim, ax))
    return xp.astype(xp.astype(c - z, np.float32) * s, np.float32)
