"""Breakpoint placement and closed-form weighted least squares for piecewise-affine tables.

Everything here works on cell indices 0..n-1 of the fit grid with weights w (input mass) and
targets y (output code units). A segmentation is the sorted int array ``b`` of cut points with
b[0] = 0 and b[-1] = n; segment i holds cells [b[i], b[i+1]).

Prefix sums of w, w*t, w*t^2, w*y, w*t*y, w*y^2 make the least-squares line of any cell range,
and its weighted squared error (SSE), an O(1) computation -- and an O(m) *vectorised* one for all
m candidate cut points of a range. That is what keeps a 2^16-code fit well under a second.

Placement (LASER Eq. 7-9 and App. C Eq. 18-21, made precise):

* :func:`laser_split` grows the table top-down. Each round, segment i gets the difficulty of
  Eq. 7/18, ``d_i = (L_i / L) * (1 + sigma_i^2) * rho_i`` with L_i the segment's weighted mean
  squared error, L the global one, rho_i its input mass (so L_i*rho_i/L is its share of the loss)
  and sigma_i^2 the squared coefficient of variation of its pointwise squared residuals (capped
  at 4: a segment whose error is concentrated in one place is a better split candidate). The
  share is scaled by K (average segment = 1) and multiplied by the Eq. 9 importance K*w_i with
  ``w_i = 0.5 I_func + 0.35 I_error + 0.15 D_i`` -- I_func the segment's share of the
  density-weighted curvature sum w*|y''|, I_error its share of the loss, D_i its mass (each sums
  to 1 over segments). Every segment with d_i > tau splits, tau = tau_base * alpha_stag *
  alpha_prog (Eq. 19) with tau_base = 1.5, alpha_stag from the fraction of segments left
  unsplit by the previous round (Eq. 20) and alpha_prog from the previous round's relative loss
  drop (Eq. 21). If none exceed tau the most difficult one splits, so every round makes progress.
* The split point maximises the Eq. 8 score ``0.6 E_sep + 0.2 C_cons + 0.1 B_bal + 0.1 Y_sep``:
  E_sep = fraction of the parent's SSE removed by splitting there; C_cons = 1 - |SSE_L - SSE_R| /
  (SSE_L + SSE_R) (children equally hard); B_bal = 1 - |rho_L - rho_R| / (rho_L + rho_R) (data
  balance); Y_sep = |slope_L - slope_R| normalised by its maximum over the candidates (the cut
  separates two trends -- the bend). Ties go to the leftmost candidate.
* :func:`density_seed` is the classical asymptotically optimal placement: cut points at equal
  quantiles of (w * y''^2)^(1/5) (smoothed). It is a second, independent starting point.
* :func:`refine` is deterministic coordinate descent: each interior cut moves to the exact
  minimiser of SSE(left) + SSE(right) between its neighbours, sweep after sweep, until no cut
  moves. The fitter refines both starting points and keeps the better one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQ8_WEIGHTS = (0.6, 0.2, 0.1, 0.1)  # E_sep, C_cons, B_bal, Y_sep
EQ9_WEIGHTS = (0.5, 0.35, 0.15)  # I_func, I_error, D
TAU_BASE = 1.5
SIGMA2_CAP = 4.0
MAX_SWEEPS = 200


@dataclass(frozen=True)
class WLS:
    """Prefix sums for weighted least squares of y on t = cell / n over cell ranges."""

    w: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: tuple[np.ndarray, ...]  # prefix sums, each of length n + 1
    y_smooth: np.ndarray  # f at cell centres (code units): curvature is read from this, not from noisy y

    @classmethod
    def build(cls, w: np.ndarray, y: np.ndarray, y_smooth: np.ndarray | None = None) -> WLS:
        n = w.size
        t = np.arange(n, dtype=np.float64) / n
        cols = (w, w * t, w * t * t, w * y, w * t * y, w * y * y)
        p = tuple(np.concatenate(([0.0], np.cumsum(c))) for c in cols)
        return cls(w, y, t, p, y if y_smooth is None else y_smooth)

    @property
    def n(self) -> int:
        return self.w.size

    def fit(self, lo: np.ndarray | int, hi: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slope, intercept, SSE) in t-space of the WLS line on cells [lo, hi), vectorised over ranges.

        Degenerate ranges (one cell, or no weight) fall back to a constant or to zero error.
        """
        s0, s1, s2, q0, q1, r = (pp[hi] - pp[lo] for pp in self.p)
        det = s0 * s2 - s1 * s1
        ok = det > 1e-13 * np.maximum(s0 * s0, 1e-300)
        safe = np.where(ok, det, 1.0)
        a = np.where(ok, (s0 * q1 - s1 * q0) / safe, 0.0)
        b = np.where(ok, (s2 * q0 - s1 * q1) / safe, q0 / np.where(s0 > 0, s0, 1.0))
        sse = np.where(ok, r - a * q1 - b * q0, r - b * q0)
        return a, b, np.maximum(sse, 0.0)

    def sse(self, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
        return self.fit(lo, hi)[2]

    def total(self, b: np.ndarray) -> float:
        return float(self.sse(b[:-1], b[1:]).sum())

    def mass(self, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
        return self.p[0][hi] - self.p[0][lo]


def uniform(n: int, k: int) -> np.ndarray:
    """k segments of (nearly) equal width over n cells."""
    k = max(1, min(k, n))
    return np.unique(np.rint(np.linspace(0, n, k + 1)).astype(np.int64))


def _split_point(wls: WLS, lo: int, hi: int) -> int:
    """Eq. 8 best cut inside [lo, hi) (returns m with lo < m < hi)."""
    m = np.arange(lo + 1, hi, dtype=np.int64)
    aL, _, eL = wls.fit(lo, m)
    aR, _, eR = wls.fit(m, hi)
    parent = float(wls.sse(lo, hi))
    e_sep = (parent - eL - eR) / parent if parent > 0 else np.zeros(m.size)
    es = eL + eR
    c_cons = np.where(es > 0, 1.0 - np.abs(eL - eR) / np.where(es > 0, es, 1.0), 1.0)
    rL, rR = wls.mass(lo, m), wls.mass(m, hi)
    rs = rL + rR
    b_bal = np.where(rs > 0, 1.0 - np.abs(rL - rR) / np.where(rs > 0, rs, 1.0), 0.0)
    dy = np.abs(aL - aR)
    y_sep = dy / dy.max() if dy.max() > 0 else np.zeros(m.size)
    a1, a2, a3, a4 = EQ8_WEIGHTS
    score = a1 * e_sep + a2 * c_cons + a3 * b_bal + a4 * y_sep
    return int(m[int(np.argmax(score))])


def _difficulty(wls: WLS, b: np.ndarray, curv: np.ndarray) -> np.ndarray:
    """Eq. 7/18 difficulty times Eq. 9 importance for each segment of ``b`` (-inf: cannot split)."""
    k = b.size - 1
    lo, hi = b[:-1], b[1:]
    a, c, sse = wls.fit(lo, hi)
    rho = wls.mass(lo, hi)
    total = float(sse.sum())
    if total <= 0:
        return np.full(k, -np.inf)
    share = sse / total  # = (L_i / L) * rho_i with L_i = sse_i / rho_i and L = total
    sigma2 = np.zeros(k)
    for i in range(k):
        sl = slice(int(lo[i]), int(hi[i]))
        w = wls.w[sl]
        r2 = (wls.y[sl] - (a[i] * wls.t[sl] + c[i])) ** 2
        ws = w.sum()
        if ws > 0:
            m1 = float((w * r2).sum() / ws)
            m2 = float((w * r2 * r2).sum() / ws)
            sigma2[i] = min(SIGMA2_CAP, (m2 - m1 * m1) / (m1 * m1)) if m1 > 0 else 0.0
    cs = np.array([curv[int(lo[i]):int(hi[i])].sum() for i in range(k)])
    i_func = cs / cs.sum() if cs.sum() > 0 else np.full(k, 1.0 / k)
    rs = rho / rho.sum() if rho.sum() > 0 else np.full(k, 1.0 / k)
    f1, f2, f3 = EQ9_WEIGHTS
    importance = k * (f1 * i_func + f2 * share + f3 * rs)
    d = k * share * (1.0 + sigma2) * importance
    return np.where(hi - lo >= 2, d, -np.inf)


def _alpha_stag(frac_stagnant: float) -> float:
    """Eq. 20."""
    return 0.2 if frac_stagnant > 0.6 else 0.4 if frac_stagnant > 0.3 else 1.0


def _alpha_prog(rel_drop: float) -> float:
    """Eq. 21."""
    return 0.4 if rel_drop < 0.005 else 0.6 if rel_drop < 0.02 else 1.0


def curvature(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Density-weighted |y''| per cell (the I_func ingredient of Eq. 9)."""
    d2 = np.zeros_like(y)
    if y.size >= 3:
        d2[1:-1] = np.abs(y[2:] - 2.0 * y[1:-1] + y[:-2])
        d2[0], d2[-1] = d2[1], d2[-2]
    return w * d2


def laser_split(wls: WLS, max_segments: int, stop_sse: float = 0.0) -> np.ndarray:
    """Top-down adaptive splitting (Eq. 7/18-21 criterion, Eq. 8 split point, Eq. 9 weights)."""
    n = wls.n
    curv = curvature(wls.w, wls.y_smooth)
    b = np.array([0, n], dtype=np.int64)
    prev_loss = wls.total(b)
    frac_stag, rel_drop = 0.0, 1.0
    while b.size - 1 < max_segments:
        loss = wls.total(b)
        if loss <= stop_sse:
            break
        d = _difficulty(wls, b, curv)
        if not np.isfinite(d).any():
            break
        tau = TAU_BASE * _alpha_stag(frac_stag) * _alpha_prog(rel_drop)
        budget = max_segments - (b.size - 1)
        order = np.argsort(-d, kind="stable")
        chosen = [int(i) for i in order if d[i] > tau and np.isfinite(d[i])][:budget]
        if not chosen:
            chosen = [int(order[0])]
        cuts = [_split_point(wls, int(b[i]), int(b[i + 1])) for i in chosen]
        k_before = b.size - 1
        b = np.unique(np.concatenate((b, np.array(cuts, dtype=np.int64))))
        new_loss = wls.total(b)
        frac_stag = 1.0 - len(chosen) / k_before
        rel_drop = (prev_loss - new_loss) / prev_loss if prev_loss > 0 else 0.0
        prev_loss = new_loss
    return b


def density_seed(wls: WLS, k: int) -> np.ndarray:
    """Cut points at equal quantiles of the smoothed (w * y''^2)^(1/5) (high-resolution optimum)."""
    n = wls.n
    d2 = curvature(np.ones_like(wls.w), wls.y_smooth)
    g = (wls.w * d2 * d2) ** 0.2
    width = max(1, n // 512)
    g = np.convolve(g, np.ones(width) / width, mode="same")
    g = g + 1e-3 * (g.mean() if g.mean() > 0 else 1.0)
    cdf = np.concatenate(([0.0], np.cumsum(g)))
    cdf /= cdf[-1]
    cuts = np.searchsorted(cdf, np.arange(1, k) / k)
    b = np.unique(np.concatenate(([0], np.clip(cuts, 1, n - 1), [n])).astype(np.int64))
    return b


def _sweep(wls: WLS, b: np.ndarray, idx: np.ndarray, stride: int, window: int | None) -> bool:
    """Move every cut b[idx] (no two adjacent) to its best position on the stride grid, within
    ``window`` cells of where it is (None: anywhere between its neighbours); True if any moved."""
    lo, hi, cur = b[idx - 1], b[idx + 1], b[idx]
    wlo = lo if window is None else np.maximum(lo, cur - window - 1)
    whi = hi if window is None else np.minimum(hi, cur + window + 1)
    first = (wlo // stride + 1) * stride
    last = ((whi - 1) // stride) * stride
    cnt = np.maximum(0, (last - first) // stride + 1)
    keep = cnt > 0
    if not keep.any():
        return False
    idx, lo, hi, cur, first, cnt = idx[keep], lo[keep], hi[keep], cur[keep], first[keep], cnt[keep]
    starts = np.concatenate(([0], np.cumsum(cnt)[:-1]))
    group = np.repeat(np.arange(idx.size), cnt)
    m = first[group] + (np.arange(group.size) - starts[group]) * stride
    cost = wls.sse(lo[group], m) + wls.sse(m, hi[group])
    mins = np.minimum.reduceat(cost, starts)
    hit = np.flatnonzero(cost <= mins[group])
    _, first_hit = np.unique(group[hit], return_index=True)
    best = m[hit[first_hit]]
    cur_cost = wls.sse(lo, cur) + wls.sse(cur, hi)
    move = (mins < cur_cost * (1.0 - 1e-12)) & (best != cur)
    b[idx[move]] = best[move]
    return bool(move.any())


def refine(wls: WLS, b: np.ndarray, max_sweeps: int = MAX_SWEEPS) -> np.ndarray:
    """Coordinate descent on interior cuts: each moves to its exact best position between its neighbours.

    Red-black order (odd cuts together, then even ones: a cut's best position depends only on its
    two neighbours, so each half-sweep is exact and vectorised) and coarse-to-fine (cuts on a
    stride-256 grid anywhere between neighbours, then stride 16 within 512 cells, then every cell
    within 32) so that convergence costs tens of milliseconds. Every move strictly lowers the
    total SSE, so the result never is worse than the start.
    """
    b = b.copy()
    if b.size < 3:
        return b
    odd = np.arange(1, b.size - 1, 2)
    even = np.arange(2, b.size - 1, 2)
    window: int | None = None
    for stride in (256, 16, 1):
        if stride > 1 and wls.n // stride < 4 * b.size:
            continue
        for _ in range(max_sweeps):
            moved = _sweep(wls, b, odd, stride, window)
            if even.size:
                moved = _sweep(wls, b, even, stride, window) or moved
            if not moved:
                break
        window = 2 * stride  # later, finer stages only polish: search near the coarse optimum
    return b
