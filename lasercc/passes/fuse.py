"""``fuse-asnc``: requant->ASNC fusion -- an ASNC reads its producing Soma's accumulator directly.

LASER lets the ASNC comparator bank sit on the Soma's integer accumulator, so the pair
``Soma -> requantize -> N_mid-bit BSE train -> ASNCSegment`` becomes one :class:`SomaASNC`: the
intermediate spike train (about N_mid/2 spikes per element), its N_mid timesteps and one pipeline
step disappear (docs/contract.md section 6). A pair is fused when the ASNC's single input is a Soma that
has no other consumer, is not a graph output, and has a per-tensor weight scale and a per-tensor
result type (one requantization rule for every element, so one table serves the whole layer).

Two ways to build the accumulator-domain table:

``exact`` (default)
    ``requantize`` (the shared rule, in the Soma's mode) is a non-decreasing step function of the
    accumulator, so the composition ``ASNC(requantize(acc))`` is a step function too. Its step
    points are found by a vectorised binary search over the Soma's reachable accumulator range
    (tight per-element bounds from the weights, input code ranges and bias); each step gets slope
    0 and the ASNC's output for that intermediate code as intercept, and equal neighbours merge.
    A composition ``a*requant(acc) + c`` is *not* affine in ``acc`` (requantize rounds), which is
    why the exact table is a step table. Codes are unchanged, bit for bit (tested); a LUT ASNC on
    an 8-bit intermediate code gives at most 256 segments.
``refit``
    Fit the ASNC's real function directly on the accumulator, whose real value is
    ``acc * scale_in * scale_w``, with :func:`lasercc.asnc.fit` (affine segments, at most
    ``max_segments``). The fitter works on unsigned codes, so the accumulator is offset by
    ``min(acc_lo, 0)`` and the table shifted back exactly (``c' = c - a*offset``). Calibration-
    like inputs: the ASNC's histogram, else the fitter's default Gaussian over the intermediate
    codes, spread over each code's accumulator interval. Fewer segments, changed error: both MSEs
    (against the exact real function) are reported per node.

The rewrite keeps the ASNC's value name (consumers and graph outputs are untouched) and drops
constants no node references any more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from lasercc.ir.analysis import critical_path
from lasercc.ir.edit import GraphEditor
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNC_LIMIT_BITS, ASNCSegment, Node, Soma, SomaASNC
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, option, register_pass
from lasercc.semantics import asnc_evaluate, requantize

REFIT_SAMPLES = 1 << 15  # calibration-like samples spread over the accumulator range (refit mode)


# --------------------------------------------------------------------------------------------
# accumulator range and the requantization step function
# --------------------------------------------------------------------------------------------


def soma_acc_range(soma: Soma | SomaASNC, graph: Graph) -> tuple[int, int]:
    """Smallest and largest accumulator any valid input codes can produce (exact, per element).

    Input codes lie in [0, hi], so a term's extremes are hi times the sum of the negative
    (positive) weights feeding an output; the bias adds per element.
    """
    lo: Any = np.int64(0)
    hi: Any = np.int64(0)
    for x_name, w_name, form in zip(soma.inputs, soma.weights, soma.forms):
        xhi = np.int64(graph.type_of(x_name).hi)  # type: ignore[union-attr]
        w = np.asarray(graph.constants[w_name], dtype=np.int64)
        neg, pos = np.minimum(w, 0), np.maximum(w, 0)
        if form == "matmul":
            neg, pos = neg.sum(axis=0), pos.sum(axis=0)
        lo = lo + xhi * neg
        hi = hi + xhi * pos
    if soma.bias is not None:
        b = np.asarray(graph.constants[soma.bias], dtype=np.int64)
        lo, hi = lo + b, hi + b
    return int(np.min(lo)), int(np.max(hi))


def soma_requant(soma: Soma, acc: np.ndarray) -> np.ndarray:
    """The Soma's own requantization of ``acc`` (the same call the backends make)."""
    out: CodeType = soma.type  # type: ignore[assignment]
    return requantize(acc, soma.scale_in, np.asarray(soma.scale_w, dtype=np.float32), out.scale_array(),
                      out.zero_point_array(), out.bits, soma.requant)


