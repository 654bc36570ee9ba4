"""Linear layers: MatMul / Gemm (float, QDQ, QOperator, dynamic, weight-only) -> Soma; act x act -> DecodeMAC.

Weights stay the model's integers whenever the model has them (``DequantizeLinear`` of an integer
initializer, QLinearMatMul/QGemm/MatMulInteger operands): the Soma weight is ``w - zp_w`` exactly and
an int32 bias whose scale is ``s_x * s_w`` (what onnxruntime's quantizer writes) is added to the
accumulator unchanged -- so requantization in ``ort`` mode reproduces QLinearMatMul/QGemm to the bit.
Float weights (float models, weight-only models whose Cast/Mul dequantization was folded) are
quantized here: symmetric, per output channel, ``weight_bits`` (8) -- an int8 weight-only model's
weights come back exactly when its scales were max|w|/127.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import broadcast_to, concat_acts, int_of, int_type, move, take
from lasercc.frontends.onnx.cores import matmul_acts, soma_linear
from lasercc.frontends.onnx.emit import code_span, common_scale, with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer
from lasercc.frontends.onnx.values import Act, Const, Ids, QWeight, Val, range_type
from lasercc.ir.types import CodeType


def _shape(v: Val) -> tuple[int, ...]:
    if isinstance(v, Act):
        return v.shape
    if isinstance(v, QWeight):
        return tuple(v.q.shape)
    if isinstance(v, Const):
        return tuple(np.shape(v.value))
    raise FrontendError(f"a {type(v).__name__} operand is not supported here")


def _operand(L: Lowerer, v: Val | None, what: str) -> Act | Const | QWeight:
    """A float operand of a linear op: an activation or a constant. Integer data computed from inputs is
    refused: a product of such integers would need an exact integer result type, not a calibrated one."""
    if isinstance(v, Act) and not v.integer:
        return v
    if isinstance(v, Const | QWeight):
        return v
    if isinstance(v, Ids) or (isinstance(v, Act) and v.integer):
        raise FrontendError(f"{what} is integer data computed from graph inputs (value class b); a linear op on "
                            "integer tensors is not supported")
    raise FrontendError(f"{what} is a {type(v).__name__}; a linear op reads activations and constants")


def _reshaped(L: Lowerer, n: onnx.NodeProto, v: Act | Const | QWeight, shape: tuple[int, ...]) -> Act | Const:
    if isinstance(v, Act):
        r = move(L, n, v, shape)
        assert isinstance(r, Act)
        return r
    return Const(np.asarray(L.const_value(v)).reshape(shape))


def _swap_last(L: Lowerer, n: onnx.NodeProto, x: Act) -> Act:
    r = len(x.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    y = move(L, n, x, tuple(x.shape[p] for p in perm), perm)
    assert isinstance(y, Act)
    return y


def _act_const(L: Lowerer, n: onnx.NodeProto, x: Act, w: Const | QWeight, out: CodeType,
               bias: Const | None = None, alpha: float = 1.0) -> Act:
    """``alpha * x @ w + bias`` for x [..., M, K] and a constant w [..., K, N] (batch axes broadcast both ways),
    in the quantization of ``out``: one Soma for a 2-D weight; a weight with batch axes gives one Soma per
    batch entry (each its own per-channel weight scales), concatenated -- data movement around them."""
    ws = _shape(w)
    if len(ws) == 2 or all(d == 1 for d in ws[:-2]):
        if len(ws) > 2:
            w = Const(np.asarray(L.const_value(w)).reshape(ws[-2:]))
        lead = tuple(np.broadcast_shapes(x.shape[:-2], ws[:-2]))
        if lead != x.shape[:-2]:
            x = _reshaped(L, n, x, lead + x.shape[-2:])  # type: ignore[assignment]
        return soma_linear(L, n, x, w, bias, n.output[0], out=with_shape(out, x.shape[:-1] + (ws[-1],)), alpha=alpha)
    lead = tuple(np.broadcast_shapes(x.shape[:-2], ws[:-2]))
    m, k, nn = x.shape[-2], ws[-2], ws[-1]
    if x.shape[:-2] != lead:
        x = broadcast_to(L, n.output[0] + ".bcast", x, lead + x.shape[-2:])
    wv = np.broadcast_to(np.asarray(L.const_value(w)), lead + (k, nn)).reshape((-1, k, nn))
    xr = _reshaped(L, n, x, (wv.shape[0], m, k))
    assert isinstance(xr, Act)
    parts = [soma_linear(L, n, take(L, n.output[0] + ".batch", xr, 0, np.array([i])), Const(wv[i]), bias,
                         n.output[0], out=with_shape(out, (1, m, nn)), alpha=alpha) for i in range(wv.shape[0])]
    y = concat_acts(L, n.output[0] + ".batches", parts, 0, with_shape(out, (wv.shape[0], m, nn)))
    return _reshaped(L, n, y, lead + (m, nn))  # type: ignore[return-value]


def _mm(L: Lowerer, n: onnx.NodeProto, a: Act | Const | QWeight, b: Act | Const | QWeight, out: CodeType,
        bias: np.ndarray | None = None, alpha: float = 1.0) -> Act:
    """``alpha * a @ b + bias`` for operands of rank >= 2, at least one an activation (``bias`` broadcasts
    against the [..., M, N] result; only with a constant operand). Activation x activation -> DecodeMAC;
    activation x constant -> Soma; constant x activation -> ``(b^T @ a^T)^T``, a Soma between Transposes."""
    sa, sb = _shape(a), _shape(b)
    if sa[-1] != sb[-2]:
        raise FrontendError(f"MatMul shapes {list(sa)} x {list(sb)} do not fit")
    shape = tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])
    if isinstance(a, Act) and isinstance(b, Act):
        assert bias is None and alpha == 1.0
        return matmul_acts(L, a, b, n.output[0], with_shape(out, shape))
    if isinstance(a, Act):
        return _act_const(L, n, a, b, out, None if bias is None else Const(bias), alpha)  # type: ignore[arg-type]
    assert isinstance(b, Act)
    c = np.asarray(L.const_value(a))
    bt = _swap_last(L, n, b)
    bias_t = None if bias is None else Const(np.swapaxes(np.broadcast_to(bias, shape[-2:]), -1, -2).copy())
    y = _act_const(L, n, bt, Const(np.swapaxes(c, -1, -2).copy()), out, bias_t, alpha)
    return _swap_last(L, n, y)


@register("MatMul")
def matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``numpy.matmul`` semantics: 1-D operands get a 1 prepended (left) or appended (right) that the result
    drops; batch axes broadcast in every direction. Integer operands (value class b) multiply exactly."""
    if any(isinstance(v, Ids) or (isinstance(v, Act) and v.integer) for v in ins):
        return [_int_matmul(L, n, ins[0], ins[1])]
    a, b = _operand(L, ins[0], "MatMul input A"), _operand(L, ins[1], "MatMul input B")
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        raise FrontendError("MatMul of a scalar (rank-0) operand is not defined by ONNX")
    if isinstance(a, Act) and len(sa) >= 2 and isinstance(b, Const | QWeight) and len(sb) == 2:
        return [soma_linear(L, n, a, b, None, n.output[0])]  # the common case; may fold a following bias Add
    if len(sa) == 1:
        a = _reshaped(L, n, a, (1,) + sa)
    if len(sb) == 1:
        b = _reshaped(L, n, b, sb + (1,))
    full = tuple(np.broadcast_shapes(_shape(a)[:-2], _shape(b)[:-2])) + (_shape(a)[-2], _shape(b)[-1])
    final = full[:-2] + (() if len(sa) == 1 else full[-2:-1]) + (() if len(sb) == 1 else full[-1:])
    out = L.out_type(n.output[0], final)
    y = _mm(L, n, a, b, out)
    return [_reshaped(L, n, y, final) if y.shape != final else y]


