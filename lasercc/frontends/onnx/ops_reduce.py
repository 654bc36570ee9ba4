"""Reductions, Softmax / LogSoftmax, ArgMax / ArgMin and the variadic Max / Min / Sum.

Every reduction works on the last axis: the reduced axes are moved last by a ``Transpose`` and merged by a
``Reshape`` (data movement, no spikes), the reduction runs over the last axis, and a ``Reshape`` gives the
ONNX result shape (``keepdims`` or not). ``axes`` is an attribute or a constant input, negative axes count
from the end, an empty/absent ``axes`` means every axis (or nothing with ``noop_with_empty_axes=1``). An
``axes`` input computed from graph inputs is refused: the result's shape would depend on input values.

Per value class (see :mod:`values`):

* (a) constants never get here (the driver folds them with ``onnx.reference``);
* (b) exact integer data (``Ids``, integer ``Act``): sums by Somas with integer weights and scale 1, max/min
  by ``WTAMax``, so the codes stay exact; the result's interval comes from interval arithmetic;
* (c) activations:

  - ReduceSum / ReduceMean: one Soma with an all-ones ``[K, 1]`` weight (scale ``1/K`` for the mean);
  - ReduceSumSquare: one DecodeMAC matmul ``x[..., 1, K] @ x[..., K, 1]`` (an exact integer sum of squares,
    one rounding); ReduceL2: the same into an internal type, then an ASNC ``sqrt`` table;
  - ReduceMax / ReduceMin: ``WTAMax`` (bit-serial winner-take-all); the minimum is ``-max(-x)`` with the
    negations exact (mirrored code types). The result keeps the input's code type: a maximum *is* one of
    the input codes, so no rounding at all;
  - ReduceLogSumExp: ``m + log(sum(exp(x - m)))`` with the Softmax front (``cores.exp_shifted``) and an
    ASNC ``log`` table;
  - Softmax (``cores.softmax_core``) and LogSoftmax (``(x - m) - log(sum exp(x - m))``) along any axis; at
    opset < 13 the input is flattened to 2-D at ``axis`` (the old semantics) instead of moving one axis;
  - ArgMax / ArgMin (value class (b) result, exact int64): ``m = WTAMax(x)``; ``eq = (x == m)`` by an exact
    Soma ``x - m`` and an ASNC ``equal_to`` table; ``eq * ramp`` by a Soma with a constant per-position
    weight (``K - i`` for the first index, ``i + 1`` with ``select_last_index``); ``WTAMax`` of that; an exact
    Soma maps it back to the index. No new node kind. ArgMin is ArgMax of the exact negation. Ties are
    decided on the codes: two inputs closer than one code step are equal for ArgMax.

Max / Min (variadic, broadcasting, activations and constants): every operand is brought into one code type
-- an activation by a requantizing Soma (free when it already has that type), a constant by a Soma with
zero weights on an activation operand and the constant as its bias -- broadcast (``Take``), stacked on a new
last axis (``Concat``) and reduced by ``WTAMax``. Why this and not ``b + relu(a - b)`` (Soma, ASNC table,
Soma): rounding is monotone, so ``max(q(a), q(b)) = q(max(a, b))``: one rounding in total, any number of
operands in one node, no table. Min is ``-max(-a, -b)``, the negation folded into the same Somas. The common
type covers ``[max_i lo_i, max_i hi_i]`` (Min: ``[min_i lo_i, min_i hi_i]``) from the operands' own code
ranges -- interval arithmetic, nothing calibrated can saturate -- or the model's type in a QDQ model.

Sum (variadic): one multi-input Soma in a common fine scale (``_sum_acts``: finer than ``emit.add_acts``),
constants in its bias; integer operands exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    broadcast_to,
    const_int,
    int_of,
    int_type,
    is_const,
    is_int,
    model_type,
    move,
    q_input,
)
from lasercc.frontends.onnx.cores import check_softmax_input, exp_shifted, softmax_core
from lasercc.frontends.onnx.emit import ADD_FINE_BITS, ADD_MAX_WEIGHT, with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, attr, domain_of, prepare_hook, register
from lasercc.frontends.onnx.values import Act, Const, Ids, Masked, MaskLengths, QWeight, Val, code_type, range_type
from lasercc.ir.nodes import Concat, WTAMax
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer


# ---- shared pieces -------------------------------------------------------------------------------------


def _shape(v: Val) -> tuple[int, ...]:
    if isinstance(v, Masked):
        return v.act.shape
    if isinstance(v, Act | Ids):
        return tuple(v.shape)
    return tuple(np.shape(v.value if isinstance(v, Const) else v.q))  # type: ignore[union-attr]


def _axes(L: Lowerer, n: onnx.NodeProto, ins: list, rank: int) -> list[int] | None:
    """The reduced axes, sorted and non-negative; None for a no-op (empty axes, noop_with_empty_axes=1)."""
    if len(ins) > 1 and ins[1] is not None:
        if not is_const(ins[1]):
            raise FrontendError(f"{n.op_type} with 'axes' computed from graph inputs (run-time data): the result's "
                                "shape would depend on input values; make 'axes' a constant (an initializer)")
        axes = [int(a) for a in np.asarray(L.const_value(ins[1])).reshape(-1)]
    else:
        axes = [int(a) for a in (attr(n, "axes", None) or [])]
    if not axes:
        return None if attr(n, "noop_with_empty_axes", 0) else list(range(rank))
    for a in axes:
        if not -max(rank, 1) <= a < max(rank, 1):
            raise FrontendError(f"{n.op_type} axis {a} is out of range for a rank-{rank} input")
    return sorted({a % max(rank, 1) for a in axes}) if rank else []


def _to_last(L: Lowerer, n: onnx.NodeProto, x: Act, axes: list[int], keepdims: bool) -> tuple[Act, tuple, tuple]:
    """``x`` with ``axes`` moved last and merged: ``[lead..., K]``; also ``lead`` and the ONNX result shape."""
    shape = x.shape
    rank = len(shape)
    keep = [a for a in range(rank) if a not in axes]
    perm = tuple(keep + list(axes))
    if perm != tuple(range(rank)):
        x = move(L, n, x, tuple(shape[p] for p in perm), perm)  # type: ignore[assignment]
    lead = tuple(shape[a] for a in keep)
    k = int(np.prod([shape[a] for a in axes])) if axes else 1
    x = move(L, n, x, lead + (k,))  # type: ignore[assignment]
    out_shape = tuple(1 if a in axes else shape[a] for a in range(rank)) if keepdims else lead
    return x, lead, out_shape


def _wta(L: Lowerer, stem: str, x: Act) -> Act:
    """Maximum along the last axis (keepdims) by a WTAMax node: the input's codes and type, exactly."""
    t = with_shape(x.type, x.shape[:-1] + (1,))
    name = L.b.fresh(stem)
    L.b.add(WTAMax(name=name, inputs=(x.name,), type=t, axis=len(x.shape) - 1))
    return x.moved(name, t)


