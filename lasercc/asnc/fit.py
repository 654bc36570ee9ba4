"""``fit``: adaptive ASNC tables in closed form (LASER Eq. 5-9, App. B, App. C Eq. 18-21).

Pipeline, all deterministic (no random numbers, no time-dependent stopping):

1. Input distribution over input codes (:mod:`lasercc.asnc.distribution`): calibration samples, a
   per-code histogram, or the stated default N(mid, (width/8)^2) clipped to the input range.
2. Targets in output-code units: the conditional mean of f per input code, scaled by the output
   code type and clipped to its code range (so saturating regions are fitted as saturated).
3. Breakpoints (:mod:`lasercc.asnc.segments`): ``"adaptive"`` = LASER's split criterion and
   split-point score, refined by exact coordinate descent; the classical (w*f''^2)^(1/5)
   placement, refined the same way, is a second candidate and the lower loss wins.
   ``"uniform"`` = equal-width segments over the whole input code range (LASER App. B's
   baseline), no refinement.
4. Closed-form weighted least squares per segment (the input mass is the weight), in float64.
5. Integerisation for the shared rule ``clip((a*x + c) >> k, 0, 2^out_bits - 1)``: shift
   k = min(in_bits + 12, the largest k with |a*x + c| < 2^62 for every code), a = rint(alpha*2^k),
   c = rint(beta*2^k) + 2^(k-1) (round-to-nearest folded into the intercept). The slope's
   rounding then moves an output by at most 2^-13 of a code.
6. Measured errors (real units): vs the exact float f, vs the exact quantized lookup table, and
   the lookup table's own error (the quantization floor).

A tiny uniform weight (1e-6 of the total mass spread over all codes) keeps codes that calibration
never saw on a sensible line instead of an arbitrary one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lasercc.asnc import segments
from lasercc.asnc.distribution import BREAKPOINTS, ASNCFitError, Distribution, Q, as_q, build, span_q
from lasercc.asnc.functions import RealFn, resolve
from lasercc.asnc.table import ASNCTable
from lasercc.ir.nodes import ASNC_LIMIT_BITS
from lasercc.semantics.quant import dequantize, quantize

EXTRA_SHIFT = 12  # k = in_bits + 12 when the 2^62 bound allows
FLOOR_WEIGHT = 1e-6


def span_output_q(fn: str | RealFn, input_q: object, bits: int = 16, params: tuple[float, ...] = ()) -> Q:
    """Output code type whose 2^bits codes span f's range over every input code (what the benches use)."""
    in_q = as_q(input_q, "input_q")
    _, f = resolve(fn, params)
    x = np.arange(1 << min(in_q.bits, 20), dtype=np.float64) * (1 << max(0, in_q.bits - 20))
    v = f(in_q.real(x))
    v = v[np.isfinite(v) & (np.abs(v) < 1e29)]
    return span_q(float(v.min()), float(v.max()), bits)