def _int_matmul(L: Lowerer, n: onnx.NodeProto, a0: Val, b0: Val) -> Act:
    """MatMul of exact integers: scale-1 codes, the result's width from interval arithmetic (``K`` times the
    extreme products); activation x activation -> DecodeMAC, activation x 2-D constant -> Soma with the
    constant as integer weights -- requantization scale exactly 1 either way."""
    def val(v: Val, what: str) -> tuple[Act | Const, int, int]:
        if isinstance(v, Ids):
            v = int_of(L, n.output[0] + ".int", v)
        if isinstance(v, Act) and v.integer:
            return v, v.int_range[0], v.int_range[1]  # type: ignore[index]
        if isinstance(v, Const | QWeight):
            c = np.asarray(L.const_value(v))
            if c.dtype.kind in "iub" or (c.dtype.kind == "f" and np.all(c == np.rint(c))):
                c = c.astype(np.int64)
                return Const(c), int(c.min()) if c.size else 0, int(c.max()) if c.size else 0
        raise FrontendError(f"integer MatMul: {what} is not integer data")
    (a, alo, ahi), (b, blo, bhi) = val(a0, "input A"), val(b0, "input B")
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        raise FrontendError("MatMul of a scalar (rank-0) operand is not defined by ONNX")
    if len(sa) == 1:
        a = _reshaped(L, n, a, (1,) + sa)
    if len(sb) == 1:
        b = _reshaped(L, n, b, sb + (1,))
    sa2, sb2 = _shape(a), _shape(b)
    if sa2[-1] != sb2[-2]:
        raise FrontendError(f"MatMul shapes {list(sa)} x {list(sb)} do not fit")
    full = tuple(np.broadcast_shapes(sa2[:-2], sb2[:-2])) + (sa2[-2], sb2[-1])
    final = full[:-2] + (() if len(sa) == 1 else full[-2:-1]) + (() if len(sb) == 1 else full[-1:])
    prods = (alo * blo, alo * bhi, ahi * blo, ahi * bhi)
    k = sa2[-1]
    lo, hi = min(0, k * min(prods)), max(0, k * max(prods))
    out = int_type(lo, hi, full)
    if isinstance(a, Act) and isinstance(b, Act):
        y = L.b.decode_mac(n.output[0], a, b, "matmul", out)
    elif isinstance(a, Act) or isinstance(b, Act):
        x, w, left = (a, b, False) if isinstance(a, Act) else (b, a, True)
        wv = np.asarray(w.value)  # type: ignore[union-attr]
        if any(d != 1 for d in wv.shape[:-2]):
            raise FrontendError("integer MatMul with a constant that has batch axes is not supported")
        wv = wv.reshape(wv.shape[-2:])
        if left:  # C @ x = (x^T @ C^T)^T
            x = _swap_last(L, n, x)  # type: ignore[arg-type]
            wv = wv.T
        lead = full[:-2]
        if x.shape[:-2] != lead:  # type: ignore[union-attr]
            x = _reshaped(L, n, x, lead + x.shape[-2:])  # type: ignore[union-attr,assignment]
        t = with_shape(out, x.shape[:-1] + (wv.shape[1],))  # type: ignore[union-attr]
        y = L.b.soma_matmul(n.output[0], x, wv, (1.0,), t)  # type: ignore[arg-type]
        if left:
            y = _swap_last(L, n, y)
    else:
        raise FrontendError("integer MatMul of two constants reached the lowering")
    r = Act(y.name, y.type, int_range=(lo, hi))
    return _reshaped(L, n, r, final) if r.shape != final else r  # type: ignore[return-value]


