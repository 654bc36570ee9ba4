"""Signed (bidirectional) spike encoding: exhaustive for every code, zero point and N <= 12.

The reference is independent of the implementation: the sign-magnitude digits of d = code - zp
come from Python's own ``format(|d|, 'b')``; the spike count from ``bin(|d|).count('1')``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasercc.semantics.bse import (
    bse_decode_signed,
    bse_encode,
    bse_encode_signed,
    bse_encode_signed_if,
    popcount,
    signed_popcount,
)


def _zero_points(bits: int) -> list[int]:
    hi = 2**bits - 1
    return sorted({0, 1, hi // 3, 2 ** (bits - 1) - 1, 2 ** (bits - 1), hi - 1, hi})


@pytest.mark.parametrize("bits", range(2, 13))
def test_exhaustive_digit_form_neuron_form_and_decoder(bits):
    codes = np.arange(2**bits, dtype=np.int64)
    for zp in _zero_points(bits):
        s = bse_encode_signed(codes, zp, bits)
        assert s.shape == (bits, 2**bits) and s.dtype == np.int8
        assert set(np.unique(s)) <= {-1, 0, 1}
        # the two-threshold integrate-and-fire neuron emits exactly the digit form
        assert np.array_equal(s, bse_encode_signed_if(codes, zp, bits))
        assert np.array_equal(bse_decode_signed(s, zp, bits), codes)
        # spikes = popcount(|code - zp|); every spike of a value has the sign of code - zp
        d = codes - zp
        assert signed_popcount(codes, zp) == int(np.count_nonzero(s)) == sum(bin(abs(int(v))).count("1") for v in d)
        assert np.array_equal(np.count_nonzero(s, axis=0), [bin(abs(int(v))).count("1") for v in d])
        assert not ((s > 0) & (d[None] < 0)).any() and not ((s < 0) & (d[None] > 0)).any()
        # MSB first: spike t is digit bits-1-t of |d|, against Python's binary formatting
        for c in {0, zp, 2**bits - 1, (2**bits) // 3}:
            want = [int(ch) * (1 if c >= zp else -1) for ch in format(abs(c - zp), f"0{bits}b")]
            assert s[:, c].tolist() == want
        # the zero point costs nothing
        assert not s[:, zp].any()


@pytest.mark.parametrize("bits", [2, 5, 8, 12])
def test_zero_point_zero_is_plain_bse(bits):
    codes = np.arange(2**bits, dtype=np.int64)
    assert np.array_equal(bse_encode_signed(codes, 0, bits), bse_encode(codes, bits).astype(np.int8))
    assert signed_popcount(codes, 0) == popcount(codes)


@given(bits=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_torch_tensors_give_the_numpy_trains(bits, seed):
    torch = pytest.importorskip("torch")  # the Lava environment has no torch
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, size=(3, 7), dtype=np.int64)
    zp = int(rng.integers(0, 2**bits))
    want = bse_encode_signed(codes, zp, bits)
    t = torch.as_tensor(codes)
    for enc in (bse_encode_signed, bse_encode_signed_if):
        got = enc(t, zp, bits)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.int8
        assert np.array_equal(got.numpy(), want)
    back = bse_decode_signed(torch.as_tensor(want), zp, bits)
    assert back.dtype == torch.int64 and np.array_equal(back.numpy(), codes)
    assert np.array_equal(t.numpy(), codes)  # the neuron form does not write its input


@given(bits=st.integers(13, 32), seed=st.integers(0, 2**32 - 1))
def test_sampled_wide_codes(bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, size=(2, 40), dtype=np.int64)
    zp = int(rng.integers(0, 2**bits))
    codes[0, 0], codes[0, 1], codes[0, 2] = 0, 2**bits - 1, zp
    s = bse_encode_signed(codes, zp, bits)
    assert np.array_equal(s, bse_encode_signed_if(codes, zp, bits))
    assert np.array_equal(bse_decode_signed(s, zp, bits), codes)
    assert signed_popcount(codes, zp) == int(np.count_nonzero(s))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="zero_point"):
        bse_encode_signed(np.array([1]), 16, 4)
    with pytest.raises(ValueError, match="out of range"):
        bse_encode_signed(np.array([16]), 8, 4)
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        bse_decode_signed(np.array([[2], [0], [0], [0]], dtype=np.int8), 8, 4)
    with pytest.raises(ValueError, match="steps"):
        bse_decode_signed(np.zeros((3, 1), dtype=np.int8), 8, 4)