def _integerize(alpha: np.ndarray, beta: np.ndarray, in_bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer (slopes, intercepts, shift) for output codes ~ round(alpha*x + beta)."""
    x_max = (1 << in_bits) - 1
    amax = float(np.abs(alpha).max()) if alpha.size else 0.0
    bmax = float(np.abs(beta).max()) if beta.size else 0.0
    k = min(62, in_bits + EXTRA_SHIFT)
    while k > 0:
        a = np.rint(alpha * 2.0**k)
        c = np.rint(beta * 2.0**k) + (2.0 ** (k - 1))
        if amax * 2.0**k * (x_max + 1) + bmax * 2.0**k + 2.0**k < 2.0**ASNC_LIMIT_BITS / 2:
            ai, ci = a.astype(np.int64), c.astype(np.int64)
            bound = int(np.abs(ai).max()) * (x_max + 1) + int(np.abs(ci).max())
            if bound < 1 << ASNC_LIMIT_BITS:
                return ai, ci, k
        k -= 1
    a, c = np.rint(alpha).astype(np.int64), np.rint(beta).astype(np.int64)
    if int(np.abs(a).max()) * (x_max + 1) + int(np.abs(c).max()) >= 1 << ASNC_LIMIT_BITS:
        raise ASNCFitError("function too steep for the 2^62 ASNC accumulator bound at these code types")
    return a, c, 0


def _measure(table: ASNCTable, dist: Distribution, f: Callable[[np.ndarray], np.ndarray], in_q: Q,
             out_q: Q) -> dict[str, float | int]:
    """mse (vs float f), mse_lut (vs exact quantized LUT), mse_floor (LUT vs float), max_code_error."""
    grid = dist.grid
    rep = grid.lo + grid.step // 2
    out = table.evaluate(rep)
    u = dequantize(rep, in_q.scale, in_q.zero_point).astype(np.float64)
    lut = quantize(f(u), out_q.scale, out_q.zero_point, out_q.bits)

    def deq(c: np.ndarray) -> np.ndarray:
        return dequantize(c, out_q.scale, out_q.zero_point).astype(np.float64)

    mse_lut = float(np.sum(dist.mass * (deq(out) - deq(lut)) ** 2))
    if dist.sample_codes is not None and dist.sample_f is not None:
        sc = dist.sample_codes
        mse = float(np.mean((deq(table.evaluate(sc)) - dist.sample_f) ** 2))
        lut_s = lut[grid.cell_of(sc)] if grid.step == 1 else quantize(
            f(dequantize(sc, in_q.scale, in_q.zero_point).astype(np.float64)), out_q.scale, out_q.zero_point,
            out_q.bits)
        floor = float(np.mean((deq(lut_s) - dist.sample_f) ** 2))
    else:
        mse = float(np.sum(dist.mass * (deq(out) - dist.target) ** 2))
        floor = float(np.sum(dist.mass * (deq(lut) - dist.target) ** 2))
    return {"mse": mse, "mse_lut": mse_lut, "mse_floor": floor,
            "max_code_error": int(np.abs(out - lut).max()) if out.size else 0}


def check_max_segments(max_segments: int, who: str = "") -> None:
    """1 <= max_segments <= the limit (:mod:`lasercc.limits`, 4096): the greedy splitter's time grows with the
    segment count (100,000 segments ran for over 35 minutes), and more segments than that is what the exact
    lookup table already is."""
    from lasercc.limits import current

    limit = current().max_segments
    if int(max_segments) < 1:
        raise ASNCFitError(f"{who}max_segments must be >= 1, got {max_segments}")
    if int(max_segments) > limit:
        raise ASNCFitError(f"{who}max_segments={max_segments} is over the limit of {limit}; for an exact table "
                           "leave asnc-fit out (or raise LASERCC_MAX_SEGMENTS)")


def fit(fn: str | RealFn, *, input_q: object, output_q: object, samples: np.ndarray | None = None,
        max_segments: int = 32, target_mse: float | None = None, breakpoints: str = "adaptive",
        params: tuple[float, ...] = (), histogram: np.ndarray | None = None) -> ASNCTable:
    """Fit an integer ASNC table for ``fn`` between two code types (see the module docstring).

    ``fn`` is a registry name (:data:`lasercc.asnc.functions.FUNCTIONS`, with ``params``) or a
    callable on float64 arrays. ``target_mse`` (real units, vs the exact float f) stops adaptive
    splitting as soon as the fit plus the quantization floor is expected to meet it; at most
    ``max_segments`` segments are used either way, so check ``table.mse`` (``info["target_met"]``).
    """
    t0 = time.perf_counter()
    if breakpoints not in BREAKPOINTS:
        raise ASNCFitError(f"breakpoints must be one of {', '.join(BREAKPOINTS)}, got {breakpoints!r}")
    check_max_segments(max_segments)
    if target_mse is not None and not target_mse > 0:
        raise ASNCFitError(f"target_mse must be positive, got {target_mse}")
    in_q, out_q = as_q(input_q, "input_q"), as_q(output_q, "output_q")
    name, f = resolve(fn, params)
    dist = build(f, in_q, samples, histogram)
    grid = dist.grid
    s_out = out_q.scale32
    y = np.clip(dist.target / s_out + out_q.zero_point, 0.0, float(out_q.hi))
    y = np.nan_to_num(y, nan=0.0)
    w = dist.mass + FLOOR_WEIGHT / grid.n
    w = w / w.sum()
    y_smooth = np.clip(np.nan_to_num(f(in_q.real(grid.center)) / s_out + out_q.zero_point, nan=0.0),
                       0.0, float(out_q.hi))
    wls = segments.WLS.build(w, y, y_smooth)
    k_max = min(int(max_segments), grid.n)
    info: dict[str, object] = {"grid_step": grid.step}

    if breakpoints == "uniform":
        b = segments.uniform(grid.n, k_max)
        info["placement"] = "uniform"
    else:
        stop_sse = 0.0
        if target_mse is not None:
            within = 0.0
            if dist.sample_codes is not None and dist.sample_f is not None:
                within = float(np.mean((dist.sample_f - dist.target[grid.cell_of(dist.sample_codes)]) ** 2))
            floor_est = s_out * s_out / 12.0 + within
            stop_sse = max(0.0, target_mse - floor_est) / (s_out * s_out)
        b_split = segments.refine(wls, segments.laser_split(wls, k_max, stop_sse))
        cands = {"laser-split+refine": b_split}
        if target_mse is None and b_split.size - 1 > 1:
            cands["density-seed+refine"] = segments.refine(wls, segments.density_seed(wls, b_split.size - 1))
        losses = {k: wls.total(v) for k, v in cands.items()}
        best = min(losses, key=lambda k: (losses[k], k != "laser-split+refine"))
        b = cands[best]
        info["placement"] = best
        info["candidate_sse"] = losses

    a_t, c_t, _ = wls.fit(b[:-1], b[1:])
    # t = cell / n and cell = (x - (step - 1) / 2) / step  =>  y = alpha * x + beta
    alpha = a_t / (grid.n * grid.step)
    beta = c_t - alpha * (grid.step - 1) / 2.0
    slopes, intercepts, shift = _integerize(alpha, beta, in_q.bits)
    thresholds = grid.lo[b[1:-1]]
    table = ASNCTable(function=name, params=tuple(float(v) for v in params), in_q=in_q, out_q=out_q,
                      thresholds=thresholds, slopes=slopes, intercepts=intercepts, shift=shift,
                      breakpoints=breakpoints, distribution=dist.source, info=info)
    m = _measure(table, dist, f, in_q, out_q)
    if target_mse is not None:
        info["target_met"] = m["mse"] <= target_mse
    return ASNCTable(**{**table.__dict__, **m, "fit_seconds": time.perf_counter() - t0})
