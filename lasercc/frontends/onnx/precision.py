"""Bits where a steep table needs them: the calibrated width of the values under an elementwise table.

Why. A table (an elementwise chain, :mod:`chains`) reads its input's codes. Where its function is steep
against its output grid -- the rsqrt of a small variance, the reciprocal of a small sum, exp over a wide
range -- one input code step moves the result by many output steps, so the input's own rounding, and every
rounding it inherited from the nodes that computed it, come out amplified. ONNX's LayerNormalization
function body at 8 bits: ``E[x^2] - E[x]^2`` of 8-bit statistics, each within ~1 step of its own grid, gave
an InvStdDev 16 output steps off (the fused op, whose internals are ``internal_bits`` wide, is within 3).
The table itself is exact; its input is not fine enough.

Rule (a linearised error budget, planned once from calibration before any tensor gets its type):

* the *gain* of a table on root ``r`` is how many output steps one input step moves it, at the widths the
  lowering would otherwise use, each over its calibrated range (``act_bits`` for the root; for the result
  ``act_bits``, or ``norm_input_bits`` when a reduction reads it -- the exps of a softmax written out):
  ``G = max |f(x + step/2) - f(x - step/2)| / out_step`` over the calibration samples of ``r`` (for a table of
  ``1 / f`` -- a Div by the exit -- the same with ``1 / f``);
* where ``G`` exceeds :data:`GAIN_LIMIT`, ``r`` must carry an absolute error of at most
  ``need = step * GAIN_TARGET / G``, and that budget is passed back through the nodes computing ``r`` by
  their derivatives (:func:`_push`): data movement (Slice, Split, Gather and Pad of their data input too) and
  float Casts pass it on, a table passes ``need / (its largest slope)`` to its root (:func:`_table_slope`),
  a sum of ``n`` live operands gives each ``need / n``, a product ``a * b`` gives ``a`` the budget
  ``need / (2 max|b|)``, a product or quotient by a constant scales it, a mean passes it on. Other ops end the
  walk (their handlers plan their own internals);
* a tensor's width is the least ``b`` whose step ``range / (2^b - 1)`` meets its budget, at most
  ``internal_bits``. The walk stops at a tensor whose default width already does (its inputs are then as fine
  as the lowering would make them anyway).

Nothing here changes a model-chosen (QDQ) type or any width at ``act_bits >= internal_bits`` (16-bit models).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lasercc.frontends.onnx.registry import width_hook

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

# A table that moves its result by more than GAIN_LIMIT output steps per input step gets an input fine enough for
# GAIN_TARGET. Why a trigger above 1: a slope-1 table over similar ranges (GELU, tanh of a narrow range) moves one
# step per step -- its rounding is the output's own, nothing to widen.
GAIN_LIMIT = 2.0
GAIN_TARGET = 0.5
_SAMPLES = 4096
_MOVES = frozenset({"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast", "CastLike",
                    "Expand", "Dropout", "ReduceMean", "Slice", "Split", "Gather", "Pad"})  # data: input 0


@width_hook
def demanded_width(L: Lowerer, tensor: str) -> int:
    """``Lowerer.out_type``'s question (``registry.WIDTH_HOOKS``): the width planned for ``tensor``, or 0."""
    return demanded_bits(L).get(tensor, 0)


def demanded_bits(L: Lowerer) -> dict[str, int]:
    """Tensor -> the calibrated width its consumers' tables need (only where more than ``act_bits``); planned
    on first use, after calibration."""
    got = L.__dict__.get("_demanded_bits")
    if got is None:
        got = {}
        if L.opts.act_bits < L.opts.internal_bits:
            need: dict[str, float] = {}
            for c in L.__dict__.get("chain_cones", ()):
                r = _root_need(L, c)
                if r is not None:
                    _push(L, c.root, r, need, got)
        L.__dict__["_demanded_bits"] = got
    return got