def mirror_type(t: CodeType, shape: tuple[int, ...] | None = None) -> CodeType:
    """The code type of ``-x`` for ``x`` of type ``t``: same scale, zero point ``2^N - 1 - z`` (codes mirrored)."""
    return code_type(t.bits, t.scale[0], t.hi - t.zero_point[0], tuple(t.shape) if shape is None else shape)


def _neg(L: Lowerer, stem: str, x: Act) -> Act:
    """``-x`` exactly: one Soma with weight -1 and requantization scale 1 into the mirrored type."""
    r = L.b.soma_mul(stem, [x], [-np.ones(1, np.int64)], x.scale, (1.0,), mirror_type(x.type))
    ir = None if x.int_range is None else (-x.int_range[1], -x.int_range[0])
    return Act(r.name, r.type, x.quantized, x.signed, x.boolean, ir)


def _int_in(L: Lowerer, stem: str, v: Val) -> Act:
    """An integer operand (integer graph input or computed integer codes) as exact codes."""
    return int_of(L, stem, v)


def _result(L: Lowerer, n: onnx.NodeProto, r: Act, out_shape: tuple[int, ...]) -> Act:
    return move(L, n, r, out_shape)  # type: ignore[return-value]


def _samples_moved(samples: np.ndarray | None, shape: tuple[int, ...], perm: tuple[int, ...] | None,
                   new_shape: tuple[int, ...]) -> np.ndarray | None:
    """Calibration values of a tensor of ``shape`` (rows stacked on axis 0, possibly calibrated at another
    batch size) in the moved layout ``new_shape`` (``perm`` applied, then a reshape), stacked on axis 0 again.
    None when the rows cannot be regrouped that way."""
    if samples is None:
        return None
    s = np.asarray(samples)
    if perm is None and tuple(new_shape) == tuple(shape):
        return s
    if not shape or s.ndim != len(shape) or tuple(s.shape[1:]) != tuple(shape[1:]):
        return None
    if perm is not None and perm[0] != 0:  # the batch axis moves: whole rows of the compiled shape only
        size = int(np.prod(shape))
        if size == 0 or s.size % size:
            return None
        s = s.reshape((-1,) + tuple(shape)).transpose((0,) + tuple(p + 1 for p in perm))
    elif perm is not None:
        s = s.transpose(perm)
    tail = tuple(new_shape[1:]) if len(new_shape) >= 2 else tuple(new_shape)
    tsize = int(np.prod(tail)) if tail else 1
    if tsize == 0 or s.size % tsize:
        return None
    return s.reshape((-1,) + tail)


def _move_masked(L: Lowerer, n: onnx.NodeProto, x: Act | Masked, shape: tuple[int, ...],
                 perm: tuple[int, ...] | None) -> Act | Masked:
    """Move an activation, or a masked activation and its mask (constant or computed), the same way."""
    if not isinstance(x, Masked):
        return move(L, n, x, shape, perm)  # type: ignore[return-value]
    a = move(L, n, x.act, shape, perm)
    assert isinstance(a, Act)
    full = x.act.shape
    if isinstance(x.mask, Act):
        m = x.mask
        if tuple(m.shape) != tuple(full):
            m = broadcast_to(L, n.output[0] + ".mask", m, full)
        mm = move(L, n, m, shape, perm)
        assert isinstance(mm, Act)
        return Masked(a, mm)
    mask = np.broadcast_to(np.asarray(x.mask, bool), full)
    mask = np.transpose(mask, perm) if perm is not None else mask.reshape(shape)
    return Masked(a, np.ascontiguousarray(mask))


def _activation(n: onnx.NodeProto, x: Val) -> Act:
    if isinstance(x, Masked):
        raise FrontendError(f"{n.op_type} of a masked (-inf) tensor is not supported (only Softmax applies masks)")
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} of {type(x).__name__} is not supported")
    _not_empty(n, x.shape)
    return x


def _not_empty(n: onnx.NodeProto, shape: tuple[int, ...]) -> None:
    """An empty tensor (a zero-size dimension) has no values to compute on: its reduction is a constant
    (0, +-inf or NaN) or another empty tensor, neither of which a spiking graph produces."""
    if 0 in tuple(shape):
        raise FrontendError(f"{n.op_type} of an empty tensor (shape {list(shape)}): its result does not depend on "
                            "any input value, so there is nothing to compute as spikes")


