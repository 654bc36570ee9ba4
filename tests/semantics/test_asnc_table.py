"""``asnc_table`` tabulates :func:`asnc_evaluate` for every input code, and a lookup in it equals the rule.

Checked exhaustively (every input code) against an independent restatement of the ASNC rule
(segment = number of thresholds <= x, then clip((a x + c) >> k)) for lookup tables and
piecewise-affine tables, 1- to 16-bit inputs, 1- to 24-bit outputs, shifts and negative intercepts.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.semantics.asnc import asnc_evaluate, asnc_table
from lasercc.semantics.quant import code_range


def _rule(x, thr, slopes, intercepts, shift, out_bits):
    seg = np.searchsorted(np.asarray(thr, np.int64), x, side="right")
    lo, hi = code_range(out_bits)
    return np.clip((np.asarray(slopes, np.int64)[seg] * x + np.asarray(intercepts, np.int64)[seg]) >> shift, lo, hi)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), in_bits=st.sampled_from([1, 2, 4, 8, 12, 16]),
       out_bits=st.sampled_from([1, 4, 8, 16, 24]), shift=st.integers(0, 12), lut=st.booleans())
def test_table_equals_rule_on_every_input_code(seed, in_bits, out_bits, shift, lut):
    rng = np.random.default_rng(seed)
    n = 1 << in_bits
    if lut:
        thr = np.arange(1, n, dtype=np.int64)
        slopes = np.zeros(n, np.int64)
    else:
        k = int(rng.integers(0, min(n, 40)))
        thr = np.unique(rng.integers(-5, n + 5, size=k)).astype(np.int64)
        slopes = rng.integers(-(1 << 8), 1 << 8, size=thr.size + 1)
    span = 1 << (out_bits + shift + 1)
    intercepts = rng.integers(-span, span, size=thr.size + 1)
    table = asnc_table(thr, slopes, intercepts, shift, out_bits, in_bits)
    x = np.arange(n, dtype=np.int64)
    assert table.dtype == np.int64 and table.shape == (n,)
    np.testing.assert_array_equal(table, _rule(x, thr, slopes, intercepts, shift, out_bits))
    xs = rng.integers(0, n, size=(3, 17))
    np.testing.assert_array_equal(table[xs], asnc_evaluate(xs, thr, slopes, intercepts, shift, out_bits))


def test_table_rejects_inputs_too_wide():
    with pytest.raises(ValueError):
        asnc_table(np.arange(1, 3), np.zeros(3, np.int64), np.zeros(3, np.int64), 0, 8, 25)