def _root_need(L: Lowerer, c) -> float | None:  # noqa: ANN001 - chains.Cone
    """The absolute error the table of cone ``c`` allows its root (None: the default width is fine)."""
    from lasercc.frontends.onnx.chains import evaluate

    rr, er = L.stats.range(c.root), L.stats.range(c.exit)
    s = L.stats.values(c.root)
    if rr is None or s is None or not np.size(s) or (er is None and not c.recip) or rr[1] <= rr[0]:
        return None
    consts = _scalar_consts(L, c)
    if consts is None:
        return None
    top = (1 << L.opts.act_bits) - 1
    step = (rr[1] - rr[0]) / top
    out_top = top if c.recip else (1 << L.reader_bits(c.exit)) - 1  # a table read by a reduction is wider
    x = np.asarray(s, np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    x = np.unique(x[:: max(1, x.size // _SAMPLES)])
    if x.size == 0:
        return None
    lo, hi = np.clip(x - step / 2, rr[0], rr[1]), np.clip(x + step / 2, rr[0], rr[1])
    y = evaluate(L, c, np.concatenate([x, lo, hi]).astype(np.float32), consts)
    if y is None or y.dtype.kind != "f":
        return None
    y = y.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if c.recip:
            y = 1.0 / y
        fx, flo, fhi = y[: x.size], y[x.size: 2 * x.size], y[2 * x.size:]
        moved = np.abs(fhi - flo)
    ok = np.isfinite(moved) & np.isfinite(fx)
    if not ok.any():
        return None
    span = float(np.ptp(fx[ok])) if c.recip else er[1] - er[0]
    if span <= 0:
        return None
    gain = float(np.max(moved[ok])) / (span / out_top)
    return None if gain <= GAIN_LIMIT else step * GAIN_TARGET / gain


def _scalar_consts(L: Lowerer, c) -> dict[str, np.ndarray] | None:  # noqa: ANN001 - chains.Cone
    """The cone's constants by name when each is a known scalar (what a table over one input needs); else None."""
    from lasercc.frontends.onnx.chains import static_value

    consts = {}
    for k in c.consts:
        v = static_value(L, k)
        if v is None or np.size(v) != 1:
            return None
        consts[k] = np.asarray(v)
    return consts


def _cone_of(L: Lowerer, t: str):  # noqa: ANN202 - chains.Cone | None
    """The elementwise table (chains.Cone) whose exit is ``t`` (not a reciprocal one), or None."""
    for c in L.__dict__.get("chain_cones", ()):
        if c.exit == t and not c.recip:
            return c
    return None


def _table_slope(L: Lowerer, c) -> float | None:  # noqa: ANN001 - chains.Cone
    """The table's largest slope ``|f(x + h) - f(x - h)| / 2h`` over its root's calibration samples (``h`` half an
    ``act_bits`` step of the root's range): how much finer than its exit's budget the root must be.

    Why: the walk widens a tensor that a steep table downstream reads; when that tensor is itself a table's output
    (GLU's ``a * sigmoid(b)`` under a written-out LayerNorm, Speech2Text's subsampler at opset 13), widening the
    output alone leaves its input's coarser grid to decide the result, and the table is then refused for it
    (chains._check_resolution: 133 output steps at 8 bits, measured)."""
    from lasercc.frontends.onnx.chains import evaluate

    rr, s = L.stats.range(c.root), L.stats.values(c.root)
    if rr is None or s is None or not np.size(s) or rr[1] <= rr[0]:
        return None
    consts = _scalar_consts(L, c)
    if consts is None:
        return None
    h = (rr[1] - rr[0]) / ((1 << L.opts.act_bits) - 1) / 2
    x = np.asarray(s, np.float64).reshape(-1)
    x = np.unique(x[np.isfinite(x)][:: max(1, x.size // _SAMPLES)])
    if x.size == 0:
        return None
    y = evaluate(L, c, np.concatenate([np.clip(x - h, rr[0], rr[1]), np.clip(x + h, rr[0], rr[1])]).astype(np.float32),
                 consts)
    if y is None or y.dtype.kind != "f":
        return None
    moved = np.abs(y[x.size:].astype(np.float64) - y[: x.size].astype(np.float64))
    moved = moved[np.isfinite(moved)]
    return float(np.max(moved)) / (2 * h) if moved.size and np.max(moved) > 0 else None


def _maxabs(L: Lowerer, t: str) -> float | None:
    from lasercc.frontends.onnx.chains import static_value

    c = static_value(L, t)
    if c is not None:
        return float(np.max(np.abs(c))) if np.size(c) else None
    r = L.stats.range(t)
    return None if r is None else max(abs(r[0]), abs(r[1]))


def _push(L: Lowerer, t: str, need: float, best: dict[str, float], bits: dict[str, int]) -> None:
    """Give tensor ``t`` an error budget ``need``; record its width and pass the budget to its inputs."""
    from lasercc.frontends.onnx.chains import static_value

    if not need > 0 or need >= best.get(t, math.inf) or static_value(L, t) is not None:
        return
    r = L.stats.range(t)
    if r is None or r[1] <= r[0]:
        return
    op, n = L.sources.get(t, ("", None))
    table = None
    if n is not None and (id(n) in L.fused or n.domain not in ("", "ai.onnx")):
        table = _cone_of(L, t) if id(n) in L.fused else None
        n = None  # a table or fused op (planned by its own lowering), a contrib op: not walked through
    live = [] if n is None else [i for i in n.input if i and static_value(L, i) is None]
    # no finer than the operands can deliver at their widest: a grid below their rounding is noise (and a sum that
    # cancels a large common offset would only be refused for it, as emit.check_cancellation does)
    floor = _floor(L, op, n, live) if n is not None else 0.0
    b = min(math.ceil(math.log2((r[1] - r[0]) / max(need, floor) + 1.0)), L.opts.internal_bits)
    if b <= L.opts.act_bits:
        return
    best[t] = need
    bits[t] = max(bits.get(t, 0), b)
    if table is not None:  # a table's exit made finer needs a root as fine through the table's slope
        slope = _table_slope(L, table)
        if slope:
            _push(L, table.root, need / slope, best, bits)
    if n is None:
        return
    if op in _MOVES and n.input:
        _push(L, n.input[0], need, best, bits)
    elif op in ("Add", "Sub", "Sum", "Neg") and live:
        for i in dict.fromkeys(live):
            _push(L, i, need / live.count(i) / len(live), best, bits)
    elif op == "Mul" and len(n.input) == 2:
        a, b_ = n.input
        ma, mb = _maxabs(L, a), _maxabs(L, b_)
        if ma is None or mb is None:
            return
        if a == b_:
            _push(L, a, need / (2.0 * max(ma, 1e-30)), best, bits)
            return
        for i, other in ((a, mb), (b_, ma)):
            if i in live:
                _push(L, i, need / (len(live) * max(other, 1e-30)), best, bits)
    elif op == "Div" and len(n.input) == 2 and live == [n.input[0]]:
        c = static_value(L, n.input[1])
        if c is not None and np.size(c) and float(np.min(np.abs(c))) > 0:
            _push(L, n.input[0], need * float(np.min(np.abs(c))), best, bits)
    elif op == "Pow" and len(n.input) == 2 and live == [n.input[0]]:
        p, m = static_value(L, n.input[1]), _maxabs(L, n.input[0])
        if p is not None and np.size(p) == 1 and float(p.reshape(-1)[0]) == 2.0 and m is not None:
            _push(L, n.input[0], need / (2.0 * max(m, 1e-30)), best, bits)


def _floor(L: Lowerer, op: str, n, live: list[str]) -> float:  # noqa: ANN001 - onnx.NodeProto
    """The rounding a sum or product carries from its live operands even at ``internal_bits`` (half a step each,
    times the other factor's magnitude for a product); 0 where unknown."""
    def half_step(i: str) -> float:
        r = L.stats.range(i)
        return 0.0 if r is None else (r[1] - r[0]) / ((1 << L.opts.internal_bits) - 1) / 2.0

    if op in ("Add", "Sub", "Sum"):
        return sum(half_step(i) for i in live)
    if op == "Mul" and len(n.input) == 2:
        out = 0.0
        for i, other in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            if i in live:
                m = _maxabs(L, other)
                out += half_step(i) * (m or 0.0)
        return out
    return 0.0