def requant_steps(soma: Soma, acc_lo: int, acc_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Step points of ``requantize`` on [acc_lo, acc_hi]: starts ``s`` (s[0] = acc_lo) and the code
    on each interval [s[i], s[i+1]). Vectorised bisection, one lane per candidate code; relies on
    requantize being non-decreasing in acc (float32 conversion, a positive scale, rint and clip
    all are), which :func:`_check_monotone` double-checks on the result."""
    c_lo = int(soma_requant(soma, np.array([acc_lo], np.int64))[0])
    c_hi = int(soma_requant(soma, np.array([acc_hi], np.int64))[0])
    targets = np.arange(c_lo + 1, c_hi + 1, dtype=np.int64)
    lo = np.full(targets.shape, acc_lo, np.int64)  # code(lo) < target
    hi = np.full(targets.shape, acc_hi, np.int64)  # code(hi) >= target
    while targets.size and np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        up = soma_requant(soma, mid) >= targets
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    starts = np.unique(np.concatenate([[acc_lo], hi]))
    codes = soma_requant(soma, starts)
    _check_monotone(soma, starts, codes)
    return starts, codes


def _check_monotone(soma: Soma, starts: np.ndarray, codes: np.ndarray) -> None:
    if starts.size > 1:
        before = soma_requant(soma, starts[1:] - 1)
        if not (np.all(np.diff(codes) > 0) and np.all(before == codes[:-1])):  # pragma: no cover
            raise AssertionError(f"requantize of %{soma.name} is not a step function on its accumulator")


def composed_step_table(soma: Soma, asnc: ASNCSegment, graph: Graph, acc_lo: int, acc_hi: int):
    """The exact accumulator-domain table (thresholds, slopes, intercepts) of ASNC(requant(acc))."""
    starts, codes = requant_steps(soma, acc_lo, acc_hi)
    c = graph.constants
    y = asnc_evaluate(codes, c[asnc.thresholds], c[asnc.slopes], c[asnc.intercepts], asnc.shift,
                      asnc.type.bits)  # type: ignore[union-attr]
    keep = np.concatenate([[True], y[1:] != y[:-1]])  # merge equal neighbours
    starts, y = starts[keep], y[keep]
    return starts[1:].astype(np.int64), np.zeros(y.size, np.int64), y.astype(np.int64), starts, codes


# --------------------------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------------------------


@register_pass
@dataclass(frozen=True)
class FuseAsnc(Pass):
    """Fuse Soma -> ASNC pairs into SomaASNC (ASNC reads the accumulator; saves N_mid+1 steps)."""

    name: ClassVar[str] = "fuse-asnc"
    mode: Literal["exact", "refit"] = option("exact", "exact: step table, codes unchanged | refit: fit f on acc")
    max_segments: int = option(32, "refit: segments of the accumulator-domain fit")
    max_exact_segments: int = option(4096, "exact: skip a pair whose composed table needs more segments")
    max_mid_bits: int = option(16, "skip pairs whose intermediate code is wider (bisection lanes = 2^bits)")

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "refit"):
            raise ValueError(f"fuse-asnc: mode must be exact or refit, got {self.mode!r}")
        if self.max_segments < 1 or self.max_exact_segments < 1:
            raise ValueError("fuse-asnc: segment limits must be >= 1")

    def run(self, graph: Graph) -> PassResult:
        users = graph.users()
        outputs = set(graph.outputs)
        ed = GraphEditor(graph)
        details: dict[str, dict[str, Any]] = {}
        skipped: dict[str, str] = {}
        for n in graph.nodes:
            if not isinstance(n, ASNCSegment):
                continue
            src = ed.get(n.inputs[0])
            if not isinstance(src, Soma):
                continue
            why = self._ineligible(src, n, graph, users, outputs)
            if why:
                skipped[n.name] = why
                continue
            acc_lo, acc_hi = soma_acc_range(src, graph)
            if self.mode == "exact":
                thr, a, c, starts, codes = composed_step_table(src, n, graph, acc_lo, acc_hi)
                if a.size > self.max_exact_segments:
                    skipped[n.name] = f"composed table needs {a.size} > max_exact_segments segments"
                    continue
                shift, info = 0, {"segments_before": _segments(n, graph), "segments_after": int(a.size)}
            else:
                res = _refit(src, n, graph, acc_lo, acc_hi, self.max_segments)
                if isinstance(res, str):
                    skipped[n.name] = res
                    continue
                thr, a, c, shift, info = res
            mid: CodeType = src.type  # type: ignore[assignment]
            elements = int(np.prod(mid.shape))
            info.update({"soma": src.name, "acc_range": [acc_lo, acc_hi], "mid_bits": mid.bits,
                         "steps_saved": mid.bits + 1, "mid_elements": elements,
                         "spikes_saved_estimate": elements * mid.bits / 2})
            names = {k: ed.add_constant(f"{n.name}.fused.{k}", v)
                     for k, v in (("thresholds", thr), ("slopes", a), ("intercepts", c))}
            ed.replace(SomaASNC(
                name=n.name, inputs=src.inputs, type=n.type, weights=src.weights, forms=src.forms, bias=src.bias,
                scale_in=src.scale_in, scale_w=src.scale_w, requant=src.requant, function=n.function,
                params=n.params, thresholds=names["thresholds"], slopes=names["slopes"],
                intercepts=names["intercepts"], shift=shift, histogram=n.histogram))
            ed.erase(src.name)  # its one reader now reads the Soma's inputs
            details[n.name] = info
        base_info: dict[str, Any] = {"mode": self.mode, "fused": len(details), "skipped": skipped}
        if not details:
            return PassResult(graph, False, base_info)
        g = ed.finish(prune_nodes=False)
        before, after = critical_path(graph), critical_path(g)
        base_info.update({
            "latency_steps": {"before": before, "after": after, "saved": before - after},
            "steps_saved_per_pair": {k: v["steps_saved"] for k, v in details.items()},
            "spikes_saved_estimate": sum(v["spikes_saved_estimate"] for v in details.values()),
            "nodes": details})
        return PassResult(g, True, base_info)

    def _ineligible(self, soma: Soma, asnc: ASNCSegment, graph: Graph, users: Mapping[str, tuple[Node, ...]],
                    outputs: set[str]) -> str:
        if soma.name in outputs:
            return "the Soma is a graph output"
        if len(users[soma.name]) != 1:
            return "the Soma has other consumers"
        if len(soma.scale_w) != 1:
            return "per-channel weight scale (one table cannot serve every channel)"
        mid = soma.type
        if not (isinstance(mid, CodeType) and mid.per_tensor):
            return "per-axis intermediate code"
        if mid.bits > self.max_mid_bits:
            return f"intermediate code has {mid.bits} > max_mid_bits bits"
        refs = list(soma.const_refs()) + [asnc.thresholds, asnc.slopes, asnc.intercepts]
        if any(not isinstance(graph.constants[r], np.ndarray) for r in refs):
            return "shape-only constants"
        return ""


def _segments(asnc: ASNCSegment, graph: Graph) -> int:
    return int(graph.constants[asnc.thresholds].shape[0]) + 1


# --------------------------------------------------------------------------------------------
# refit mode
# --------------------------------------------------------------------------------------------


def _calibration_acc(soma: Soma, asnc: ASNCSegment, graph: Graph, starts: np.ndarray, codes: np.ndarray,
                     acc_hi: int) -> np.ndarray:
    """Accumulator samples distributed like the ASNC's inputs (histogram or the fitter's default),
    spread evenly over each intermediate code's accumulator interval."""
    from lasercc.asnc.distribution import as_q, default_gaussian

    mid_q = as_q(soma.type, "intermediate code")
    h = graph.constants[asnc.histogram] if asnc.histogram is not None else None
    if isinstance(h, np.ndarray) and h.size == mid_q.hi + 1 and h.sum() > 0:
        w = np.asarray(h, np.float64)[codes]
    else:
        mu, sigma = default_gaussian(mid_q)
        w = np.exp(-0.5 * ((mid_q.real(codes) - mu) / max(sigma, 1e-30)) ** 2)
    counts = np.maximum(np.rint(w / w.sum() * REFIT_SAMPLES), 0).astype(np.int64)
    ends = np.append(starts[1:], acc_hi + 1)
    out = [np.linspace(s, e - 1, k).round().astype(np.int64) for s, e, k in zip(starts, ends, counts) if k > 0]
    return np.concatenate(out) if out else starts.copy()