def _combine(L: Lowerer, stem: str, terms: list[tuple[Act, float]], const: np.ndarray | None, out: CodeType) -> Act:
    """``sum_i coef_i * x_i + const`` (broadcasting) as one mul-form Soma in a common fine scale (as
    Builder.add_acts: each weight round(coef_i * s_i / s_c), :func:`emit.common_scale`)."""
    terms = [(x, c) for x, c in terms if c != 0.0]
    mags = [abs(c) * x.scale for x, c in terms]
    big = 0.0 if const is None or not np.size(const) else float(np.max(np.abs(const)))
    sc = common_scale(mags, [code_span(x.type) for x, _ in terms], float(out.scale[0]), big)
    ws = [np.array([int(round(c * x.scale / sc))], np.int64) for x, c in terms]
    bias = None if const is None else np.rint(np.asarray(const, np.float64) / sc).astype(np.int64)
    return L.b.soma_mul(stem, [x for x, _ in terms], ws, sc, (1.0,), out, bias)


def _span(v: Act | np.ndarray) -> tuple[float, float]:
    if isinstance(v, Act):
        return v.scale * (v.type.lo - v.zp), v.scale * (v.type.hi - v.zp)
    return (float(np.min(v)), float(np.max(v))) if np.size(v) else (0.0, 0.0)


