"""Run-time saturation: codes forced to the edge of their range, counted per node while a run goes.

Why: every backend agrees bit for bit on a run whose inputs lie far outside the calibration range, so
agreement says nothing about whether the codes still mean what the float model computes. Ten times larger
inputs clipped 67 % of the encoder codes and passed unreported; these counts are what ``simulate`` prints
(text and ``--json``) and warns about above a threshold (:data:`SATURATION_WARN`).

What is counted, per node kind (``kind`` in the report):

* ``bse_encode`` of a real graph input -- **clipped**, exact: ``rint(x / scale) + zero_point`` (in the
  precision :func:`~lasercc.semantics.quant.quantize` uses) outside ``[0, 2^N - 1]``.
* ``soma`` / ``decode_mac`` (linear requantization) -- **clipped**, exact: accumulators whose code, before
  the clip, falls outside ``[0, 2^N - 1]``. The executor hands each accumulator over before requantizing it
  (:attr:`Executor.acc_observer`); per node, the accumulator interval that is not clipped is found once by
  bisection through the shared requantization rule, so a run costs two comparisons per accumulator.
  An executor without the hook (a user's own) falls back to **at_limit**, an upper bound: codes equal to a
  range limit that is not the zero point (a code that lands exactly on the limit counts too).
* ``asnc`` -- exact, two parts (``count`` is the number of codes with either):
  **clamped**: the output code sits at a range limit and the real function, evaluated on the dequantized
  input code and quantized without the clip, lies beyond that limit (the table could not represent the
  value). For a function not in :data:`lasercc.asnc.FUNCTIONS` (``onnx_chain`` tables) the table's own
  value before its clip is used instead: ``(a*x + c) >> k`` outside the code range.
  **outside_calibration**: the input code lies outside the range of codes calibration saw (the first and
  last non-zero bins of the node's ``histogram``): there a fitted table (``asnc-fit``) was fitted on no
  data. Lookup tables (one segment per code, what the frontend emits) hold every code's exact value and
  nodes without a histogram count none.
  For inputs of at most :data:`FLAG_TABLE_BITS` bits (per-tensor types) both flags are tabulated once per
  node for every input code, so a run costs one indexed load per code; wider inputs are evaluated on the
  codes at a limit only.
* ``soma_asnc`` (a Soma fused with its ASNC) -- **clamped** as for ``asnc``, with the real input
  ``acc * scale_in * scale_w`` of the accumulator the executor hands over (:attr:`Executor.acc_observer`);
  the eliminated intermediate code has no range left to be outside of.

Nonlinear nodes legitimately reach their limits (``exp(0)`` is the largest code of a softmax's ``exp``), so
they are never counted by the ``at_limit`` rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from lasercc.backends.plans import CONSTANTS, cached
from lasercc.ir.nodes import ASNCSegment, DecodeMAC, Node, Soma, SomaASNC
from lasercc.ir.types import CodeType
from lasercc.semantics.asnc import asnc_evaluate
from lasercc.semantics.quant import code_range, dequantize
from lasercc.semantics.requant import requantize, requantize_scale

# ``simulate`` warns when a node saturates more than this fraction of its codes.
SATURATION_WARN = 0.05

# ASNC inputs of at most this many bits get a per-code flag table (2^16 bytes), built once per node.
FLAG_TABLE_BITS = 16

_CLAMPED, _OUTSIDE = np.uint8(1), np.uint8(2)


def _host(v: Any) -> np.ndarray:
    return np.asarray(v.detach().cpu()) if hasattr(v, "detach") else np.asarray(v)


@functools.lru_cache(maxsize=4096)
def acc_limits(node: Soma | DecodeMAC, in_types: tuple[CodeType, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the accumulators whose code is not clipped: one interval ``[lo, hi]`` (float64
    holding exact integers, to compare with int64 or integer-valued float accumulators alike).

    Both requantization modes are non-decreasing in the accumulator (float32 conversion, a positive scale,
    round, add; or multiply, shift, add), so each end is found by bisection, bracketed around the estimate
    ``(code - zero_point) / scale``. The pre-clip code is read through the shared rule itself
    (:func:`~lasercc.semantics.requant.requantize`), run with the zero point moved up by 2^N on a code range
    of N + 2 bits, so codes below 0 and above 2^N - 1 stay distinguishable. A pure function of the node
    (scales, mode, output type) and, for DecodeMAC, its input types: cached across runs and graphs.
    """
    out: CodeType = node.type  # type: ignore[assignment]
    if isinstance(node, Soma):
        s_in, s_w = node.scale_in, np.asarray(node.scale_w, dtype=np.float32)
    else:
        s_in, s_w = in_types[0].scale[0], in_types[1].scale[0]
    s_out, zp = out.scale_array(), out.zero_point_array()
    n = max(np.size(s_w), s_out.size, zp.size)
    off = 1 << out.bits
    limit = 1 << 47  # beyond any accumulator the verifier admits (2^46)

    def pre_clip(acc: np.ndarray) -> np.ndarray:  # code + 2^N, exact for codes in [-2^N, 3 * 2^N)
        return requantize(acc, s_in, s_w, s_out, zp + off, out.bits + 2, node.requant)

    scale = np.broadcast_to(requantize_scale(s_in, s_w, s_out).astype(np.float64), (n,))
    zpf = np.broadcast_to(zp.astype(np.float64), (n,))

    def first(pred: Any, code: float) -> np.ndarray:
        """The smallest acc in [-2^47, 2^47] with pred(pre_clip(acc)), per channel."""
        est = np.clip(np.floor((code - zpf) / scale), -limit, limit).astype(np.int64)
        d = np.maximum(8, (np.abs(est) >> 20)).astype(np.int64)  # float32(acc) is exact to 2^-24 relative
        a, b = np.maximum(est - d, -limit), np.minimum(est + d, limit)
        ok_a, ok_b = pred(pre_clip(a)), pred(pre_clip(b))
        a = np.where(ok_a, -limit, a)  # a bracket that misses: fall back to the whole range
        b = np.where(ok_b, b, limit)
        while np.any(a < b):
            m = a + (b - a) // 2
            ok = pred(pre_clip(m))
            b, a = np.where(ok, m, b), np.where(ok, a, m + 1)
        return a

    lo = first(lambda c: c >= off, -0.5)  # code >= 0
    hi = first(lambda c: c > off + out.hi, out.hi + 0.5) - 1  # code <= 2^N - 1
    lim = (lo.astype(np.float64), hi.astype(np.float64))  # exact integers (< 2^53)
    if n == 1:
        lim = (lim[0].reshape(()), lim[1].reshape(()))
    for v in lim:
        v.flags.writeable = False
    return lim


