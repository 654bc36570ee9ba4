"""Exact integer bounds and float32 scale checks for the verifier.

Why a module of its own: the verifier proves that no accumulator can overflow and that every scale is
usable, and both proofs were wrong at the edges. ``np.abs`` of INT64_MIN is INT64_MIN (negative), so a
weight of -2^63 made the accumulator bound *smaller*; int64 column sums of large weights wrapped around;
and scales were checked in float64 while :mod:`lasercc.semantics` uses them in float32, so a scale of
1e39 passed and became infinity, giving codes outside [0, 2^N - 1]. Everything here is computed with
Python integers (or int64 only where a Python-int bound proves it cannot wrap) and checks scales in the
precision they are used in. Plain functions of arrays and floats, so they can live with the verifier
wherever it goes.
"""

from __future__ import annotations

import numpy as np

_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


def abs_max(data: np.ndarray) -> int:
    """``max |x|`` over an integer array, exactly (a Python int; 0 for an empty array)."""
    a = np.asarray(data)
    if a.size == 0:
        return 0
    return max(-int(a.min()), int(a.max()))


def column_abs_sum_max(w: np.ndarray) -> int:
    """``max_j sum_i |W[i, j]|`` of an integer matrix, exactly (a Python int).

    int64 is used when ``rows * max|W| < 2^62`` proves the sums cannot wrap; otherwise the sums are taken
    over Python integers (only pathological weights get there, and the bound then fails the check anyway).
    """
    a = np.asarray(w)
    if a.size == 0:
        return 0
    if a.ndim < 2:
        return abs_max(a)
    m = abs_max(a)
    if m * a.shape[0] < (1 << 62):
        # in row blocks: an int64 copy and its abs of a whole 2048 x 32000 head were 1 GB of temporaries
        # next to its 65 MB of int8 weights (the peak of a billion-parameter compile)
        sums = np.zeros(a.shape[1:], np.int64)
        step = max(1, (1 << 20) // max(1, int(np.prod(a.shape[1:]))))
        for i in range(0, a.shape[0], step):
            sums += np.abs(a[i:i + step].astype(np.int64)).sum(axis=0)
        return int(sums.max())
    return max(sum(abs(int(v)) for v in col) for col in a.reshape(a.shape[0], -1).T)


def check_scale_f32(s: float, what: str = "scale") -> None:
    """A scale must be a positive, finite, normal float32 (it is used in float32: docs/contract.md section 3)."""
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{what} must be finite and positive, got {s}")
    if not (_F32_TINY <= s <= _F32_MAX):
        raise ValueError(f"{what} {s!r} is not representable in float32 (normal range {_F32_TINY:.3g} .. "
                         f"{_F32_MAX:.3g}), the precision requantization uses")


def check_requant_scales(scale_in: float, scale_w: tuple[float, ...], scale_out: tuple[float, ...]) -> None:
    """Every input/weight/output scale usable in float32, and every combined multiplier
    ``f32(f32(s_in) * f32(s_w) / f32(s_out))`` (the ``ort`` rule) finite and non-zero."""
    check_scale_f32(scale_in, "scale_in")
    for s in scale_w:
        check_scale_f32(s, "scale_w")
    for s in scale_out:
        check_scale_f32(s, "output scale")
    with np.errstate(over="ignore", under="ignore"):
        sw = np.asarray(scale_w, np.float32)
        so = np.asarray(scale_out, np.float32)
        m = np.float32(scale_in) * sw[:, None] / so[None, :]
    if not np.all(np.isfinite(m)) or not np.all(m > 0):
        bad = float(m.reshape(-1)[np.flatnonzero(~np.isfinite(m) | ~(m > 0))[0]])
        raise ValueError(f"requantization multiplier scale_in*scale_w/scale_out is {bad} in float32 "
                         "(overflow or underflow); the scales are out of proportion")
