"""The semantics functions give the same bits for NumPy arrays and torch tensors.

The torch executor calls the very functions in :mod:`lasercc.semantics`; these tests prove that
the array-namespace layer does not change a bit, on random data and on the edge cases that break
ports: ties at .5, +-inf and NaN, saturation, 32-bit codes, and accumulators near 2^46 in the
``fixed`` mode (checked against exact Python big-integer arithmetic, an independent reference).
"""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.semantics import (
    asnc_evaluate,
    bse_decode,
    bse_encode,
    bse_encode_if,
    dequantize,
    fixed_multiplier,
    quantize,
    requantize,
    requantize_scale,
)

torch = pytest.importorskip("torch")

ACC_MAX = (1 << 46) - 1


def _t(a: np.ndarray):
    return torch.from_numpy(np.array(a))


def _same(np_out, torch_out) -> None:
    assert isinstance(torch_out, torch.Tensor)
    got = torch_out.numpy()
    assert got.dtype == np_out.dtype
    np.testing.assert_array_equal(got, np_out)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), bits=st.integers(2, 32), per_axis=st.booleans())
def test_quantize_numpy_equals_torch(seed: int, bits: int, per_axis: bool) -> None:
    rng = np.random.default_rng(seed)
    scale = (10 ** rng.uniform(-3, 1, size=6 if per_axis else 1)).astype(np.float32)
    zp = rng.integers(0, 2**bits, size=scale.shape)
    x = (rng.standard_normal((5, 6)) * float(scale.max()) * 2.0 ** rng.integers(0, bits + 2)).astype(np.float32)
    # exact ties at .5 (x / scale lands on k + 0.5 for a power-of-two scale), infinities, NaN
    x[0, :4] = np.array([0.5, 1.5, 2.5, -0.5], np.float32)
    x[1, :3] = [np.inf, -np.inf, np.nan]
    x[2, :2] = [3e38, -3e38]
    axis = 1 if per_axis else None
    s, z = (scale, zp) if per_axis else (scale[0], int(zp[0]))
    ref = quantize(x, s, z, bits, axis)
    _same(ref, quantize(_t(x), s, z, bits, axis))
    _same(dequantize(ref, s, z, axis), dequantize(_t(ref), s, z, axis))


def test_quantize_ties_round_half_to_even_in_torch() -> None:
    x = np.array([0.5, 1.5, 2.5, 3.5, -1.5], np.float32)
    got = quantize(_t(x), 1.0, 8, 8).numpy()
    np.testing.assert_array_equal(got, np.array([0, 2, 2, 4, -2]) + 8)


def _fixed_reference(acc: np.ndarray, scale: np.ndarray, zp: int, bits: int) -> np.ndarray:
    """The fixed mode with Python big integers: clip(floor((acc*m + 2^(k-1)) / 2^k) + zp)."""
    m, k = fixed_multiplier(scale)
    m, k = np.broadcast_to(m, acc.shape), np.broadcast_to(k, acc.shape)
    out = np.empty(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        mi, ki, a = int(m[idx]), int(k[idx]), int(acc[idx])
        r = (1 << (ki - 1)) if ki > 0 else 0
        out[idx] = min(max(((a * mi + r) >> ki) + zp, 0), (1 << bits) - 1)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), bits=st.integers(2, 32), acc_bits=st.integers(1, 46),
       per_channel=st.booleans())
