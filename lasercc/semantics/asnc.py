"""ASNC segment evaluation on integer codes (LASER Eq. 5-9, App. C; DESIGN.md section 3).

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
"""

from __future__ import annotations

import numpy as np

from lasercc.semantics.quant import code_range


def asnc_segment_index(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the segment that holds each input: the number of thresholds <= x."""
    t = np.asarray(thresholds, dtype=np.int64)
    return np.searchsorted(t, np.asarray(x, dtype=np.int64), side="right").astype(np.int64)


def asnc_evaluate(
    x: np.ndarray,
    thresholds: np.ndarray,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    shift: int,
    out_bits: int,
    segment: np.ndarray | None = None,
) -> np.ndarray:
    """Evaluate an ASNC table on integer inputs, returning int64 output codes.

    ``segment`` may be passed when the caller already selected segments (the bit-serial
    comparator of the spiking simulator); it must equal :func:`asnc_segment_index`.
    """
    xa = np.asarray(x, dtype=np.int64)
    seg = asnc_segment_index(xa, thresholds) if segment is None else np.asarray(segment, dtype=np.int64)
    a = np.asarray(slopes, dtype=np.int64)[seg]
    c = np.asarray(intercepts, dtype=np.int64)[seg]
    y = (a * xa + c) >> np.int64(shift)
    lo, hi = code_range(out_bits)
    return np.clip(y, lo, hi)