# ---- reductions ----------------------------------------------------------------------------------------

REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp")


@register(*REDUCE_OPS, sampled=(0,))
def reduce(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    op = n.op_type
    if op == "ReduceSum" and isinstance(x, Ids) and _mask_lengths(L, n, ins, x):
        return [MaskLengths(x)]
    integer = is_int(x)
    if integer:
        x = _int_in(L, n.output[0] + ".in", x)
    x = _activation(n, x)
    rank = len(x.shape)
    axes = _axes(L, n, ins, rank)
    keepdims = bool(attr(n, "keepdims", 1))
    if axes is None:  # noop_with_empty_axes: the input itself, except the elementwise part of the op
        return [_noop(L, n, x)]
    x2, lead, out_shape = _to_last(L, n, x, axes, keepdims)
    shape1 = lead + (1,)
    k = x2.shape[-1]
    if integer and op in ("ReduceMean", "ReduceL2", "ReduceLogSumExp"):
        raise FrontendError(f"{op} of integer data is not supported (its ONNX result is a rounded integer)")
    if op in ("ReduceMax", "ReduceMin"):
        if k == 0:
            raise FrontendError(f"{op} over an empty axis (its ONNX result is -inf/+inf, which has no code)")
        r = _neg(L, n.output[0] + ".neg", _wta(L, n.output[0] + ".max", _neg(L, n.output[0] + ".negin", x2))) \
            if op == "ReduceMin" else _wta(L, n.output[0], x2)
        want = model_type(L, n.output[0], shape1)
        if want is not None and not r.type.same_quant(want):
            r = L.b.requant_to(n.output[0] + ".q", r, want)
        return [_result(L, n, r, out_shape)]
    if op in ("ReduceSum", "ReduceMean"):
        if integer:
            lo, hi = x2.int_range  # type: ignore[misc]
            lo, hi = min(0, k * lo), max(0, k * hi)
            r = L.b.soma_matmul(n.output[0], x2, np.ones((k, 1), np.int64), (1.0,), int_type(lo, hi, shape1))
            return [_result(L, n, Act(r.name, r.type, int_range=(lo, hi)), out_shape)]
        out = _out_type(L, n, out_shape, shape1)
        w = (1.0 / k,) if op == "ReduceMean" and k else (1.0,)
        if op == "ReduceMean" and k == 0:
            raise FrontendError("ReduceMean over an empty axis (its ONNX result is NaN)")
        r = L.b.soma_matmul(n.output[0], x2, np.ones((k, 1), np.int64), w, out)
        return [_result(L, n, r, out_shape)]
    if op in ("ReduceSumSquare", "ReduceL2"):
        if integer:
            lo, hi = x2.int_range  # type: ignore[misc]
            top = k * max(lo * lo, hi * hi)
            r = _sum_squares(L, n.output[0], x2, int_type(0, top, shape1))
            return [_result(L, n, Act(r.name, r.type, int_range=(0, top)), out_shape)]
        if op == "ReduceSumSquare":
            return [_result(L, n, _sum_squares(L, n.output[0], x2, _out_type(L, n, out_shape, shape1)), out_shape)]
        q = _sum_squares(L, n.output[0] + ".sumsq", x2, _sumsq_type(L, n, x, x2, axes, shape1))
        out = _out_type(L, n, out_shape, shape1)
        ss = _samples_moved(L.stats.values(n.input[0]), x.shape, _perm(rank, axes), x2.shape)
        ssq = None if ss is None else np.sum(np.asarray(ss, np.float64) ** 2, axis=-1)
        r = L.b.asnc_lut(n.output[0], q, "sqrt", (), out, ssq)
        return [_result(L, n, r, out_shape)]
    # ReduceLogSumExp: m + log(sum(exp(x - m)))
    if k == 0:
        raise FrontendError("ReduceLogSumExp over an empty axis (its ONNX result is -inf)")
    samples = _samples_moved(L.stats.values(n.input[0]), x.shape, _perm(rank, axes), x2.shape)
    m, _, _, ssum, ssamp = exp_shifted(L, n.output[0], x2, samples)
    lg = L.b.asnc_lut(n.output[0] + ".log", ssum, "log", (), range_type(0.0, max(np.log(max(k, 2)), 1e-3),
                                                                       L.opts.internal_bits, shape1), ssamp)
    out = _out_type(L, n, out_shape, shape1)
    return [_result(L, n, _sum_acts(L, n.output[0], [m, lg], [1, 1], out), out_shape)]


# ---- log of a sum of exponentials: the log domain ----------------------------------------------------


@prepare_hook
def find_log_sum_exp(L: Lowerer) -> None:
    """``Log(ReduceSum(Exp(x)))`` is ``ReduceLogSumExp(x)``: lower it as that op (``m + log(sum(exp(x - m)))``).

    Why: written out, the sum of exponentials is an activation of its own whose grid must span ``exp`` of the
    largest input, so a row of small inputs sums to a few codes (or to code 0) and the Log amplifies that
    rounding without bound (ONNX's ReduceLogSumExp function body over random data: 448 output steps at 16 bits,
    each node within one step of its own grid). ``log(sum(exp(x)))`` never needs the sum itself: shifted by the
    row maximum every exponential lies in (0, 1] and the sum in [1, K] (``cores.exp_shifted``, Softmax's front),
    which codes resolve. This is an identity of the math, not of one exporter's spelling: the Exp's input may
    be any activation, the ReduceSum any axes (attribute or constant input, ``keepdims``,
    ``noop_with_empty_axes``), and every reader of the sum must be a Log (a sum read otherwise is needed as a
    value, and stays one). The Exp stays when something else reads it too. A prepare hook of stage 0, so the
    elementwise chains (stage 1) see the Exp and the Log as claimed."""
    consts = L.__dict__.setdefault("_static_consts", L._static_const_tensors())
    outputs = {o.name for o in L.model.graph.output}
    for r in L.model.graph.node:
        if r.op_type != "ReduceSum" or domain_of(r) or id(r) in L.skip or id(r) in L.fused or not r.input:
            continue
        if len(r.input) > 1 and r.input[1] and r.input[1] not in consts:
            continue  # axes from run-time data: the ReduceSum handler refuses it with its own message
        op, e = L.sources.get(r.input[0], ("", None))
        if op != "Exp" or e is None or domain_of(e) or id(e) in L.skip or id(e) in L.fused or e.input[0] in consts:
            continue
        logs = L.consumers.get(r.output[0], [])
        if not logs or r.output[0] in outputs or any(g.op_type != "Log" or domain_of(g) or id(g) in L.fused
                                                     for g in logs):
            continue
        exp_alone = e.output[0] not in outputs and all(c is r for c in L.consumers.get(e.output[0], []))
        L.skip.add(id(r))
        if exp_alone:
            L.skip.add(id(e))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in r.attribute}
        ins = [e.input[0]] + ([r.input[1]] if len(r.input) > 1 and r.input[1] else [])
        for g in logs:
            node = onnx.helper.make_node("ReduceLogSumExp", ins, [g.output[0]], name=g.name or g.output[0], **attrs)
            if not exp_alone:
                # the Exp stays for its other readers and may join an elementwise chain with what computes its
                # input: the fused op reading that input must count as a reader, so the chain keeps it as a value.
                # (A skipped Exp already counts; its input keeps the width it had, so a softmax written out over
                # rows offset by 1e4 is not newly judged as a 16-bit difference by emit.check_cancellation.)
                L.consumers.setdefault(e.input[0], []).append(node)
            L.fused[id(g)] = _lse_emitter(L, e, r, g, node, exp_alone)
            L.fused_samples[id(g)] = (e.input[0],)