@register("Gemm")
def gemm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``alpha * A' @ B' + beta * C`` (A' = A^T with transA, B' likewise; C broadcasts: scalar, [N], [1, N],
    [M, 1], [M, N]). A constant operand -> one Soma (alpha in its weight scales, beta*C a constant C in its
    bias); A and B both activations -> DecodeMAC. An activation C, or alpha with two activations, is added by a
    mul-form Soma after the product, which is then carried at ``internal_bits`` over the range
    ``(Y - beta*C) / alpha`` implies (Y: the calibrated output)."""
    a = _operand(L, ins[0], "Gemm input A")
    b = _operand(L, ins[1], "Gemm input B")
    c = ins[2] if len(ins) > 2 and ins[2] is not None else None
    alpha, beta = float(attr(n, "alpha", 1.0)), float(attr(n, "beta", 1.0))
    if c is not None:
        c = _operand(L, c, "Gemm input C")
    if len(_shape(a)) != 2 or len(_shape(b)) != 2:
        raise FrontendError(f"Gemm needs 2-D A and B, got {list(_shape(a))} and {list(_shape(b))}")
    if attr(n, "transA", 0):
        a = _swap_last(L, n, a) if isinstance(a, Act) else Const(np.asarray(L.const_value(a)).T.copy())
    trans_b = bool(attr(n, "transB", 0))
    if isinstance(a, Act) and isinstance(b, Const | QWeight) and trans_b:
        b = QWeight(b.q.T, b.scale, b.zero_point, None if b.axis is None else 1 - b.axis) if isinstance(b, QWeight) \
            else Const(np.asarray(L.const_value(b)).T.copy())
    elif trans_b:
        b = _swap_last(L, n, b) if isinstance(b, Act) else Const(np.asarray(L.const_value(b)).T.copy())
    shape = (_shape(a)[0], _shape(b)[1])
    if _shape(a)[1] != _shape(b)[0]:
        raise FrontendError(f"Gemm shapes A' {list(_shape(a))} x B' {list(_shape(b))} do not fit")
    cv = None if c is None or beta == 0.0 or isinstance(c, Act) else beta * np.asarray(L.const_value(c), np.float64)
    if cv is not None and tuple(np.broadcast_shapes(cv.shape, shape)) != shape:
        raise FrontendError(f"Gemm C of shape {list(cv.shape)} does not broadcast to {list(shape)}")
    c_act = c if isinstance(c, Act) and beta != 0.0 else None
    if isinstance(a, Act) and isinstance(b, Const | QWeight) and c_act is None:
        if cv is not None and (cv.ndim < 2 or cv.shape[0] == 1):  # a bias per output channel (or one)
            keep = c if beta == 1.0 and isinstance(c, QWeight) else Const(cv.reshape(-1))  # int32 biases stay exact
            return [soma_linear(L, n, a, b, keep, n.output[0], alpha=alpha)]
        if cv is None:
            return [soma_linear(L, n, a, b, None, n.output[0], alpha=alpha)]
    out = L.out_type(n.output[0], shape)
    if c_act is None and (not isinstance(a, Act) or not isinstance(b, Act)):
        return [_mm(L, n, a, b, out, cv, alpha)]
    if c_act is None and alpha == 1.0 and cv is None:
        return [_mm(L, n, a, b, out)]
    # the product first, then alpha * P + beta * C by one Soma
    ylo, yhi = out.scale[0] * (out.lo - out.zero_point[0]), out.scale[0] * (out.hi - out.zero_point[0])
    # the range of beta * C (cv already holds beta * C)
    clo, chi = sorted((beta * _span(c_act)[0], beta * _span(c_act)[1])) if c_act is not None else \
        _span(cv if cv is not None else np.zeros(()))
    lo, hi = ylo - chi, yhi - clo
    bits = max(L.opts.internal_bits, out.bits)
    if isinstance(a, Act) and isinstance(b, Act):  # P = A' @ B' by DecodeMAC, alpha applied with C
        if alpha == 0.0:
            raise FrontendError("Gemm with alpha = 0 and two activations: the product is unused; drop it")
        p = _mm(L, n, a, b, range_type(*sorted((lo / alpha, hi / alpha)), bits, shape))
        terms = [(p, alpha)]
    else:  # P = alpha * A' @ B' by a Soma (alpha in its weight scales)
        terms = [(_mm(L, n, a, b, range_type(lo, hi, bits, shape), None, alpha), 1.0)]
    if c_act is not None:
        terms.append((c_act, beta))
    return [_combine(L, n.output[0], terms, cv, out)]


# ---- dynamic quantization: DynamicQuantizeLinear + MatMulInteger + Cast + Mul(scale) ----------------


# ---- Einsum: what reduces to diagonals, sums, transposes and one (batched) matmul -----------------------


def _einsum_terms(eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """Subscripts per operand and of the output, with ``...`` spelled as upper-case letters (right-aligned, so
    ellipsis axes broadcast like NumPy's); implicit output: the letters used once, in alphabetical order."""
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise FrontendError(f"Einsum equation {eq!r} names {len(terms)} operands, the node has {len(ranks)}")
    ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    fill = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:ell]
    out_terms = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            k = r - len(t.replace("...", ""))
            t = t.replace("...", fill[ell - k:] if k else "")
        if len(t) != r or (t and not t.isalpha()):
            raise FrontendError(f"Einsum subscripts {t!r} do not match an operand of rank {r} in {eq!r}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", fill)
    else:
        letters = "".join(out_terms)
        out = fill + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c.islower()))
    if not out.isalpha() and out != "" or len(set(out)) != len(out):
        raise FrontendError(f"Einsum output subscripts {rhs!r} in {eq!r} are not supported")
    return out_terms, out


