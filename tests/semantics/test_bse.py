"""BSE encoder/decoder (docs/contract.md section 2): exhaustive for N <= 12, sampled up to 32 bits."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasercc import bse_decode, bse_encode
from lasercc.semantics import bse_encode_if, popcount


@pytest.mark.parametrize("bits", range(2, 13))
def test_exhaustive_roundtrip_and_if_neuron(bits):
    codes = np.arange(2**bits, dtype=np.int64)
    spikes = bse_encode(codes, bits)
    assert spikes.shape == (bits, 2**bits)
    assert spikes.dtype == np.uint8 and set(np.unique(spikes)) <= {0, 1}
    # the integrate-and-fire neuron (Eq. 12-13) and the bit form emit identical trains
    assert np.array_equal(spikes, bse_encode_if(codes, bits))
    # decoder inverts the encoder for every code (LASER App. A, Thm 1)
    assert np.array_equal(bse_decode(spikes, bits), codes)
    # MSB first: spike t is bit bits-1-t, checked against Python's own binary formatting
    for c in (0, 1, 2**bits - 1, (2**bits) // 3):
        assert "".join(str(int(s)) for s in spikes[:, c]) == format(c, f"0{bits}b")
    assert popcount(codes) == sum(bin(int(c)).count("1") for c in codes)


@given(bits=st.integers(13, 32), seed=st.integers(0, 2**32 - 1))
def test_sampled_wide_codes(bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, size=(3, 50), dtype=np.int64)
    codes[0, 0], codes[0, 1] = 0, 2**bits - 1
    s = bse_encode(codes, bits)
    assert np.array_equal(s, bse_encode_if(codes, bits))
    assert np.array_equal(bse_decode(s, bits), codes)
    assert popcount(codes) == int(s.sum())


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        bse_encode(np.array([256]), 8)
    with pytest.raises(ValueError):
        bse_encode(np.array([1]), 1)
    with pytest.raises(TypeError):
        bse_encode(np.array([1.5]), 8)
    with pytest.raises(ValueError):
        bse_decode(np.zeros((7, 2), np.uint8), 8)


@pytest.mark.parametrize("signed", [False, True])
def test_encode_train_picks_the_encoding_and_round_trips(signed):
    from lasercc.semantics.bse import decode_train, encode_train, signed_popcount

    codes = np.arange(2**8, dtype=np.int64)
    train = encode_train(codes, 8, 128, signed)
    assert np.array_equal(decode_train(train, 8, 128, signed), codes)
    # BSE: one spike per set bit of the code; signed: per set bit of |code - zp|
    want = signed_popcount(codes, 128) if signed else popcount(codes)
    assert int(np.count_nonzero(train)) == want
    assert train.dtype == (np.int8 if signed else np.uint8)