def _lse_emitter(L: Lowerer, e: onnx.NodeProto, r: onnx.NodeProto, g: onnx.NodeProto, node: onnx.NodeProto,  # noqa: ANN202
                 exp_alone: bool):
    """The Log node ``g``'s emitter: ``node`` (ReduceLogSumExp of the Exp's input with the ReduceSum's axes), or
    (the input is no activation) the three nodes by their own handlers."""
    ins = list(node.input)

    def emit() -> list:
        x = L.env.get(e.input[0])
        if isinstance(x, Act | Masked):  # a masked input: the reduction's own refusal names it
            return reduce(L, node, [x] + [L.env.get(i) for i in ins[1:]])
        for m in ([e] if exp_alone else []) + [r]:
            if any(o and o not in L.env for o in m.output):
                L._lower(m)
        keep = L.fused.pop(id(g))
        try:
            L._lower(g)
        finally:
            L.fused[id(g)] = keep
        return [L.env.get(g.output[0])]

    return emit


def _perm(rank: int, axes: list[int]) -> tuple[int, ...]:
    return tuple([a for a in range(rank) if a not in axes] + list(axes))


def _mask_lengths(L: Lowerer, n: onnx.NodeProto, ins: list, x: Ids) -> bool:
    """``ReduceSum(Cast(attention_mask), axes=[1], keepdims=0)`` of a [batch, seq] integer input: the 1-D
    mask_index onnxruntime's BERT fusion feeds to its Attention, kept symbolic (:class:`MaskLengths`) when an
    Attention reads it."""
    if len(x.shape) != 2 or attr(n, "keepdims", 1):
        return False
    if len(ins) > 1 and ins[1] is not None and not is_const(ins[1]):
        return False
    axes = _axes(L, n, ins, 2)
    if axes != [1]:
        return False
    todo, seen = [n.output[0]], set()
    while todo:
        t = todo.pop()
        for c in L.consumers.get(t, []):
            if c.op_type == "Attention" and c.domain == MS:
                return True
            if c.op_type in ("Cast", "Identity") and c.output[0] not in seen:
                seen.add(c.output[0])
                todo.append(c.output[0])
    return False


def _out_type(L: Lowerer, n: onnx.NodeProto, out_shape: tuple[int, ...], shape1: tuple[int, ...]) -> CodeType:
    """The result's code type (model's or calibrated) in the ``[lead..., 1]`` shape the reduction makes.

    An empty result (a zero-size axis) has no calibration range: any type holds it."""
    if 0 in out_shape or 0 in shape1:
        return code_type(L.opts.act_bits, 1.0, 0, shape1)
    return with_shape(L.out_type(n.output[0], out_shape), shape1)


def _sum_squares(L: Lowerer, stem: str, x2: Act, out: CodeType) -> Act:
    """``sum_k x[..., k]^2`` exactly before one rounding: a DecodeMAC matmul ``x[..., 1, K] @ x[..., K, 1]``
    (a DecodeMAC square then an all-ones Soma when K is too large for its accumulator)."""
    lead, k = x2.shape[:-1], x2.shape[-1]
    bound = max(x2.zp, x2.type.hi - x2.zp) ** 2 * max(k, 1)
    if bound < 1 << 45 and k > 0:
        a = _reshape(L, stem + ".row", x2, lead + (1, k))
        b = _reshape(L, stem + ".col", x2, lead + (k, 1))
        r = L.b.decode_mac(stem + ".mm", a, b, "matmul", with_shape(out, lead + (1, 1)))
        return _reshape(L, stem, r, lead + (1,))
    hi = float(max(x2.zp, x2.type.hi - x2.zp) * x2.scale) ** 2
    q = L.b.decode_mac(stem + ".sq", x2, x2, "mul", range_type(0.0, hi, L.opts.internal_bits, x2.shape))
    return L.b.soma_matmul(stem, q, np.ones((k, 1), np.int64), (1.0,), out)


