"""Code types and the input distribution an ASNC table is fitted against.

The fitter works on a *grid* of input cells: every code when the input has at most 16 bits, else
2^16 equal cells of 2^(bits-16) codes (so that one fit stays under a second for any width). Each
cell carries a probability mass (where inputs fall) and a target output (the conditional mean of
f over the inputs that fall in it -- the value that minimises the expected squared error for that
cell). The distribution comes from, in order of preference:

1. calibration ``samples`` (real values): quantized with the shared rule, counted per cell, and
   f averaged per cell -- the fitted table then minimises the error *on those samples*;
2. a ``histogram`` of counts per input code (what the frontend stores on an ASNCSegment node);
3. the stated default: N(mu, sigma^2) with mu the middle of the input's real range and sigma one
   eighth of its width, clipped to the range (so a code type spanning [-8, 8] gets N(0, 2^2)
   clipped to [-8, 8], the issue's reference distribution); masses are exact (erf CDF).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lasercc.asnc.functions import erf
from lasercc.errors import LasercError
from lasercc.semantics.quant import quantize

GRID_BITS = 16  # at most 2^16 cells per fit
BREAKPOINTS = ("adaptive", "uniform")


class ASNCFitError(LasercError, ValueError):
    """Bad input to the ASNC fitter (code types, samples, histogram, options).

    Also a ValueError so that option validation inside pass constructors reads as a bad option."""


@dataclass(frozen=True)
class Q:
    """A per-tensor code type: real = scale * (code - zero_point), codes in [0, 2^bits - 1]."""

    bits: int
    scale: float
    zero_point: int

    @property
    def hi(self) -> int:
        return (1 << self.bits) - 1

    @property
    def scale32(self) -> float:
        """The scale as the graph stores and dequantizes it (float32), widened to float64."""
        return float(np.float32(self.scale))

    def real(self, codes: np.ndarray) -> np.ndarray:
        """Real value of (possibly fractional) codes in float64."""
        return (np.asarray(codes, dtype=np.float64) - self.zero_point) * self.scale32

    @property
    def real_range(self) -> tuple[float, float]:
        return float(self.real(0)), float(self.real(self.hi))


def as_q(q: object, what: str = "code type") -> Q:
    """Accept a :class:`Q`, a per-tensor ``CodeType`` or anything with bits/scale/zero_point."""
    if isinstance(q, Q):
        out = q
    else:
        try:
            bits, scale, zp = q.bits, q.scale, q.zero_point  # type: ignore[attr-defined]
        except AttributeError:
            raise ASNCFitError(f"{what} must have bits, scale and zero_point, got {type(q).__name__}") from None
        if isinstance(scale, tuple | list):
            if len(scale) != 1 or len(zp) != 1:  # type: ignore[arg-type]
                raise ASNCFitError(f"{what} must be per-tensor (one scale), got {len(scale)} scales")
            scale, zp = scale[0], zp[0]  # type: ignore[index]
        out = Q(int(bits), float(scale), int(zp))
    if not 2 <= out.bits <= 32:
        raise ASNCFitError(f"{what} bits must be in [2, 32], got {out.bits}")
    if not (math.isfinite(out.scale) and out.scale > 0):
        raise ASNCFitError(f"{what} scale must be finite and positive, got {out.scale}")
    if not 0 <= out.zero_point <= out.hi:
        raise ASNCFitError(f"{what} zero_point {out.zero_point} outside [0, {out.hi}]")
    return out


def span_q(lo: float, hi: float, bits: int) -> Q:
    """The code type whose 2^bits codes span [lo, hi] (zero point rounded, so 0.0 is exact if inside)."""
    if not hi > lo:
        raise ASNCFitError(f"empty range [{lo}, {hi}]")
    n = (1 << bits) - 1
    scale = float(np.float32((hi - lo) / n))
    zp = int(np.clip(round(-lo / scale), 0, n))
    return Q(bits, scale, zp)


@dataclass(frozen=True)
class Grid:
    """Cells of input codes: cell i holds codes [lo[i], lo[i] + step)."""

    in_q: Q
    step: int

    @property
    def n(self) -> int:
        return (1 << self.in_q.bits) // self.step

    @property
    def lo(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64) * self.step

    @property
    def center(self) -> np.ndarray:
        """Mean code of each cell (float)."""
        return self.lo.astype(np.float64) + (self.step - 1) / 2.0

    def cell_of(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.int64) // self.step

    @classmethod
    def for_q(cls, in_q: Q) -> Grid:
        return cls(in_q, 1 << max(0, in_q.bits - GRID_BITS))


@dataclass(frozen=True)
class Distribution:
    """Per-cell probability mass and conditional-mean target (real units) for one fit."""

    grid: Grid
    mass: np.ndarray  # float64, sums to 1
    target: np.ndarray  # float64, E[f(s) | s in cell], real units
    source: str
    sample_codes: np.ndarray | None = None  # codes of the calibration samples (for MSE on them)
    sample_f: np.ndarray | None = None  # f at the calibration samples


def default_gaussian(in_q: Q) -> tuple[float, float]:
    """(mu, sigma) of the stated default input distribution for a code type."""
    lo, hi = in_q.real_range
    mu = (lo + hi) / 2.0
    if abs(mu) <= in_q.scale32:  # a symmetric range with an exact zero code is one code short on top
        mu = 0.0
    return mu, (hi - lo) / 8.0


def build(f: Callable[[np.ndarray], np.ndarray], in_q: Q, samples: np.ndarray | None = None,
          histogram: np.ndarray | None = None) -> Distribution:
    """Input distribution over the fit grid (see the module docstring for the precedence)."""
    grid = Grid.for_q(in_q)
    centers_f = f(in_q.real(grid.center))
    if samples is not None:
        s = np.asarray(samples, dtype=np.float64).ravel()
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ASNCFitError("calibration samples are empty (or all non-finite)")
        codes = quantize(s, in_q.scale, in_q.zero_point, in_q.bits)
        cells = grid.cell_of(codes)
        fs = f(s)
        counts = np.bincount(cells, minlength=grid.n).astype(np.float64)
        sums = np.bincount(cells, weights=fs, minlength=grid.n)
        target = np.where(counts > 0, sums / np.maximum(counts, 1.0), centers_f)
        return Distribution(grid, counts / counts.sum(), target, f"{s.size} calibration samples", codes, fs)
    if histogram is not None:
        h = np.asarray(histogram, dtype=np.float64).ravel()
        if h.size != (1 << in_q.bits):
            raise ASNCFitError(f"histogram has {h.size} bins, the {in_q.bits}-bit input has {1 << in_q.bits} codes")
        if np.any(h < 0) or not np.isfinite(h).all() or h.sum() <= 0:
            raise ASNCFitError("histogram counts must be finite, non-negative and not all zero")
        m = h.reshape(grid.n, grid.step).sum(axis=1)
        return Distribution(grid, m / m.sum(), centers_f, "calibration histogram")
    mu, sigma = default_gaussian(in_q)
    edges = in_q.real(np.append(grid.lo, grid.lo[-1] + grid.step) - 0.5)
    cdf = 0.5 * (1.0 + erf((edges - mu) / (sigma * math.sqrt(2.0))))
    cdf[0], cdf[-1] = 0.0, 1.0  # clipping: the tails land on the first and last code
    m = np.diff(cdf)
    return Distribution(grid, m / m.sum(), centers_f, f"default N({mu:.4g}, {sigma:.4g}^2) clipped to the input range")