def _refit(soma: Soma, asnc: ASNCSegment, graph: Graph, acc_lo: int, acc_hi: int, max_segments: int):
    """Fit ``asnc.function`` on the accumulator; returns (thr, a, c, shift, info) or a skip reason."""
    from lasercc.asnc import FUNCTIONS, fit
    from lasercc.asnc.distribution import Q
    from lasercc.asnc.functions import resolve

    if asnc.function not in FUNCTIONS:
        return f"function {asnc.function!r} has no real definition to refit"
    offset = min(acc_lo, 0)
    bits = max(2, (max(acc_hi, 0) - offset).bit_length())
    if bits > 32:
        return f"accumulator needs {bits} > 32 bits for the fitter"
    scale = float(np.float32(soma.scale_in) * np.float32(soma.scale_w[0]))
    in_q = Q(bits, scale, -offset)
    starts, codes = requant_steps(soma, acc_lo, acc_hi)
    acc = _calibration_acc(soma, asnc, graph, starts, codes, acc_hi)
    table = fit(asnc.function, params=tuple(asnc.params), input_q=in_q, output_q=asnc.type,
                samples=in_q.real(acc - offset), max_segments=max_segments)
    a = np.asarray(table.slopes, np.int64)
    c = np.asarray(table.intercepts, np.int64) - a * np.int64(offset)  # a*u + c with u = acc - offset
    thr = np.asarray(table.thresholds, np.int64) + np.int64(offset)
    shift = int(table.shift)
    bound = max(abs(acc_lo), abs(acc_hi)) + 1
    # the verifier bounds |a*acc + c| over the Soma's symmetric |acc| bound, not the offset range
    while shift > 0 and int(np.abs(a).max()) * bound + int(np.abs(c).max()) >= 1 << ASNC_LIMIT_BITS:
        a, c, shift = a >> 1, c >> 1, shift - 1  # pragma: no cover - only for extreme slopes
    # error vs the exact real function on the calibration-like accumulators, fused and unfused
    _, f = resolve(asnc.function, tuple(asnc.params))
    out_q: CodeType = asnc.type  # type: ignore[assignment]
    s_out, zp_out = float(np.float32(out_q.scale[0])), int(out_q.zero_point[0])
    exact = f(in_q.real(acc - offset))
    k = graph.constants
    unfused = asnc_evaluate(soma_requant(soma, acc), k[asnc.thresholds], k[asnc.slopes], k[asnc.intercepts],
                            asnc.shift, out_q.bits)
    fused = asnc_evaluate(acc, thr, a, c, shift, out_q.bits)

    def mse(y: np.ndarray) -> float:
        return float(np.mean((s_out * (y - zp_out) - exact) ** 2))

    info = {"segments_before": _segments(asnc, graph), "segments_after": int(a.size),
            "mse_unfused": mse(unfused), "mse_fused": mse(fused),
            "max_code_diff": int(np.abs(fused - unfused).max()) if acc.size else 0,
            "code_mismatch_rate": float(np.mean(fused != unfused)) if acc.size else 0.0,
            "samples": int(acc.size)}
    if not math.isfinite(info["mse_fused"]):  # pragma: no cover - a fitter bug
        return "refit produced a non-finite error"
    return thr, a, c, shift, info
