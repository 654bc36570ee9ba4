"""Requantization: an exact int64 accumulator to an output code (docs/contract.md section 3).

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

``requantize`` accepts a NumPy array or a torch tensor accumulator (see :mod:`._xp`) and runs the
same operations on either: the scale, multiplier and shift are always derived in NumPy from the
node's parameters, then applied to the data in its own namespace.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np

from lasercc.semantics._xp import NumpyOps, TorchOps, namespace
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


def _mul_shift_round(acc: Any, m: np.ndarray, k: np.ndarray, xp: NumpyOps | TorchOps | None = None) -> Any:
    """Exact floor((acc * m + 2^(k-1)) / 2^k) in int64 for |acc| < 2^46, 0 <= m < 2^31, k in [0, 62].

    acc*m can need 77 bits, so m is split into 16-bit halves: with m = mh*2^16 + ml,
    floor((acc*mh*2^16 + acc*ml + r) / 2^k) = floor((acc*mh + floor((acc*ml + r) / 2^16)) / 2^(k-16))
    for k >= 16 (nested floors with integer divisors are exact). For k < 16 the scale is at least
    2^15, so the caller has already clipped acc to a range where the direct product fits.

    ``m`` and ``k`` are NumPy parameter arrays that broadcast against ``acc``. When every shift is
    on the same side of 16 (the usual case: one scale per tensor or per channel) the formula is
    applied to the whole array; element masks are used only for mixed shifts.
    """
    xp = xp or namespace(acc)
    m = np.asarray(m, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    a = xp.asarray(acc, np.int64)

    def big(a: Any, mm: np.ndarray, kk: np.ndarray) -> Any:
        r = xp.asarray(np.int64(1) << (kk - 1))
        mh, ml = xp.asarray(mm >> 16), xp.asarray(mm & 0xFFFF)
        low = (a * ml + r) >> 16
        return (a * mh + low) >> xp.asarray(kk - 16)

    def small(a: Any, mm: np.ndarray, kk: np.ndarray) -> Any:
        r = xp.asarray(np.where(kk > 0, np.int64(1) << np.maximum(kk - 1, 0), 0).astype(np.int64))
        return (a * xp.asarray(mm) + r) >> xp.asarray(kk)

    is_big = k >= 16
    if is_big.all():
        return big(a, m, k)
    if not is_big.any():
        return small(a, m, k)
    shape = np.broadcast_shapes(tuple(a.shape), m.shape, k.shape)
    a = a + xp.zeros(shape, np.int64)  # broadcast the data to the common shape
    mb, kb = np.broadcast_to(m, shape), np.broadcast_to(k, shape)
    bb = kb >= 16
    sel = xp.asarray(bb)
    out = xp.empty(shape, np.int64)
    out[sel] = big(a[sel], mb[bb], kb[bb])
    out[~sel] = small(a[~sel], mb[~bb], kb[~bb])
    return out


def requantize_exact_f32(acc: np.ndarray, scale: np.ndarray, zero_point_out: np.ndarray, bits: int,
                         as_float32: bool = False) -> np.ndarray:
    """``ort``-mode requantization of an accumulator already held exactly in float32 (NumPy only).

    Precondition (the caller proves it from operand bounds): ``acc`` is integer-valued float32 with
    ``|acc| < 2^24``, so ``acc == float32(int_acc)`` bit for bit and this returns exactly
    ``requantize(int_acc, ..., mode="ort")``: the same float32 multiply by the same ``scale``
    (:func:`requantize_scale`), round half to even, zero point and clip. It exists so a matmul done
    in float32 BLAS need not round-trip through int64 before its requantization; ``acc`` is
    overwritten (it is a temporary of the caller).

    ``acc`` may instead be integer-valued float64 with ``|acc| < 2^53`` (products and sums of
    integers stay exact in float64 up to 2^53). Then its first step is the cast to float32: IEEE
    conversion rounds to nearest-even, so ``float32(acc64)`` is the correctly rounded float32 of the
    same integer -- bit for bit the rule's ``float32(int_acc)`` (which NumPy's int64 cast also rounds
    correctly), inexact above 2^24 exactly as in onnxruntime.

    With ``as_float32`` the codes are returned as float32 instead of int64 -- the same integers, since
    every code of at most 24 bits is exact in float32 (the NumPy executor that keeps codes in float32
    between nodes uses it, saving a conversion per node). Why the steps below equal the ``ort`` rule:
    ``rint`` yields an integer r; ``lo``, ``hi`` and ``zp`` are exact in float32; ``fl(r + zp)`` is exact
    whenever ``|r + zp| <= 2^24`` and otherwise rounds to a value still beyond ``hi`` (or below ``lo``),
    because rounding is monotonic -- so the clip gives ``clip(r + zp, lo, hi)`` exactly.
    """
    lo, hi = _f32_code_range(bits)
    if acc.dtype == np.float64:
        acc = acc.astype(np.float32)
    elif acc.dtype != np.float32:
        raise TypeError(f"requantize_exact_f32 takes a float32 or float64 accumulator, got {acc.dtype}")
    y = np.multiply(acc, scale, out=acc)
    np.rint(y, out=y)
    y += zero_point_out if isinstance(zero_point_out, np.ndarray) and zero_point_out.dtype == np.float32 \
        else np.asarray(zero_point_out, dtype=np.float32)
    y.clip(lo, hi, out=y)  # the method: np.clip's extra Python layers cost more than the work on small arrays
    return y if as_float32 else y.astype(np.int64)


@functools.lru_cache(maxsize=64)
def _f32_code_range(bits: int) -> tuple[np.float32, np.float32]:
    """The code range of ``bits`` as float32 scalars (a Python int bound picks a slower clip loop); it must
    lie within [-2^24, 2^24], where float32 is exact."""
    lo, hi = code_range(bits)
    if not (-(2**24) <= lo and hi <= 2**24):
        raise ValueError(f"requantize_exact_f32 supports code ranges within 2^24, got {bits} bits")
    return np.float32(lo), np.float32(hi)


def requantize(
    acc: Any,
    scale_in: np.ndarray | float,
    scale_w: np.ndarray | float,
    scale_out: np.ndarray | float,
    zero_point_out: np.ndarray | int,
    bits: int,
    mode: RequantMode = "ort",
) -> Any:
    """Map an exact integer accumulator to unsigned ``bits``-bit output codes (int64).

    Scales and the zero point broadcast against ``acc`` with NumPy rules, so a per-output-channel
    weight scale is an array over the last axis. ``acc`` may be a NumPy array or a torch tensor;
    the result is of the same kind.
    """
    lo, hi = code_range(bits)
    xp = namespace(acc)
    a = xp.asarray(acc)
    if not xp.is_integer(a):
        raise TypeError(f"accumulator must be integer, got {a.dtype}")
    a = xp.asarray(a, np.int64)
    scale = requantize_scale(scale_in, scale_w, scale_out)
    zp = xp.asarray(np.asarray(zero_point_out, dtype=np.int64))
    if mode == "ort":
        if xp.name == "numpy" and -(2**24) <= lo and hi <= 2**24:
            # Same codes in fewer passes: r = rint(f32(acc) * scale) is integer-valued; lo, hi and zp are
            # exact in float32 and rounding is monotonic, so clip(fl(r + zp), lo, hi) == clip(r + zp, lo, hi)
            # (an inexact sum lies beyond 2^24 > hi, or below -2^24 < lo, and saturates either way).
            y = np.rint(a.astype(np.float32) * scale) + zp.astype(np.float32)
            return np.clip(y, lo, hi, out=y).astype(np.int64)
        y = xp.rint(xp.astype(a, np.float32) * xp.asarray(scale))
        y = xp.astype(xp.clip(y, lo - 2.0**33, hi + 2.0**33), np.int64) + zp
        return xp.clip(y, lo, hi)
    if mode == "fixed":
        m, k = fixed_multiplier(scale)
        # Any |acc| * scale > 2^34 saturates; clip so the exact product below cannot overflow.
        bound = np.minimum(np.ceil(2.0**34 / scale.astype(np.float64)), float(_ACC_LIMIT)).astype(np.int64)
        a = xp.clip(a, -bound, bound)
        y = _mul_shift_round(a, m, k, xp) + zp
        return xp.clip(y, lo, hi)
    raise ValueError(f"unknown requantization mode {mode!r} (expected 'ort' or 'fixed')")
