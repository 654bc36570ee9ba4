"""Bit Spike Encoding (LASER Eq. 1, 4, 12-13; docs/contract.md section 2).

A code of N bits becomes N binary spikes, most significant bit first: s(t) = bit N-1-t of the
code. The encoder is an integrate-and-fire neuron with soft reset that receives the code as a
current at t = 0 and has threshold 2^(N-1-t) at step t; the decoder sums s(t)*2^(N-1-t). Both
forms are implemented so that tests can prove they agree (LASER App. A, Thm 1).

Encoders and the decoder take NumPy arrays or torch tensors (see :mod:`._xp`) and return the same
kind, so the torch executor steps the very same neuron through time on its device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lasercc.semantics._xp import NumpyOps, TorchOps, namespace

MIN_BITS = 2
MAX_BITS = 32


def _check_bits(bits: int) -> None:
    if not (MIN_BITS <= int(bits) <= MAX_BITS):
        raise ValueError(f"bits must be in [{MIN_BITS}, {MAX_BITS}], got {bits}")


def _as_codes(codes: Any, bits: int, xp: NumpyOps | TorchOps) -> Any:
    c: Any = xp.asarray(codes)  # a NumPy array or a torch tensor
    if not xp.is_integer(c):
        raise TypeError(f"codes must be integers, got dtype {c.dtype}")
    c = xp.asarray(c, np.int64)
    if c.numel() if xp.name == "torch" else c.size:
        lo, hi = xp.min_max(c)
        if lo < 0 or hi > (1 << bits) - 1:
            raise ValueError(f"codes out of range for {bits} bits: [{lo}, {hi}]")
    return c


def bse_encode(codes: Any, bits: int) -> Any:
    """Encode integer codes as MSB-first spike trains of shape ``(bits, *codes.shape)`` (uint8 0/1).

    This is the bit form: s(t) = (code >> (bits-1-t)) & 1. :func:`bse_encode_if` is the neuron
    form; the two are proved equal by the test suite.
    """
    _check_bits(bits)
    xp = namespace(codes)
    c = _as_codes(codes, bits, xp)
    shifts = xp.asarray(np.arange(bits - 1, -1, -1, dtype=np.int64).reshape((bits,) + (1,) * c.ndim))
    return xp.astype((c[None, ...] >> shifts) & 1, np.uint8)


def bse_encode_if(codes: Any, bits: int) -> Any:
    """Encode with the integrate-and-fire neuron of LASER Eq. 12-13 (soft reset).

    Membrane v starts at the code (input current delta(t)*code at t = 0); at step t the threshold
    is 2^(bits-1-t); a spike fires when v >= threshold and subtracts the threshold.
    """
    _check_bits(bits)
    xp = namespace(codes)
    v = _as_codes(codes, bits, xp).copy() if xp.name == "numpy" else _as_codes(codes, bits, xp).clone()
    out = xp.empty((bits,) + tuple(v.shape), np.uint8)
    for t in range(bits):
        theta = np.int64(1) << np.int64(bits - 1 - t)
        s = v >= theta
        out[t] = s
        v -= s * theta if xp.name == "numpy" else s.to(v.dtype) * int(theta)
    return out


def bse_decode(spikes: Any, bits: int) -> Any:
    """Decode MSB-first spike trains ``(bits, ...)`` back to int64 codes: sum_t s(t)*2^(bits-1-t)."""
    _check_bits(bits)
    xp = namespace(spikes)
    s: Any = xp.asarray(spikes)  # a NumPy array or a torch tensor
    if s.ndim < 1 or s.shape[0] != bits:
        raise ValueError(f"spike train must have {bits} steps on axis 0, got shape {tuple(s.shape)}")
    if (s.numel() if xp.name == "torch" else s.size) and not xp.is_binary(s):
        raise ValueError("spikes must be 0 or 1")
    acc = xp.zeros(tuple(s.shape[1:]), np.int64)
    for t in range(bits):  # Horner: the same recurrence a Soma uses (acc <- 2*acc + s(t))
        acc = 2 * acc + xp.astype(s[t], np.int64)
    return acc


def popcount(codes: np.ndarray) -> int:
    """Number of spikes that BSE emits for these codes (the total popcount), as a Python int."""
    c = np.asarray(codes).astype(np.uint64, copy=False)
    if c.size == 0:
        return 0
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return int(np.bitwise_count(c).sum())
    total = 0
    for b in range(64):
        total += int(((c >> np.uint64(b)) & np.uint64(1)).sum())
        if not (c >> np.uint64(b + 1)).any():
            break
    return total


# ------------------------------------------------------------------------------------------------
# Signed (bidirectional) encoding -- SDLLM's insight, carried on our unsigned codes.
#
# A symmetric tensor's codes cluster around the zero point, where BSE still pays popcount(code)
# spikes (e.g. code 127 = seven spikes when zp = 128). The signed encoding sends the offset
# d = code - zero_point instead, as a ternary MSB-first train: s(t) in {-1, 0, +1} with
# d = sum_t s(t) 2^(N-1-t), every nonzero entry one spike whose polarity is the sign of d (sign +
# magnitude: all spikes of one value share a polarity). |d| <= 2^N - 1, so N steps always suffice
# and timing is unchanged; a value at its zero point emits no spike; spikes = popcount(|d|).
# ------------------------------------------------------------------------------------------------


def _check_zero_point(zero_point: Any, bits: int) -> int:
    zp = int(np.asarray(zero_point).reshape(()))  # per-tensor only: one integer
    if not 0 <= zp <= (1 << bits) - 1:
        raise ValueError(f"zero_point {zp} outside the {bits}-bit code range")
    return zp


def _int8(xp: NumpyOps | TorchOps) -> Any:
    return np.int8 if isinstance(xp, NumpyOps) else xp.torch.int8


def bse_encode_signed(codes: Any, zero_point: Any, bits: int) -> Any:
    """Signed encoding, digit form: int8 trains ``(bits, *codes.shape)`` in {-1, 0, 1}.

    s(t) = sign(d) * bit N-1-t of |d| with d = code - zero_point. :func:`bse_encode_signed_if` is
    the neuron form; the test suite proves the two equal for every code and N <= 12.
    """
    _check_bits(bits)
    zp = _check_zero_point(zero_point, bits)
    xp = namespace(codes)
    d = _as_codes(codes, bits, xp) - zp
    neg = d < 0
    mag = xp.where(neg, -d, d)
    sign = 1 - 2 * xp.astype(neg, np.int64)
    shifts = xp.asarray(np.arange(bits - 1, -1, -1, dtype=np.int64).reshape((bits,) + (1,) * d.ndim))
    return xp.astype(((mag[None, ...] >> shifts) & 1) * sign[None, ...], _int8(xp))


def bse_encode_signed_if(codes: Any, zero_point: Any, bits: int) -> Any:
    """Signed encoding by an integrate-and-fire neuron with two thresholds and soft reset.

    The membrane starts at d = code - zero_point; at step t it fires +1 when v >= 2^(N-1-t) and
    -1 when v <= -2^(N-1-t), moving v towards 0 by the threshold. v never changes sign, so the
    neuron emits exactly the sign-magnitude digits of :func:`bse_encode_signed`.
    """
    _check_bits(bits)
    zp = _check_zero_point(zero_point, bits)
    xp = namespace(codes)
    v = _as_codes(codes, bits, xp) - zp  # a new array: the caller's codes are never written
    out = xp.empty((bits,) + tuple(v.shape), _int8(xp))
    for t in range(bits):
        theta = 1 << (bits - 1 - t)
        s = xp.astype(v >= theta, np.int64) - xp.astype(v <= -theta, np.int64)
        out[t] = xp.astype(s, _int8(xp))
        v = v - s * theta
    return out


def bse_decode_signed(spikes: Any, zero_point: Any, bits: int) -> Any:
    """Decode ternary MSB-first trains ``(bits, ...)`` to int64 codes: zp + sum_t s(t)*2^(bits-1-t).

    The Horner recurrence is the one a Soma runs, so a Soma fed these spikes accumulates W(x - zp).
    """
    _check_bits(bits)
    zp = _check_zero_point(zero_point, bits)
    xp = namespace(spikes)
    s: Any = xp.asarray(spikes)  # a NumPy array or a torch tensor
    if s.ndim < 1 or s.shape[0] != bits:
        raise ValueError(f"spike train must have {bits} steps on axis 0, got shape {tuple(s.shape)}")
    if not xp.is_integer(s):
        raise TypeError(f"signed spikes must be integers, got dtype {s.dtype}")
    if (s.numel() if xp.name == "torch" else s.size) and not bool(((s >= -1) & (s <= 1)).all()):
        raise ValueError("signed spikes must be -1, 0 or 1")
    acc = xp.zeros(tuple(s.shape[1:]), np.int64)
    for t in range(bits):
        acc = 2 * acc + xp.astype(s[t], np.int64)
    return acc + zp


def signed_popcount(codes: np.ndarray, zero_point: int) -> int:
    """Number of spikes the signed encoding emits for these codes: popcount(|code - zero_point|)."""
    c = np.asarray(codes).astype(np.int64, copy=False)
    return popcount(np.abs(c - np.int64(zero_point)))


def encode_train(codes: Any, bits: int, zero_point: int = 0, signed: bool = False) -> Any:
    """The spike train a value travels as -- the one place that picks the encoding.

    BSE of the code (uint8, integrate-and-fire neuron form), or, for a ``signed`` value, the ternary
    train of ``code - zero_point`` (int8, two-threshold neuron form). NumPy arrays or torch tensors.
    """
    if signed:
        return bse_encode_signed_if(codes, zero_point, bits)
    return bse_encode_if(codes, bits)


def decode_train(train: Any, bits: int, zero_point: int = 0, signed: bool = False) -> Any:
    """Codes of a spike train made by :func:`encode_train` with the same parameters."""
    if signed:
        return bse_decode_signed(train, zero_point, bits)
    return bse_decode(train, bits)