def _einsum_unary(L: Lowerer, n: onnx.NodeProto, x: Act, t: str, keep: str, out: CodeType | None) -> tuple[Act, str]:
    """Diagonals of repeated letters (one Take of the flattened pair), then a sum over letters not in ``keep``
    (a Soma with a ones column); ``out`` types the sum (None: no sum happens)."""
    while len(set(t)) != len(t):
        c = next(ch for ch in t if t.count(ch) > 1)
        i, j = t.index(c), t.index(c, t.index(c) + 1)
        d = x.shape[i]
        if x.shape[j] != d:
            raise FrontendError(f"Einsum diagonal {c!r} over axes of sizes {d} and {x.shape[j]}")
        rest = [k for k in range(len(t)) if k not in (i, j)]
        perm = tuple(rest) + (i, j)
        xt = move(L, n, x, tuple(x.shape[p] for p in perm), perm)
        xf = _reshaped(L, n, xt, tuple(x.shape[k] for k in rest) + (d * d,))  # type: ignore[arg-type]
        assert isinstance(xf, Act)
        x = take(L, n.output[0] + ".diag", xf, len(rest), np.arange(d) * (d + 1))
        t = "".join(t[k] for k in rest) + c
    gone = [k for k, ch in enumerate(t) if ch not in keep]
    if not gone:
        return x, t
    stay = [k for k in range(len(t)) if k not in gone]
    perm = tuple(stay) + tuple(gone)
    if perm != tuple(range(len(t))):
        x = move(L, n, x, tuple(x.shape[p] for p in perm), perm)  # type: ignore[assignment]
    s = int(np.prod([x.shape[len(stay) + k] for k in range(len(gone))]))
    lead = tuple(x.shape[:len(stay)])
    xr = _reshaped(L, n, x, lead + (s,))
    assert isinstance(xr, Act) and out is not None
    y = L.b.soma_matmul(n.output[0] + ".sum", xr, np.ones((s, 1), np.int64), (1.0,), with_shape(out, lead + (1,)))
    return _reshaped(L, n, y, lead), "".join(t[k] for k in stay)  # type: ignore[return-value]


