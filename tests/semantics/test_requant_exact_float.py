"""``requantize_exact_f32`` (float32 or float64 accumulators, int64 or float32 codes) is the ``ort`` rule.

The reference is :func:`lasercc.semantics.requantize` on the int64 accumulator (itself checked against
onnxruntime elsewhere), plus an independent re-statement of the rule in float64 arithmetic. Accumulators
sweep whole ranges and the edges: +-(2^24 - 1), +-(2^53 - 1), values just past 2^24 where float32 first
rounds (including exact ties), and products that land on half-integers; scales are per tensor and per
channel, zero points span [lo, hi] and negative values, codes 1 to 24 bits.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.semantics import requantize, requantize_exact_f32, requantize_scale
from lasercc.semantics.quant import code_range


def _both(acc_int, s_in, s_w, s_out, zp, bits, ft):
    """(reference, float32-codes result, int64-codes result) for an exact float accumulator of dtype ft."""
    ref = requantize(acc_int, s_in, s_w, s_out, zp, bits, "ort")
    scale = requantize_scale(s_in, s_w, s_out)
    zp32 = np.asarray(zp, np.float32)
    f = requantize_exact_f32(acc_int.astype(ft), scale, zp32, bits, as_float32=True)
    i = requantize_exact_f32(acc_int.astype(ft), scale, np.asarray(zp, np.int64), bits)
    return ref, f, i


def _independent(acc_int, s_in, s_w, s_out, zp, bits):
    """The rule restated: float32(acc) * float32 scale in float32, round half even, + zp, clip (in float64)."""
    scale = np.float32(np.float32(s_in) * np.asarray(s_w, np.float32)) / np.float32(s_out)
    prod = (acc_int.astype(np.float32) * scale.astype(np.float32)).astype(np.float32)
    lo, hi = code_range(bits)
    return np.clip(np.rint(prod.astype(np.float64)) + np.float64(zp), lo, hi).astype(np.int64)


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([1, 2, 4, 8, 12, 16, 20, 24]),
       per_channel=st.booleans(), wide=st.booleans(), neg_zp=st.booleans())
def test_exact_float_accumulator_equals_int_rule(seed, bits, per_channel, wide, neg_zp):
    rng = np.random.default_rng(seed)
    n = 6
    ft, limit = (np.float64, 2**53) if wide else (np.float32, 2**24)
    mag = int(rng.integers(0, 53 if wide else 24))
    acc = rng.integers(-(2**mag), 2**mag + 1, size=(4, 9, n))
    edges = [limit - 1, -(limit - 1), 0, 1, -1, 2**24 + 1, -(2**24 + 1), 2**24 + 3, 2**25 + 2]
    edges = [e for e in edges if abs(e) < limit]
    acc.flat[: len(edges)] = edges
    lo, hi = code_range(bits)
    zp = -int(rng.integers(0, hi + 1)) if neg_zp else int(rng.integers(lo, hi + 1))
    s_w = np.exp2(rng.uniform(-24, 6, size=n if per_channel else ())).astype(np.float32)
    s_in, s_out = np.float32(np.exp2(rng.uniform(-12, 2))), np.float32(np.exp2(rng.uniform(-12, 4)))
    ref, f, i = _both(acc, s_in, s_w, s_out, zp, bits, ft)
    assert f.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_array_equal(i, ref)
    np.testing.assert_array_equal(f.astype(np.int64), ref)
    np.testing.assert_array_equal(ref, _independent(acc, s_in, s_w, s_out, zp, bits))


@pytest.mark.parametrize("bits,zp", [(8, 128), (8, 0), (16, 32768), (24, 2**23), (4, 15), (8, -3)])
def test_exhaustive_float32_accumulator_range(bits, zp):
    """Every accumulator in [-2^24 + 1, 2^24 - 1] (2^25 values, in slices) with a scale that makes
    half-way products (ties) and saturation at both ends common."""
    s_in, s_w, s_out = np.float32(0.5), np.float32(1.0), np.float32(2.0 ** -(bits - 10) if bits > 10 else 1.0)
    for start in range(-(2**24) + 1, 2**24, 2**22):
        acc = np.arange(start, min(start + 2**22, 2**24), dtype=np.int64)
        ref, f, i = _both(acc, s_in, s_w, s_out, zp, bits, np.float32)
        assert np.array_equal(i, ref) and np.array_equal(f.astype(np.int64), ref)


def test_float64_accumulator_rounds_like_int64_cast_above_2_24():
    """Above 2^24 float32(acc) rounds (ties to even); the float64 route must round identically."""
    base = 2**24
    acc = np.array([base + k for k in range(-4, 9)] + [2**30 + 64, 2**30 + 192, 2**53 - 1, -(2**53) + 1,
                                                       -(2**24) - 1, -(2**24) - 3], np.int64)
    ref, f, i = _both(acc, np.float32(1.0), np.float32(1.0), np.float32(2.0**10), 7, 24, np.float64)
    np.testing.assert_array_equal(i, ref)
    np.testing.assert_array_equal(f.astype(np.int64), ref)
    # the rounding really happens: 2^24 + 1 -> 2^24 (tie to even), 2^24 + 3 -> 2^24 + 4
    assert ref[5] == ref[4] and ref[7] == ref[8]


def test_rejects_integer_accumulators_and_wide_codes():
    with pytest.raises(TypeError):
        requantize_exact_f32(np.arange(3), np.float32(1), 0, 8)
    with pytest.raises(ValueError):
        requantize_exact_f32(np.zeros(3, np.float32), np.float32(1), 0, 25)