def _reshape(L: Lowerer, stem: str, x: Act, shape: tuple[int, ...]) -> Act:
    from lasercc.ir.nodes import Reshape

    if tuple(shape) == x.shape:
        return x
    name = L.b.fresh(stem)
    t = with_shape(x.type, shape)
    L.b.add(Reshape(name=name, inputs=(x.name,), type=t))
    return x.moved(name, t)


def _sumsq_type(L: Lowerer, n: onnx.NodeProto, x: Act, x2: Act, axes: list[int], shape1: tuple) -> CodeType:
    """Internal type of the sum of squares under ReduceL2's sqrt: the calibration maximum with a 1.25 margin
    (else the bound from the input's code range), ``internal_bits``."""
    k = x2.shape[-1]
    hi = None
    s = _samples_moved(L.stats.values(n.input[0]), x.shape, _perm(len(x.shape), axes), x2.shape)
    if s is not None and s.size:
        hi = 1.25 * float(np.max(np.sum(np.asarray(s, np.float64) ** 2, axis=-1)))
    bound = k * float(max(x2.zp, x2.type.hi - x2.zp) * x2.scale) ** 2
    hi = bound if not hi else min(hi, bound)
    return range_type(0.0, max(hi, 1e-12), max(L.opts.internal_bits, x.type.bits), shape1)


def _noop(L: Lowerer, n: onnx.NodeProto, x: Act) -> Act:
    """A reduction over no axis (``noop_with_empty_axes``): the elementwise part of the op on ``x``."""
    op = n.op_type
    if op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceLogSumExp"):
        return x  # sum/mean/max/min of one element; log(exp(x)) = x
    if x.integer:
        lo, hi = x.int_range  # type: ignore[misc]
        top = max(lo * lo, hi * hi)
        r = L.b.decode_mac(n.output[0], x, x, "mul", int_type(0, top, x.shape))
        return Act(r.name, r.type, int_range=(0, top))
    if op == "ReduceSumSquare":
        return L.b.decode_mac(n.output[0], x, x, "mul", L.out_type(n.output[0], x.shape))
    return L.b.asnc_lut(n.output[0], x, "abs", (), L.out_type(n.output[0], x.shape), None)  # ReduceL2: |x|


# ---- softmax -----------------------------------------------------------------------------------------


