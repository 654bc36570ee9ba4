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

Both functions take NumPy arrays or torch tensors (see :mod:`._xp`); tables may stay NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lasercc.semantics._xp import namespace
from lasercc.semantics.quant import code_range


def asnc_segment_index(x: Any, thresholds: Any) -> Any:
    """Index of the segment that holds each input: the number of thresholds <= x."""
    xp = namespace(x, thresholds)
    t = xp.asarray(thresholds, np.int64)
    return xp.astype(xp.searchsorted_right(t, xp.asarray(x, np.int64)), np.int64)


def asnc_evaluate(
    x: Any,
    thresholds: Any,
    slopes: Any,
    intercepts: Any,
    shift: int,
    out_bits: int,
    segment: Any = None,
) -> Any:
    """Evaluate an ASNC table on integer inputs, returning int64 output codes.

    ``segment`` may be passed when the caller already selected segments (the bit-serial
    comparator of the spiking simulator); it must equal :func:`asnc_segment_index`.
    """
    xp = namespace(x, thresholds, slopes, intercepts)
    xa = xp.asarray(x, np.int64)
    seg = asnc_segment_index(xa, thresholds) if segment is None else xp.asarray(segment, np.int64)
    a = xp.asarray(slopes, np.int64)[seg]
    c = xp.asarray(intercepts, np.int64)[seg]
    y = (a * xa + c) >> np.int64(shift) if xp.name == "numpy" else (a * xa + c) >> int(shift)
    lo, hi = code_range(out_bits)
    return xp.clip(y, lo, hi)
