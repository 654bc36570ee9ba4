"""ASNC segment evaluation on integer codes (LASER Eq. 5-9, App. C; docs/contract.md section 3).

An ASNC table is a piecewise-affine map on the integer input x. It is stored as

* ``thresholds``: the K-1 interior breakpoints b_1 < ... < b_(K-1) (int64). The outer
  breakpoints b_0 (the smallest input) and b_K (one past the largest) are implicit, which lets
  the same rule serve unsigned codes and, after requant->ASNC fusion, signed accumulators.
* ``slopes`` a_i and ``intercepts`` c_i (int64, K of each), and one right ``shift`` k.

Segment i is the one with b_i <= x < b_(i+1), i.e. ``i = #{j : thresholds[j] <= x}`` -- on
hardware a bank of comparators on the MSB-first input. The output code is
``clip((a_i * x + c_i) >> k, 0, 2^out_bits - 1)`` with an arithmetic (floor) shift; a fitter
that wants round-to-nearest folds 2^(k-1) into c_i. The lookup-table form ("ideal SNN", LASER
Table 6) is the special case of one segment per input code with a_i = 0.

Both functions take NumPy arrays or torch tensors (see :mod:`._xp`); tables may stay NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lasercc.semantics._xp import namespace
from lasercc.semantics.quant import code_range


def _consecutive_start(thresholds: Any) -> int | None:
    """``b_1`` when the thresholds are the consecutive integers b_1, b_1 + 1, ..., else None.

    Thresholds are strictly increasing integers (the IR verifier enforces it), so they are
    consecutive exactly when ``b_last - b_1 == count - 1`` -- an O(1) test. That is the lookup-table
    form (one segment per input code), whose segment index is a subtraction instead of a binary search.
    """
    n = len(thresholds)
    if n == 0:
        return None
    first, last = int(thresholds[0]), int(thresholds[n - 1])
    return first if last - first == n - 1 else None


def asnc_segment_index(x: Any, thresholds: Any) -> Any:
    """Index of the segment that holds each input: the number of thresholds <= x.

    For consecutive thresholds b_1 + j (j < n) that count is clip(x - b_1 + 1, 0, n), computed
    directly (same result as the binary search, for every integer x).
    """
    seg = _segments(x, thresholds)
    return seg.copy() if seg is x else seg


def _segments(x: Any, thresholds: Any) -> Any:
    """:func:`asnc_segment_index`, which may return ``x`` itself (a table starting at code 0)."""
    xp = namespace(x, thresholds)
    t = xp.asarray(thresholds, np.int64)
    xa = xp.asarray(x, np.int64)
    start = _consecutive_start(thresholds) if xp.name == "numpy" else None
    if start is not None:
        off = np.int64(start - 1)
        if xa.size and off <= xa.min() and xa.max() <= off + len(t):  # the usual case: codes inside the table
            return xa if off == 0 else xa - off
        return np.clip(xa - off, 0, len(t))
    return xp.astype(xp.searchsorted_right(t, xa), np.int64)


def asnc_evaluate(
    x: Any,
    thresholds: Any,
    slopes: Any,
    intercepts: Any,
    shift: int,
    out_bits: int,
    segment: Any = None,
    clip: bool = True,
) -> Any:
    """Evaluate an ASNC table on integer inputs, returning int64 output codes.

    ``segment`` may be passed when the caller already selected segments (the bit-serial
    comparator of the spiking simulator); it must equal :func:`asnc_segment_index`.
    ``clip=False`` returns ``(a_i * x + c_i) >> k`` before the clip to the output code range: what
    run-time saturation counting (:mod:`lasercc.backends.saturation`) compares against that range.
    """
    xp = namespace(x, thresholds, slopes, intercepts)
    xa = xp.asarray(x, np.int64)
    seg = _segments(xa, thresholds) if segment is None else xp.asarray(segment, np.int64)
    lo, hi = code_range(out_bits)
    if xp.name == "numpy":
        c = np.asarray(intercepts, np.int64)[seg]
        sl = np.asarray(slopes, np.int64)
        # a lookup table (all slopes 0) is just the intercepts: a * x + c == c, skip the product
        y = c if not sl.any() else sl[seg] * xa + c
        y = y >> np.int64(shift) if shift else y
        return np.clip(y, lo, hi) if clip else y
    a = xp.asarray(slopes, np.int64)[seg]
    c = xp.asarray(intercepts, np.int64)[seg]
    y = (a * xa + c) >> int(shift)
    return xp.clip(y, lo, hi) if clip else y


def asnc_table(thresholds: Any, slopes: Any, intercepts: Any, shift: int, out_bits: int, in_bits: int) -> np.ndarray:
    """Output codes of an ASNC table for every input code 0 .. 2^in_bits - 1, as a NumPy int64 array.

    Computed by :func:`asnc_evaluate` itself on all input codes, so ``asnc_table(...)[x]`` equals
    ``asnc_evaluate(x, ...)`` for every code ``x`` of an ``in_bits``-bit type by construction -- no
    second definition of the rule. Why: an executor that meets the same table on every run (the NumPy
    codes mode) replaces the segment search, product, shift and clip by one indexed load. Meant for
    narrow inputs (a 16-bit input makes a 65536-entry table).
    """
    if not 0 < in_bits <= 24:
        raise ValueError(f"asnc_table takes inputs of 1 to 24 bits, got {in_bits}")
    x = np.arange(1 << in_bits, dtype=np.int64)
    return np.asarray(asnc_evaluate(x, np.asarray(thresholds), np.asarray(slopes), np.asarray(intercepts),
                                    shift, out_bits))