@dataclass
class _ASNCPlan:
    """What one ASNC node needs to flag its codes (built on first use, constants never change)."""

    fn: Any  # float64 -> float64 real function, or None (use the table's pre-clip value)
    domain: tuple[int, int] | None  # calibrated input codes [first, last], or None (no histogram)
    flags: np.ndarray | None  # uint8 per input code (_CLAMPED | _OUTSIDE), or None (evaluate per element)


class SaturationCounter:
    """Per-node saturation counts of a run (see the module doc for what each kind means).

    Attach it to an executor with :func:`attach`; it reads the codes the executor already computed
    (nothing is recomputed except, for ASNC nodes, the real function on codes at a limit).
    """

    LINEAR = ("soma", "decode_mac")

    def __init__(self, to_numpy: Any = np.asarray, graph: Any = None) -> None:
        self.to_numpy = to_numpy
        self.graph = graph
        self.counts: dict[str, dict[str, Any]] = {}
        self._plans: dict[str, _ASNCPlan] = {}
        self._acc: dict[str, np.ndarray] = {}
        self._exact: set[str] = set()  # linear nodes counted from their accumulator
        self._limits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._codes_of: Any = None  # (value, value name) -> NumPy codes, set by attach()

    # ---- hooks --------------------------------------------------------------------------------
    def observe(self, node: Any, inputs: list[Any], output: Any) -> None:
        t = node.type
        if not isinstance(t, CodeType):
            return
        if node.op == "bse_encode" and inputs:
            x = _host(inputs[0])
            if x.dtype.kind != "f":
                return
            ft = np.float32 if t.bits <= 16 else np.float64
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                q = np.rint(x.astype(ft) / self._param(t, t.scale_array().astype(ft))) + \
                    self._param(t, t.zero_point_array())
            n = int(np.count_nonzero((q < 0) | (q > t.hi)))
            self._add(node, "clipped", q.size, clipped=n)
        elif node.op in self.LINEAR:
            if node.name in self._exact:  # counted exactly from the accumulator (observe_acc)
                return
            c = self._codes(output, node.name)
            zp = self._param(t, t.zero_point_array())
            n = int(np.count_nonzero(((c == t.hi) & (zp != t.hi)) | ((c == 0) & (zp != 0))))
            self._add(node, "at_limit", c.size, at_limit=n)
        elif isinstance(node, ASNCSegment):
            self._observe_asnc(node, self._codes(inputs[0], node.inputs[0]), lambda: self._codes(output, node.name))
        elif isinstance(node, SomaASNC):
            acc = self._acc.pop(node.name, None)
            if acc is not None:
                self._observe_soma_asnc(node, acc, self._codes(output, node.name))

    def observe_acc(self, node: Node, acc: Any) -> None:
        """An accumulator, handed over by the executor before it is requantized (Soma, DecodeMAC: counted
        here, exactly) or read by the fused table (SomaASNC: counted with its output in :meth:`observe`)."""
        if isinstance(node, SomaASNC):
            self._acc[node.name] = _host(acc)
        elif isinstance(node, Soma | DecodeMAC):
            lim = self._limits.get(node.name)
            if lim is None:
                lim = self._limits[node.name] = self._acc_limits(node)
            a = _host(acc)
            n = int(np.count_nonzero(a < lim[0])) + int(np.count_nonzero(a > lim[1]))
            self._exact.add(node.name)
            self._add(node, "clipped", a.size, clipped=n)

    def _acc_limits(self, node: Soma | DecodeMAC) -> tuple[np.ndarray, np.ndarray]:
        in_types = tuple(self.graph.type_of(i) for i in node.inputs) if isinstance(node, DecodeMAC) else ()
        return acc_limits(node, in_types)

    # ---- ASNC ---------------------------------------------------------------------------------
    def _observe_asnc(self, node: ASNCSegment, x: np.ndarray, output: Any) -> None:
        """``output()`` gives the output codes, decoded only when the flag table cannot answer alone."""
        tin = self.graph.type_of(node.inputs[0])
        plan = self._plan(node, tin)
        if plan.flags is not None:
            f = np.take(plan.flags, x.astype(np.intp, copy=False))
            total = f.size
            clamped = int(np.count_nonzero(f & _CLAMPED))
            outside = int(np.count_nonzero(f & _OUTSIDE))
            either = int(np.count_nonzero(f))
        else:
            y = output()
            total = y.size
            cm = self._clamped_mask(node, plan, x, y, lambda xs, sel: self._real_of_codes(tin, xs, sel))
            om = self._outside_mask(plan, x)
            clamped, outside = int(np.count_nonzero(cm)), int(np.count_nonzero(om))
            either = int(np.count_nonzero(cm | om))
        self._add(node, "asnc", total, either=either, clamped=clamped, outside_calibration=outside)

    def _observe_soma_asnc(self, node: SomaASNC, acc: np.ndarray, y: np.ndarray) -> None:
        plan = self._plan(node, None)
        scale = np.float64(node.scale_in) * np.asarray(node.scale_w, dtype=np.float64)

        def real(a: np.ndarray, sel: np.ndarray) -> np.ndarray:  # scale_w is per tensor or per output channel
            s = scale.reshape(()) if scale.size == 1 else np.broadcast_to(scale, y.shape)[sel]
            return a.astype(np.float64) * s

        acc = np.broadcast_to(acc, y.shape)
        cm = self._clamped_mask(node, plan, acc, y, real)
        n = int(np.count_nonzero(cm))
        self._add(node, "asnc", y.size, either=n, clamped=n, outside_calibration=0)

    def _plan(self, node: ASNCSegment | SomaASNC, tin: CodeType | None) -> _ASNCPlan:
        """Built once per node and constant table (cached executor-side, as backends cache converted weights): the
        flag table of a 16-bit input costs a function evaluation on 65,536 codes."""
        plan = self._plans.get(node.name)
        if plan is None:
            plan = self._plans[node.name] = cached(CONSTANTS.of(self.graph.constants),
                                                   ("saturation", node.thresholds, node, tin),
                                                   lambda: self._build_plan(node, tin))
        return plan

    def _build_plan(self, node: ASNCSegment | SomaASNC, tin: CodeType | None) -> _ASNCPlan:
        from lasercc.asnc.functions import FUNCTIONS, resolve  # noqa: PLC0415 - only graphs with ASNC nodes

        fn = resolve(node.function, tuple(node.params))[1] if node.function in FUNCTIONS else None
        domain = None
        if isinstance(node, ASNCSegment) and node.histogram is not None and not self._is_lookup_table(node, tin):
            h = np.asarray(self.graph.constants[node.histogram]).reshape(-1)
            seen = np.flatnonzero(h > 0)
            if seen.size and tin is not None and h.size == tin.hi + 1:
                domain = (int(seen[0]), int(seen[-1]))
        plan = _ASNCPlan(fn, domain, None)
        out = node.type
        if (tin is not None and tin.bits <= FLAG_TABLE_BITS and tin.per_tensor
                and isinstance(out, CodeType) and out.per_tensor):
            x = np.arange(tin.hi + 1, dtype=np.int64)
            y = self._table(node, x)
            cm = self._clamped_mask(node, plan, x, y, lambda xs, sel: self._real_of_codes(tin, xs, sel))
            plan.flags = (cm * _CLAMPED) | (self._outside_mask(plan, x) * _OUTSIDE)
            plan.flags = plan.flags.astype(np.uint8)
        return plan

    def _is_lookup_table(self, node: ASNCSegment, tin: CodeType | None) -> bool:
        """One segment of slope 0 per input code: the table holds each code's value and was fitted on no
        distribution, so no input code is outside its domain."""
        c = self.graph.constants
        thr, sl = np.asarray(c[node.thresholds]), np.asarray(c[node.slopes])
        return (tin is not None and thr.size == tin.hi and not sl.any()
                and bool(np.array_equal(thr, np.arange(1, tin.hi + 1))))

    def _table(self, node: ASNCSegment | SomaASNC, x: np.ndarray, clip: bool = True) -> np.ndarray:
        c = self.graph.constants
        return asnc_evaluate(x, np.asarray(c[node.thresholds]), np.asarray(c[node.slopes]),
                             np.asarray(c[node.intercepts]), node.shift, node.type.bits, clip=clip)

    @staticmethod
    def _real_of_codes(tin: CodeType, x: np.ndarray, sel: np.ndarray) -> np.ndarray:
        """Real values of the input codes ``x`` (already selected by ``sel`` from the full array)."""
        if tin.per_tensor:
            return dequantize(x, tin.scale_array(), tin.zero_point_array()).astype(np.float64)
        full = np.zeros(sel.shape, dtype=np.int64)
        full[sel] = x
        return dequantize(full, tin.scale_array(), tin.zero_point_array(), tin.axis).astype(np.float64)[sel]

    def _clamped_mask(self, node: ASNCSegment | SomaASNC, plan: _ASNCPlan, x: np.ndarray, y: np.ndarray,
                      real: Any) -> np.ndarray:
        """Codes pinned at a limit that the value they stand for exceeds (see the module doc)."""
        out: CodeType = node.type  # type: ignore[assignment]
        lo, hi = code_range(out.bits)
        at = (y == lo) | (y == hi)
        mask = np.zeros(y.shape, dtype=bool)
        if not at.any():
            return mask
        xs, ys = x[at], y[at]
        if plan.fn is None:  # the table's own value before its clip
            v = self._table(node, xs, clip=False)
        else:
            with np.errstate(all="ignore"):
                val = plan.fn(real(xs, at))
                ft = np.float32 if out.bits <= 16 else np.float64  # quantize()'s precision, without the clip
                s = np.broadcast_to(self._param(out, out.scale_array().astype(ft)), y.shape)[at]
                zp = np.broadcast_to(self._param(out, out.zero_point_array()), y.shape)[at]
                v = np.rint(val.astype(ft) / s).astype(np.float64) + zp
            v = np.where(np.isnan(v), ys, v)
        mask[at] = ((ys == hi) & (v > hi)) | ((ys == lo) & (v < lo))
        return mask

    @staticmethod
    def _outside_mask(plan: _ASNCPlan, x: np.ndarray) -> np.ndarray:
        if plan.domain is None:
            return np.zeros(x.shape, dtype=bool)
        return (x < plan.domain[0]) | (x > plan.domain[1])

    # ---- bookkeeping --------------------------------------------------------------------------
    def _codes(self, value: Any, name: str) -> np.ndarray:
        if self._codes_of is not None:
            return _host(self._codes_of(value, name))
        if isinstance(value, np.ndarray) and value.dtype == np.float32:  # the float32-code executor: exact ints
            return value.astype(np.intp)
        return _host(self.to_numpy(value))

    @staticmethod
    def _param(t: CodeType, arr: np.ndarray) -> np.ndarray:
        """Per-axis parameters shaped from the trailing axes (values may carry a leading chunk axis)."""
        if t.axis is None:
            return np.asarray(arr).reshape(())
        k = len(t.shape) - t.axis
        return np.asarray(arr).reshape((-1,) + (1,) * (k - 1))

    def _add(self, node: Any, kind: str, total: int, **counts: int) -> None:
        rec = self.counts.setdefault(node.name, {"op": node.op, "kind": kind, "total": 0, **dict.fromkeys(counts, 0)})
        rec["total"] += total
        for k, n in counts.items():
            rec[k] += n

    def summary(self) -> dict[str, dict[str, Any]]:
        """Nodes with at least one saturated code, largest fraction first: ``op``, ``kind``, ``count``,
        ``total``, ``fraction``; ASNC nodes add ``clamped`` and ``outside_calibration`` (``count`` is the
        codes with either) and their ``kind`` names the non-zero parts."""
        out = {}
        for name, rec in self.counts.items():
            if rec["kind"] == "asnc":
                n = rec["either"]
                parts = [k for k in ("clamped", "outside_calibration") if rec[k]]
                extra = {"clamped": rec["clamped"], "outside_calibration": rec["outside_calibration"]}
                kind = "+".join(parts)
            else:
                n, kind, extra = rec[rec["kind"]], rec["kind"], {}
            if n:
                tot = rec["total"]
                out[name] = {"op": rec["op"], "kind": kind, "count": n, "total": tot,
                             "fraction": n / tot if tot else 0.0, **extra}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["fraction"]))


def attach(ex: Any, sat: SaturationCounter) -> None:
    """Chain ``sat`` after the executor's own ``observe`` (statistics) on this instance, and let the
    executor hand fused accumulators to it. Spike-mode executors decode trains to codes (signed trains
    included) with their own ``_decode``; code-mode executors with ``to_numpy_codes``."""
    orig = ex.observe
    sat.to_numpy = ex.to_numpy_codes
    decode = getattr(ex, "_decode", None)
    if decode is not None:
        sat._codes_of = lambda v, name: decode(v.detach() if hasattr(v, "detach") else v, name)

    def observe(node: Any, inputs: list[Any], output: Any) -> None:
        orig(node, inputs, output)
        if sat.graph is None:
            sat.graph = ex.graph
        sat.observe(node, inputs, output)

    ex.observe = observe
    ex.acc_observer = sat.observe_acc