def test_requantize_numpy_equals_torch(seed: int, bits: int, acc_bits: int, per_channel: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    acc = rng.integers(-(2**acc_bits) + 1, 2**acc_bits, size=(4, n), dtype=np.int64)
    acc[0, :2] = [ACC_MAX, -ACC_MAX]  # the largest accumulators a valid graph can produce
    s_in = float(np.float32(10 ** rng.uniform(-6, 2)))
    s_w = (10 ** rng.uniform(-3, 1, size=n if per_channel else 1)).astype(np.float32)
    s_out = float(np.float32(10 ** rng.uniform(-3, 3)))
    zp = int(rng.integers(0, 2**bits))
    for mode in ("ort", "fixed"):
        ref = requantize(acc, s_in, s_w, s_out, zp, bits, mode)
        _same(ref, requantize(_t(acc), s_in, s_w, s_out, zp, bits, mode))
    scale = requantize_scale(s_in, s_w, s_out)
    np.testing.assert_array_equal(requantize(_t(acc), s_in, s_w, s_out, zp, bits, "fixed").numpy(),
                                  _fixed_reference(acc, scale, zp, bits))


def test_requantize_ties_and_saturation() -> None:
    acc = np.array([1, 3, 5, -1, -3, 2**40, -(2**40), 0], np.int64)
    for mode in ("ort", "fixed"):
        ref = requantize(acc, 0.5, 1.0, 1.0, 128, 8, mode)
        _same(ref, requantize(_t(acc), 0.5, 1.0, 1.0, 128, 8, mode))
    # ort: half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2); fixed: half up (0.5 -> 1, 1.5 -> 2, 2.5 -> 3)
    np.testing.assert_array_equal(requantize(_t(acc), 0.5, 1.0, 1.0, 128, 8, "ort").numpy(),
                                  [128, 130, 130, 128, 126, 255, 0, 128])
    np.testing.assert_array_equal(requantize(_t(acc), 0.5, 1.0, 1.0, 128, 8, "fixed").numpy(),
                                  [129, 130, 131, 128, 127, 255, 0, 128])


def test_requantize_mixed_shifts_per_channel() -> None:
    """Channels whose fixed-point shift is below 16 and above it in one tensor (the masked path)."""
    rng = np.random.default_rng(3)
    s_w = np.array([2.0**20, 1e-3, 3.0, 2.0**17, 7e-9], np.float32)
    acc = rng.integers(-(2**30), 2**30, size=(50, 5), dtype=np.int64)
    ref = requantize(acc, 1.0, s_w, 1.0, 1 << 15, 16, "fixed")
    _same(ref, requantize(_t(acc), 1.0, s_w, 1.0, 1 << 15, 16, "fixed"))
    np.testing.assert_array_equal(ref, _fixed_reference(acc, requantize_scale(1.0, s_w, 1.0), 1 << 15, 16))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), in_bits=st.integers(2, 16), out_bits=st.integers(2, 16),
       segments=st.integers(1, 12), shift=st.integers(0, 20))
def test_asnc_numpy_equals_torch_and_bisect(seed: int, in_bits: int, out_bits: int, segments: int,
                                            shift: int) -> None:
    rng = np.random.default_rng(seed)
    thr = np.unique(rng.integers(1, 2**in_bits, size=segments - 1)).astype(np.int64)
    a = rng.integers(-(2**10), 2**10, size=thr.size + 1).astype(np.int64)
    c = rng.integers(-(2**20), 2**20, size=thr.size + 1).astype(np.int64)
    x = rng.integers(0, 2**in_bits, size=(3, 17)).astype(np.int64)
    x[0, : thr.size] = thr  # exactly on breakpoints
    ref = asnc_evaluate(x, thr, a, c, shift, out_bits)
    _same(ref, asnc_evaluate(_t(x), thr, a, c, shift, out_bits))
    _same(ref, asnc_evaluate(_t(x), _t(thr), _t(a), _t(c), shift, out_bits))
    for v, y in zip(x.ravel(), ref.ravel()):  # independent: bisect + Python floor shift
        i = bisect.bisect_right(list(thr), int(v))
        assert y == min(max((int(a[i]) * int(v) + int(c[i])) >> shift, 0), 2**out_bits - 1)


@pytest.mark.parametrize("bits", [2, 5, 8, 16, 31, 32])
def test_bse_torch_matches_numpy_and_round_trips(bits: int) -> None:
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, size=(4, 9), dtype=np.int64)
    codes[0, :2] = [0, 2**bits - 1]
    for enc in (bse_encode, bse_encode_if):
        ref = enc(codes, bits)
        _same(ref, enc(_t(codes), bits))
    _same(codes, bse_decode(_t(bse_encode_if(codes, bits)), bits))


def test_torch_inputs_rejected_like_numpy() -> None:
    with pytest.raises(ValueError, match="out of range"):
        bse_encode(_t(np.array([4])), 2)
    with pytest.raises(TypeError, match="integer"):
        requantize(_t(np.array([1.0])), 1.0, 1.0, 1.0, 0, 8)
    with pytest.raises(ValueError, match="0 or 1"):
        bse_decode(_t(np.array([[2], [0]], np.uint8)), 2)