@register("Einsum")
def einsum(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """One or two operands: diagonals (repeated letters) by Take, letters summed away by a Soma, and for two
    operands a batched matmul -- batch letters (both operands and the output) stay axes that broadcast,
    contracted letters (both operands, not the output) become K, the rest M and N -- then a Transpose to the
    output's order. Three or more operands are refused (there is no calibrated range for the intermediate)."""
    eq = attr(n, "equation", b"")
    eq = eq.decode() if isinstance(eq, bytes) else str(eq)
    ops = [_operand(L, v, f"Einsum operand {i}") for i, v in enumerate(ins)]
    if not 1 <= len(ops) <= 2:
        raise FrontendError(f"Einsum {eq!r} with {len(ops)} operands is not supported (one or two are): split it "
                            "into pairwise Einsums")
    terms, o = _einsum_terms(eq, [len(_shape(v)) for v in ops])
    sizes: dict[str, int] = {}
    for t, v in zip(terms, ops):
        for ch, d in zip(t, _shape(v)):
            if sizes.get(ch, 1) != 1 and d not in (1, sizes[ch]):
                raise FrontendError(f"Einsum {eq!r}: letter {ch!r} has sizes {sizes[ch]} and {d}")
            sizes[ch] = max(sizes.get(ch, 1), d)
    if any(ch not in sizes for ch in o):
        raise FrontendError(f"Einsum {eq!r}: an output letter appears in no operand")
    final = tuple(sizes[ch] for ch in o)
    out = L.out_type(n.output[0], final)
    if len(ops) == 1:
        x = ops[0]
        assert isinstance(x, Act)
        y, t = _einsum_unary(L, n, x, terms[0], o, out)
    else:
        a, b = ops
        ta, tb = terms
        if not isinstance(a, Act):  # a constant's own diagonals and one-sided sums are evaluated here
            a, ta = _einsum_const(L, a, ta, tb + o)
        if not isinstance(b, Act):
            b, tb = _einsum_const(L, b, tb, ta + o)
        if isinstance(a, Act):
            a, ta = _einsum_unary(L, n, a, ta, tb + o, None if all(c in tb + o for c in ta) else
                                  _one_sided(L, n, ta, tb + o, a))
        if isinstance(b, Act):
            b, tb = _einsum_unary(L, n, b, tb, ta + o, None if all(c in ta + o for c in tb) else
                                  _one_sided(L, n, tb, ta + o, b))
        batch = [c for c in o if c in ta and c in tb]
        con = [c for c in ta if c in tb and c not in o]
        fa = [c for c in ta if c not in tb]
        fb = [c for c in tb if c not in ta]
        dim = {**{c: d for c, d in zip(ta, _shape(a))}, **{c: d for c, d in zip(tb, _shape(b))}}
        da = {c: d for c, d in zip(ta, _shape(a))}
        db = {c: d for c, d in zip(tb, _shape(b))}

        def arrange(v, t, order, shape):  # noqa: ANN001, ANN202
            perm = tuple(t.index(c) for c in order)
            if isinstance(v, Act):
                if perm != tuple(range(len(t))):
                    v = move(L, n, v, tuple(v.shape[p] for p in perm), perm)
                return _reshaped(L, n, v, shape)
            return Const(np.transpose(np.asarray(L.const_value(v)), perm).reshape(shape))

        m = int(np.prod([dim[c] for c in fa]))
        k = int(np.prod([dim[c] for c in con]))
        nn = int(np.prod([dim[c] for c in fb]))
        aa = arrange(a, ta, batch + fa + con, tuple(da[c] for c in batch) + (m, k))
        bb = arrange(b, tb, batch + con + fb, tuple(db[c] for c in batch) + (k, nn))
        lead = tuple(sizes[c] for c in batch)
        y = _mm(L, n, aa, bb, with_shape(out, lead + (m, nn)))
        y = _reshaped(L, n, y, lead + tuple(dim[c] for c in fa) + tuple(dim[c] for c in fb))  # type: ignore[assignment]
        t = "".join(batch + fa + fb)
    if t != o:
        perm = tuple(t.index(c) for c in o)
        y = move(L, n, y, tuple(y.shape[p] for p in perm), perm)  # type: ignore[assignment]
    if y.shape != final:
        y = _reshaped(L, n, y, final)  # type: ignore[assignment]
    return [y]


def _one_sided(L: Lowerer, n: onnx.NodeProto, t: str, keep: str, x: Act) -> CodeType:
    """The code type of an operand summed over letters no other operand or the output has: its input range
    times the number of terms summed (no calibrated range exists for it), at ``internal_bits``."""
    s = int(np.prod([d for ch, d in zip(t, x.shape) if ch not in keep]))
    lo, hi = x.scale * (x.type.lo - x.zp) * s, x.scale * (x.type.hi - x.zp) * s
    shape = tuple(d for ch, d in zip(t, x.shape) if ch in keep)
    return range_type(lo, hi, max(L.opts.internal_bits, x.type.bits), shape)


def _einsum_const(L: Lowerer, c: Const | QWeight, t: str, keep: str) -> tuple[Const, str]:
    kept = "".join(dict.fromkeys(ch for ch in t if ch in keep))
    if kept == t:
        return Const(np.asarray(L.const_value(c))), t
    return Const(np.einsum(f"{t}->{kept}", np.asarray(L.const_value(c), np.float64))), kept
