"""Requantization: an exact int64 accumulator to an output code (DESIGN.md section 3).

Two modes, each defined here once:

``ort``
    What onnxruntime's integer kernels (QLinearMatMul, QGemm; MLAS ``MlasRequantizeOutput``) do:
    ``scale = float32(float32(s_in) * float32(s_w) / float32(s_out))`` and
    ``code = clip(rint(float32(acc) * scale) + zp_out, 0, 2^bits - 1)`` with round-half-to-even.
    One IEEE float32 multiply per element, deterministic on every backend. Note that
    ``float32(acc)`` is inexact above 2^24, exactly as in onnxruntime.

``fixed``
    Hardware-realizable integer arithmetic: the same float32 scale becomes an integer multiplier
    ``m < 2^31`` and a right shift ``k`` (``scale ~= m / 2^k``, ``m`` normalised to 31 bits), and
    ``code = clip(floor((acc * m + 2^(k-1)) / 2^k) + zp_out, 0, 2^bits - 1)``: round half *up*
    (towards +inf), which is an add and an arithmetic shift on any integer core. The product is
    computed exactly without 128-bit integers (see :func:`_mul_shift_round`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lasercc.semantics.quant import code_range

RequantMode = Literal["ort", "fixed"]
MULTIPLIER_BITS = 31
_ACC_LIMIT = 1 << 46  # |acc| beyond this cannot occur in a valid graph (verifier bounds it)


def requantize_scale(scale_in: np.ndarray | float, scale_w: np.ndarray | float, scale_out: np.ndarray | float):
    """The float32 requantization scale exactly as onnxruntime forms it: (s_in * s_w) / s_out."""
    a = np.asarray(scale_in, dtype=np.float32)
    w = np.asarray(scale_w, dtype=np.float32)
    y = np.asarray(scale_out, dtype=np.float32)
    return ((a * w).astype(np.float32) / y).astype(np.float32)


def fixed_multiplier(scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Integer multiplier m (< 2^31) and shift k with scale ~= m / 2^k, elementwise.

    m is normalised into [2^30, 2^31) when the shift allows, so the relative error of the scale
    is below 2^-30. Shifts are limited to [0, 62]; scales below 2^-32 map to m = 0 (output is the
    zero point for every accumulator that can occur).
    """
    s = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("requantization scale must be finite and positive")
    _, e = np.frexp(s)  # s = f * 2^e, f in [0.5, 1)
    k = np.clip(MULTIPLIER_BITS - e, 0, 62).astype(np.int64)
    m = np.rint(s * np.exp2(k.astype(np.float64))).astype(np.int64)
    # rounding can reach 2^31 exactly: renormalise
    over = m >= (1 << MULTIPLIER_BITS)
    if np.any(over):
        m = np.where(over, (m + 1) >> 1, m)
        k = np.where(over, k - 1, k)
    return m, k


def _mul_shift_round(acc: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Exact floor((acc * m + 2^(k-1)) / 2^k) in int64 for |acc| < 2^46, 0 <= m < 2^31, k in [0, 62].

    acc*m can need 77 bits, so m is split into 16-bit halves: with m = mh*2^16 + ml,
    floor((acc*mh*2^16 + acc*ml + r) / 2^k) = floor((acc*mh + floor((acc*ml + r) / 2^16)) / 2^(k-16))
    for k >= 16 (nested floors with integer divisors are exact). For k < 16 the scale is at least
    2^15, so the caller has already clipped acc to a range where the direct product fits.
    """
    acc, m, k = np.broadcast_arrays(acc.astype(np.int64), m.astype(np.int64), k.astype(np.int64))
    out = np.empty(acc.shape, dtype=np.int64)
    big = k >= 16
    if np.any(big):
        a, mm, kk = acc[big], m[big], k[big]
        r = np.int64(1) << (kk - 1)
        mh, ml = mm >> 16, mm & 0xFFFF
        low = (a * ml + r) >> 16
        out[big] = (a * mh + low) >> (kk - 16)
    small = ~big
    if np.any(small):
        a, mm, kk = acc[small], m[small], k[small]
        r = np.where(kk > 0, np.int64(1) << np.maximum(kk - 1, 0), 0)
        out[small] = (a * mm + r) >> kk
    return out


def requantize(
    acc: np.ndarray,
    scale_in: np.ndarray | float,
    scale_w: np.ndarray | float,
    scale_out: np.ndarray | float,
    zero_point_out: np.ndarray | int,
    bits: int,
    mode: RequantMode = "ort",
) -> np.ndarray:
    """Map an exact integer accumulator to unsigned ``bits``-bit output codes (int64).

    Scales and the zero point broadcast against ``acc`` with NumPy rules, so a per-output-channel
    weight scale is an array over the last axis.
    """
    lo, hi = code_range(bits)
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise TypeError(f"accumulator must be integer, got {a.dtype}")
    a = a.astype(np.int64, copy=False)
    scale = requantize_scale(scale_in, scale_w, scale_out)
    zp = np.asarray(zero_point_out, dtype=np.int64)
    if mode == "ort":
        y = np.rint(a.astype(np.float32) * scale)
        y = np.clip(y, lo - 2.0**33, hi + 2.0**33).astype(np.int64) + zp
        return np.clip(y, lo, hi)
    if mode == "fixed":
        m, k = fixed_multiplier(scale)
        # Any |acc| * scale > 2^34 saturates; clip so the exact product below cannot overflow.
        bound = np.minimum(np.ceil(2.0**34 / scale.astype(np.float64)), float(_ACC_LIMIT)).astype(np.int64)
        a = np.clip(a, -bound, bound)
        y = _mul_shift_round(a, m, k) + zp
        return np.clip(y, lo, hi)
    raise ValueError(f"unknown requantization mode {mode!r} (expected 'ort' or 'fixed')")