def _softmax_layout(L: Lowerer, n: onnx.NodeProto, shape: tuple[int, ...], opset: int):  # noqa: ANN202
    """(perm or None, new shape): how to bring the softmax axis last. Opset >= 13: move ``axis`` last;
    opset < 13: flatten to 2-D ``[prod(shape[:axis]), prod(shape[axis:])]`` (the old semantics)."""
    rank = len(shape)
    if rank == 0:
        raise FrontendError(f"{n.op_type} of a scalar (0-d) tensor")
    axis = int(attr(n, "axis", -1 if opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise FrontendError(f"{n.op_type} axis {axis} is out of range for a rank-{rank} input")
    ax = axis % rank
    if opset < 13:
        return None, (int(np.prod(shape[:ax])), int(np.prod(shape[ax:])))
    perm = tuple(p for p in range(rank) if p != ax) + (ax,)
    if perm == tuple(range(rank)):
        return None, tuple(shape)
    return perm, tuple(shape[p] for p in perm)


def _softmax_any_axis(L: Lowerer, n: onnx.NodeProto, x: Act | Masked, opset: int, core, out_of,  # noqa: ANN001
                      sampled: bool = True) -> Act:
    """Bring the softmax axis last, run ``core(x_moved, out_type, samples)``, move the result back."""
    xa = x.act if isinstance(x, Masked) else x
    shape = xa.shape
    perm, new_shape = _softmax_layout(L, n, shape, opset)
    samples = L.stats.values(n.input[0]) if sampled else None
    xm = _move_masked(L, n, x, new_shape, perm) if (perm is not None or new_shape != shape) else x
    samples = _samples_moved(samples, shape, perm, new_shape)
    out = out_of(new_shape)
    r = core(xm, out, samples)
    if perm is not None:
        inv = tuple(int(q) for q in np.argsort(perm))
        return move(L, n, r, shape, inv)  # type: ignore[return-value]
    if new_shape != shape:
        return move(L, n, r, shape)  # type: ignore[return-value]
    return r


def _softmax_input(n: onnx.NodeProto, x: Val) -> Act | Masked:
    xa = x.act if isinstance(x, Masked) else x
    if isinstance(xa, Ids) or (isinstance(xa, Act) and xa.integer):
        raise FrontendError(f"{n.op_type} of integer data (ONNX defines it for floats only)")
    if not isinstance(xa, Act):
        raise FrontendError(f"{n.op_type} of {type(xa).__name__} is not supported")
    _not_empty(n, xa.shape)
    return x  # type: ignore[return-value]


@register("Softmax", sampled=(0,))
def softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = _softmax_input(n, ins[0])
    stem = n.output[0]

    def core(xm, out, samples):  # noqa: ANN001, ANN202
        return softmax_core(L, stem, xm, out, samples)

    def out_of(shape):  # noqa: ANN001, ANN202
        return with_shape(L.out_type(stem, _shape(ins[0])), shape)

    return [_softmax_any_axis(L, n, x, L.opset.get("", 17), core, out_of)]


@register("LogSoftmax", sampled=(0,))
def log_softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``(x - m) - log(sum(exp(x - m)))``: the Softmax front (:func:`cores.exp_shifted`), an ASNC ``log`` table
    of the sum, and one Soma adding the exact ``x - m`` and ``-log``."""
    x = _softmax_input(n, ins[0])
    if isinstance(x, Masked):
        raise FrontendError("LogSoftmax of a masked tensor (its masked entries would be -inf)")
    stem = n.output[0]

    def core(xm: Act, out: CodeType, samples):  # noqa: ANN001, ANN202
        check_softmax_input(xm, out, log=True, what="LogSoftmax")
        k = xm.shape[-1]
        shape1 = xm.shape[:-1] + (1,)
        _, d, _, ssum, ssamp = exp_shifted(L, stem, xm, samples)
        if k == 1:  # one entry per row: x - max(x) = 0 exactly, and so is the result
            return L.b.requant_to(stem, d, out)
        lg = L.b.asnc_lut(stem + ".log", ssum, "log", (), range_type(0.0, max(np.log(max(k, 2)), 1e-3),
                                                                     L.opts.internal_bits, shape1), ssamp)
        return _sum_acts(L, stem, [d, lg], [1, -1], out)

    def out_of(shape):  # noqa: ANN001, ANN202
        return with_shape(L.out_type(stem, _shape(ins[0])), shape)

    return [_softmax_any_axis(L, n, x, L.opset.get("", 17), core, out_of)]


@register("QLinearSoftmax", domain=MS)
def qlinear_softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, sx, zx, sy = ins[:4]
    zy = ins[4] if len(ins) > 4 else None
    X = x if isinstance(x, Masked) else q_input(L, x, sx, zx)  # a masked input keeps its pre-mask codes
    xa = X.act if isinstance(X, Masked) else X
    if not isinstance(xa, Act):
        raise FrontendError(f"QLinearSoftmax of {type(xa).__name__} is not supported")
    signed = [False]

    def core(xm, out, samples):  # noqa: ANN001, ANN202
        return softmax_core(L, n.output[0], xm, out, None)

    def out_of(shape):  # noqa: ANN001, ANN202
        t, signed[0] = L.q_type(sy, zy, shape)
        return t

    r = _softmax_any_axis(L, n, X, int(attr(n, "opset", 13)), core, out_of, sampled=False)  # type: ignore[arg-type]
    return [Act(r.name, r.type, True, signed[0])]


# ---- ArgMax / ArgMin -------------------------------------------------------------------------------


@register("ArgMax", "ArgMin")
def arg_max_min(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    stem = n.output[0]
    if is_int(x):
        x = _int_in(L, stem + ".in", x)
    x = _activation(n, x)
    rank = len(x.shape)
    if rank == 0:
        raise FrontendError(f"{n.op_type} of a scalar (0-d) tensor")
    axis = int(attr(n, "axis", 0))
    if not -rank <= axis < rank:
        raise FrontendError(f"{n.op_type} axis {axis} is out of range for a rank-{rank} input")
    x2, lead, out_shape = _to_last(L, n, x, [axis % rank], bool(attr(n, "keepdims", 1)))
    k = x2.shape[-1]
    if k == 0:
        raise FrontendError(f"{n.op_type} over an empty axis (no index to return)")
    if n.op_type == "ArgMin":
        x2 = _neg(L, stem + ".neg", x2)
    m = _wta(L, stem + ".max", x2)
    top = x2.type.hi
    d = L.b.soma_mul(stem + ".sub", [x2, m], [np.ones(1, np.int64), -np.ones(1, np.int64)], x2.scale, (1.0,),
                     code_type(x2.type.bits, x2.scale, top, x2.shape))
    eq = L.b.asnc_lut(stem + ".eq", d, "equal_to", (0.0,), code_type(2, 1.0, 0, x2.shape), None)
    last = bool(attr(n, "select_last_index", 0))
    ramp = np.arange(1, k + 1, dtype=np.int64) if last else k - np.arange(k, dtype=np.int64)
    v = L.b.soma_mul(stem + ".rank", [eq], [ramp], 1.0, (1.0,), int_type(0, k, x2.shape))
    best = _wta(L, stem + ".best", v)
    shape1 = lead + (1,)
    if last:  # index = best - 1
        r = L.b.soma_mul(stem, [best], [np.ones(1, np.int64)], 1.0, (1.0,), int_type(0, k - 1, shape1),
                         -np.ones(1, np.int64))
    else:  # index = K - best
        r = L.b.soma_mul(stem, [best], [-np.ones(1, np.int64)], 1.0, (1.0,), int_type(0, k - 1, shape1),
                         np.full(1, k, np.int64))
    return [_result(L, n, Act(r.name, r.type, int_range=(0, k - 1)), out_shape)]


# ---- variadic Max / Min / Sum ------------------------------------------------------------------------


def _operands(n: onnx.NodeProto, ins: list) -> list[Val]:
    vals = [v for v in ins if v is not None]
    for v in vals:
        _not_empty(n, _shape(v))
        if isinstance(v, Masked):
            raise FrontendError(f"{n.op_type} of a masked (-inf) tensor is not supported")
        if not isinstance(v, Act | Ids | Const | QWeight):
            raise FrontendError(f"{n.op_type} of {type(v).__name__} is not supported")
    if not vals:
        raise FrontendError(f"{n.op_type} with no inputs")
    return vals


def _const_act(L: Lowerer, stem: str, ref: Act, c: np.ndarray, t: CodeType) -> Act:
    """The constant ``c`` as codes of type ``t``: a Soma with zero weights on ``ref`` and ``c`` as its bias
    (requantized like any accumulator: ``c`` is rounded once onto ``t``'s grid)."""
    c = np.asarray(c, np.float64)
    shape = tuple(np.broadcast_shapes(ref.shape, c.shape))
    w = np.zeros(c.shape or (1,), np.int64)  # shaped like c, so the Soma's result has the broadcast shape
    bias = np.rint(c / float(t.scale[0])).astype(np.int64)  # accumulator units: scale_in * scale_w = t.scale
    if np.abs(bias).max(initial=0) >= 1 << 40:
        raise FrontendError(f"constant operand of {stem!r} is too large for its code type")
    return L.b.soma_mul(stem, [ref], [w], float(t.scale[0]), (1.0,), with_shape(t, shape), bias)


def _into(L: Lowerer, stem: str, x: Act, t: CodeType, negate: bool) -> Act:
    """``x`` (or ``-x``) re-expressed in code type ``t`` (same shape): free when the types already agree."""
    if not negate and x.type.same_quant(t):
        return x
    w = -np.ones(1, np.int64) if negate else np.ones(1, np.int64)
    return L.b.soma_mul(stem, [x], [w], x.scale, (1.0,), with_shape(t, x.shape))


def _masked_max_min(L: Lowerer, n: onnx.NodeProto, ins: list) -> Masked:
    """Max / Min of masked scores and constants (XGLM's eager attention: ``max(scores + mask, finfo.min)``).

    A masked entry is -inf: ``min(-inf, c)`` stays -inf for any ``c``, ``max(-inf, c)`` is ``c``, still a mask
    when every ``c <= MASK_THRESHOLD`` (a finite ``c`` above it would make the entry a value: refused). The
    unmasked entries take the op with ``c`` as any activation does; a ``c`` that cannot change them (Max with
    ``c`` at or below the scores' lowest code, Min at or above the highest) leaves the scores' codes as they are."""
    from lasercc.frontends.onnx.common import MASK_THRESHOLD

    masked = [v for v in ins if isinstance(v, Masked)]
    rest = [v for v in ins if v is not None and not isinstance(v, Masked)]
    if len(masked) != 1 or not all(isinstance(v, Const | QWeight) for v in rest):
        raise FrontendError(f"{n.op_type} of a masked (-inf) tensor with anything but constants is not supported")
    x = masked[0]
    cs = [np.asarray(L.const_value(v), np.float64) for v in rest]
    if any(np.broadcast_shapes(x.act.shape, c.shape) != tuple(x.act.shape) for c in cs):
        raise FrontendError(f"{n.op_type} constant broadcasts the masked scores {list(x.act.shape)} to a larger shape")
    is_max = n.op_type == "Max"
    if is_max and any(c.size and c.max() > MASK_THRESHOLD for c in cs):
        raise FrontendError(f"Max of a masked (-inf) tensor with a constant above {MASK_THRESHOLD} would turn masked "
                            "entries into values; not supported")
    a = x.act
    lo, hi = a.scale * (a.type.lo - a.zp), a.scale * (a.type.hi - a.zp)
    if all(c.size == 0 or (c.max() <= lo if is_max else c.min() >= hi) for c in cs):
        return x
    inner = max_min(L, n, [a, *rest])[0]
    return Masked(inner, x.mask)


@register("Max", "Min")
def max_min(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    if any(isinstance(v, Masked) for v in ins):
        return [_masked_max_min(L, n, ins)]
    vals = _operands(n, ins)
    stem = n.output[0]
    is_max = n.op_type == "Max"
    shape = tuple(np.broadcast_shapes(*(_shape(v) for v in vals)))
    integer = any(is_int(v) for v in vals)
    if integer:
        if any(isinstance(v, Act) and not v.integer for v in vals):
            raise FrontendError(f"{n.op_type} of integer and float activations")
        vals = [_int_in(L, f"{stem}.in{i}", v) if not is_const(v) else Const(const_int(L, v))
                for i, v in enumerate(vals)]
    acts = [v for v in vals if isinstance(v, Act)]
    if len(vals) == 1 and acts:
        return [acts[0]]
    # each operand's interval of real values
    spans = []
    for v in vals:
        if isinstance(v, Act):
            if v.integer:
                spans.append(tuple(float(b) for b in v.int_range))  # type: ignore[union-attr]
            else:
                spans.append((v.scale * (v.type.lo - v.zp), v.scale * (v.type.hi - v.zp)))
        else:
            c = np.asarray(L.const_value(v), np.float64)
            spans.append((float(c.min()), float(c.max())) if c.size else (0.0, 0.0))
    pick = max if is_max else min
    lo, hi = pick(s[0] for s in spans), pick(s[1] for s in spans)
    want = None if integer else model_type(L, stem, shape)
    if integer:
        ilo, ihi = int(min(s[0] for s in spans)), int(max(s[1] for s in spans))
        t = int_type(ilo, ihi, shape)
    elif want is not None:
        t = want
    elif all(isinstance(v, Act) for v in vals) and all(a.type.same_quant(acts[0].type) for a in acts):
        t = with_shape(acts[0].type, shape)  # one type already: the result is one of its codes, exactly
    else:
        t = range_type(lo, hi, max(a.type.bits for a in acts), shape)
    if len(acts) == 1 and all(isinstance(v, Act) or np.size(L.const_value(v)) == 1 for v in vals):
        # one activation against scalar constants (a clamp, F.normalize's max(norm, eps)): one exact lookup
        # table on its codes -- the same single rounding, one node instead of a stack
        cs = [float(np.asarray(L.const_value(v)).reshape(-1)[0]) for v in vals if not isinstance(v, Act)]
        c = max(cs) if is_max else min(cs)
        a = acts[0]
        a = a if a.shape == shape else broadcast_to(L, f"{stem}.b", a, shape)
        r = L.b.asnc_lut(stem, a, "clip", (c, np.inf) if is_max else (-np.inf, c), with_shape(t, shape), None)
        return [Act(r.name, r.type, int_range=(int(lo), int(hi))) if integer else r]
    work = t if is_max else mirror_type(t)  # Min = -max(-a, -b): operands negated into the mirrored type
    ref = acts[0]
    ops = []
    for i, v in enumerate(vals):
        if isinstance(v, Act):
            a = _into(L, f"{stem}.in{i}", v, work, negate=not is_max)
        else:
            c = np.asarray(L.const_value(v), np.float64)
            a = _const_act(L, f"{stem}.c{i}", ref, c if is_max else -c, work)
        if a.shape != shape:
            a = broadcast_to(L, f"{stem}.b{i}", a, shape)
        ops.append(_reshape(L, f"{stem}.s{i}", a, shape + (1,)))
    name = L.b.fresh(stem + ".stack")
    st = with_shape(work, shape + (len(ops),))
    L.b.add(Concat(name=name, inputs=tuple(a.name for a in ops), type=st, axis=len(shape)))
    r = _wta(L, stem + (".max" if not is_max else ""), Act(name, st))
    r = _reshape(L, stem + (".r" if not is_max else ""), r, shape)
    if not is_max:
        r = _into(L, stem, r, with_shape(t, shape), negate=True)
    if integer:
        return [Act(r.name, r.type, int_range=(int(lo), int(hi)))]
    return [Act(r.name, r.type)]


def _broadened(L: Lowerer, stem: str, xs: list[Act], shape: tuple[int, ...]) -> Act:
    """``xs[0]``, broadcast when the activations alone do not span ``shape`` (a constant operand widens it):
    a Soma's result has the broadcast shape of its inputs and weights, never of its bias."""
    have = tuple(np.broadcast_shapes(*(x.shape for x in xs)))
    return xs[0] if have == tuple(shape) else broadcast_to(L, stem, xs[0], tuple(shape))


@register("Sum")
def sum_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    vals = _operands(n, ins)
    stem = n.output[0]
    shape = tuple(np.broadcast_shapes(*(_shape(v) for v in vals)))
    consts = [np.asarray(L.const_value(v), np.float64) for v in vals if is_const(v)]
    csum = sum(consts) if consts else None
    if any(is_int(v) for v in vals):
        if any(isinstance(v, Act) and not v.integer for v in vals):
            raise FrontendError("Sum of integer and float activations")
        xs = [_int_in(L, f"{stem}.in{i}", v) for i, v in enumerate(vals) if not is_const(v)]
        c = np.zeros((), np.int64) if csum is None else const_int(L, Const(csum))
        lo = sum(x.int_range[0] for x in xs) + int(c.min())  # type: ignore[index]
        hi = sum(x.int_range[1] for x in xs) + int(c.max())  # type: ignore[index]
        t = int_type(lo, hi, shape)
        xs[0] = _broadened(L, f"{stem}.b", xs, shape)
        r = L.b.soma_mul(stem, xs, [np.ones(1, np.int64)] * len(xs), 1.0, (1.0,), t, c)
        return [Act(r.name, r.type, int_range=(lo, hi))]
    acts = [v for v in vals if isinstance(v, Act)]
    if len(vals) == 1:
        return [acts[0]]
    out = L.out_type(stem, shape)
    acts[0] = _broadened(L, f"{stem}.b", acts, shape)
    return [_sum_acts(L, stem, acts, [1] * len(acts), out, csum)]


def _sum_acts(L: Lowerer, stem: str, acts: list[Act], signs: list[int], out: CodeType,
              const: np.ndarray | None = None) -> Act:
    """``sum_i signs[i] * acts[i] + const`` in one mul-form Soma.

    Activations of one scale add exactly (weights +-1). Otherwise each gets the integer weight
    ``round(s_i / s_c)`` in a common scale ``s_c = max_i s_i / 2^24`` (:data:`emit.ADD_MAX_WEIGHT`): the weight
    of the coarsest operand is 2^24, so its relative error is 2^-25 and any operand's rounding stays below
    ``2^-9`` of the coarsest input step -- far under one result step. (``emit.add_acts`` uses ``min_i s_i / 2^10``,
    a relative error of 2^-11 of each operand's value: up to dozens of 16-bit result steps.) Accumulator:
    ``sum_i 2^24 * 2^N_i`` stays below the Soma's 2^46 bound for a handful of 16-bit operands."""
    scales = [a.scale for a in acts]
    if len(set(scales)) == 1:
        sc, ws = scales[0], list(signs)
    else:
        sc = float(np.float32(max(scales) / ADD_MAX_WEIGHT))
        ws = [sg * int(round(s / sc)) for sg, s in zip(signs, scales)]
        bound = sum(abs(w) * max(a.zp, a.type.hi - a.zp) for w, a in zip(ws, acts))
        if bound >= 1 << 45:  # many wide operands: a coarser common scale
            sc = float(np.float32(min(scales) / (1 << ADD_FINE_BITS)))
            ws = [sg * int(round(s / sc)) for sg, s in zip(signs, scales)]
    bias = None if const is None else np.rint(np.asarray(const, np.float64) / sc).astype(np.int64)
    return L.b.soma_mul(stem, acts, [np.array([w], np.int64) for w in ws], sc, (1.0,), out, bias)
