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

import numpy as np
import onnx

from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.lower import Lowerer, attr, register
from lasercc.frontends.onnx.values import Act, Const, DynScale, IntAcc, QWeight, Val, code_type, range_type


def weight_ints(L: Lowerer, w: Val, what: str = "weight") -> tuple[np.ndarray, tuple[float, ...]]:
    """[K, N] integer weights (zero point removed) and per-tensor / per-output-channel scales."""
    if isinstance(w, QWeight) and w.q.ndim == 2 and (w.axis in (None, 1) or w.scale.size == 1):
        q = w.q.astype(np.int64) - (w.zero_point.astype(np.int64).reshape(1, -1) if w.zero_point.size > 1
                                    else int(w.zero_point.reshape(-1)[0]))
        return q, tuple(float(s) for s in np.asarray(w.scale, np.float32).reshape(-1))
    real = L.const_value(w, what).astype(np.float64)
    if real.ndim != 2:
        raise FrontendError(f"{what} must be a 2-D constant, got shape {list(real.shape)}")
    n = (1 << (L.opts.weight_bits - 1)) - 1
    m = np.abs(real).max(axis=0)
    s = np.where(m > 0, m / n, 1.0).astype(np.float32)
    q = np.clip(np.rint(real / s.astype(np.float64)), -n, n).astype(np.int64)
    return q, tuple(float(v) for v in s)


def bias_units(L: Lowerer, c: Val | None, x_scale: float, sw: tuple[float, ...], n_out: int) -> np.ndarray | None:
    """A bias in accumulator units: the model's int32 exactly when its scale is s_x*s_w, else rounded."""
    if c is None:
        return None
    unit = (np.float32(x_scale) * np.asarray(sw, np.float32)).astype(np.float32)
    if isinstance(c, QWeight) and c.q.dtype.kind in "iu" and not np.any(c.zero_point):
        cs = np.asarray(c.scale, np.float32).reshape(-1)
        if np.allclose(cs, unit, rtol=1e-6, atol=0):
            return np.broadcast_to(c.q.astype(np.int64).reshape(-1), (n_out,)).copy()
    real = np.asarray(L.const_value(c, "bias"), np.float64).reshape(-1)
    return np.rint(np.broadcast_to(real, (n_out,)) / unit.astype(np.float64)).astype(np.int64)


def _fusable_bias(L: Lowerer, tensor: str) -> tuple[onnx.NodeProto, Val] | None:
    """MatMul -> Add(constant vector) with nothing else reading the MatMul result: fold the bias in."""
    cons = L.consumers.get(tensor, [])
    outputs = {o.name for o in L.model.graph.output}
    if len(cons) != 1 or tensor in outputs or cons[0].op_type != "Add":
        return None
    add = cons[0]
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    v = L.env.get(other)
    if isinstance(v, Const | QWeight) and L.const_value(v).size > 1 and L.const_value(v).ndim <= 1:
        return add, v
    return None


def soma_linear(L: Lowerer, n: onnx.NodeProto, x: Act, w: Val, bias: Val | None, out_tensor: str,
                out=None, trans_b: bool = False, alpha: float = 1.0) -> Act:  # noqa: ANN001
    if trans_b:
        if isinstance(w, QWeight):
            w = QWeight(w.q.T, w.scale, w.zero_point, None if w.axis is None else 1 - w.axis)
        else:
            w = Const(L.const_value(w).T)
    q, sw = weight_ints(L, w)
    if alpha != 1.0:
        sw = tuple(s * alpha for s in sw)
    if q.shape[0] != x.shape[-1]:
        raise FrontendError(f"weight {list(q.shape)} does not fit input {list(x.shape)}")
    shape = x.shape[:-1] + (q.shape[1],)
    if bias is None and out is None:
        fb = _fusable_bias(L, out_tensor)
        if fb is not None:
            add, bias = fb
            L.skip.add(id(add))
            out_tensor = add.output[0]
    if out is None:
        out = L.out_type(out_tensor, shape)
    b = bias_units(L, bias, x.scale, sw, q.shape[1])
    res = L.b.soma_matmul(out_tensor, x, q, sw, out, b)
    if out_tensor != n.output[0]:
        L.env[out_tensor] = res
        L.tensor_map.setdefault(out_tensor, res.name)
    return res


def matmul_acts(L: Lowerer, a: Act, b: Act, out_tensor: str, out=None) -> Act:  # noqa: ANN001
    shape = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1])
    out = out or L.out_type(out_tensor, shape)
    return L.b.decode_mac(out_tensor, a, b, "matmul", out)


@register("MatMul")
def matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, b = ins
    if isinstance(a, Act) and isinstance(b, Act):
        return [matmul_acts(L, a, b, n.output[0])]
    if isinstance(a, Act) and isinstance(b, Const | QWeight):
        return [soma_linear(L, n, a, b, None, n.output[0])]
    if isinstance(a, Const | QWeight) and isinstance(b, Act):
        return [const_matmul(L, n, a, b)]
    raise FrontendError(f"MatMul of {type(a).__name__} and {type(b).__name__} is not supported")


def const_matmul(L: Lowerer, n: onnx.NodeProto, a: Val, b: Act) -> Act:
    """``C @ x`` with a constant on the left (rotary embeddings: ``inv_freq[:, None] @ positions[None, :]``):
    ``(x^T @ C^T)^T`` -- a Soma between two Transposes of the last two axes (data movement only).
    The constant must not vary over batch axes (leading axes of size 1)."""
    from lasercc.frontends.onnx.ops_move import _move

    c = np.asarray(L.const_value(a), np.float64)
    if c.ndim < 2 or len(b.shape) < 2:
        raise FrontendError("MatMul of a constant and an activation needs both of rank >= 2")
    if any(d != 1 for d in c.shape[:-2]):
        raise FrontendError(f"MatMul of a constant {list(c.shape)} with batch axes by an activation is not supported")
    if c.shape[-1] != b.shape[-2]:
        raise FrontendError(f"MatMul shapes {list(c.shape)} x {list(b.shape)} do not fit")
    lead = tuple(np.broadcast_shapes(c.shape[:-2], b.shape[:-2]))
    if lead != b.shape[:-2]:
        b = _move(L, n, b, lead + b.shape[-2:])  # type: ignore[assignment]
    r = len(b.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    bt = _move(L, n, b, tuple(b.shape[p] for p in perm), perm)
    assert isinstance(bt, Act)
    shape = lead + (c.shape[-2], b.shape[-1])
    out = L.out_type(n.output[0], shape)
    tshape = lead + (b.shape[-1], c.shape[-2])
    y = soma_linear(L, n, bt, Const(c.reshape(c.shape[-2:]).T.copy()), None, n.output[0],
                    out=code_type(out.bits, out.scale[0], out.zero_point[0], tshape))
    res = _move(L, n, y, shape, perm)
    assert isinstance(res, Act)
    return res


@register("Gemm")
def gemm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, b = ins[:2]
    c = ins[2] if len(ins) > 2 else None
    if not isinstance(a, Act) or attr(n, "transA", 0):
        raise FrontendError("Gemm needs a (non-transposed) activation A")
    beta = float(attr(n, "beta", 1.0))
    if c is not None and beta != 1.0:
        c = Const(L.const_value(c) * beta)
    return [soma_linear(L, n, a, b, c, n.output[0], trans_b=bool(attr(n, "transB", 0)),
                        alpha=float(attr(n, "alpha", 1.0)))]


def _q_operand(L: Lowerer, x: Val, s: Val, z: Val | None, what: str) -> Val:
    """A QLinear op operand as an activation (checked/requantized to the stated type) or integer weight."""
    if isinstance(x, Act):
        t, _ = L.q_type(s, z, x.shape)
        return L.b.requant_to(what, x, t).as_float() if not x.type.same_quant(t) else x.as_float()
    if isinstance(x, Const) and x.value.dtype.kind in "iu":
        sv = np.asarray(L.const_value(s), np.float32).reshape(-1)
        zv = np.zeros(sv.shape, x.value.dtype) if z is None else np.asarray(L.const_value(z)).reshape(-1)
        axis = None if sv.size == 1 else x.value.ndim - 1
        return QWeight(x.value, sv, zv, axis)
    raise FrontendError(f"{what}: expected a quantized activation or integer constant")


@register("QLinearMatMul")
def qlinear_matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, sa, za, b, sb, zb, sy, zy = ins
    A = _q_operand(L, a, sa, za, n.output[0] + ".a")
    B = _q_operand(L, b, sb, zb, n.output[0] + ".b")
    assert isinstance(A, Act)
    out, signed = L.q_type(sy, zy, ())
    if isinstance(B, Act):
        shape = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2])) + (A.shape[-2], B.shape[-1])
        r = matmul_acts(L, A, B, n.output[0], code_type(out.bits, out.scale[0], out.zero_point[0], shape))
    else:
        shape = A.shape[:-1] + (B.q.shape[1],)  # type: ignore[union-attr]
        r = soma_linear(L, n, A, B, None, n.output[0], out=code_type(out.bits, out.scale[0], out.zero_point[0], shape))
    return [Act(r.name, r.type, True, signed)]


@register("QGemm")
def qgemm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, sa, za, b, sb, zb = ins[:6]
    c = ins[6] if len(ins) > 6 else None
    sy = ins[7] if len(ins) > 7 else None
    zy = ins[8] if len(ins) > 8 else None
    A = _q_operand(L, a, sa, za, n.output[0] + ".a")
    trans_b = bool(attr(n, "transB", 0))
    bv = b.value if isinstance(b, Const) else None
    if bv is None:
        raise FrontendError("QGemm B must be a constant")
    sv = np.asarray(L.const_value(sb), np.float32).reshape(-1)
    zv = np.asarray(L.const_value(zb)).reshape(-1) if zb is not None else np.zeros(sv.shape, bv.dtype)
    B = QWeight(bv, sv, zv, None if sv.size == 1 else (0 if trans_b else 1))
    if c is not None and isinstance(c, Const) and c.value.dtype.kind in "iu":
        unit = (np.float32(A.scale) * sv).astype(np.float32)  # type: ignore[union-attr]
        c = QWeight(c.value, unit, np.zeros(unit.shape, np.int64), None if unit.size == 1 else 0)
    out = None
    signed = False
    if sy is not None:
        t, signed = L.q_type(sy, zy, ())
        n_out = bv.shape[0] if trans_b else bv.shape[1]
        out = code_type(t.bits, t.scale[0], t.zero_point[0], A.shape[:-1] + (n_out,))  # type: ignore[union-attr]
    alpha = float(attr(n, "alpha", 1.0))
    r = soma_linear(L, n, A, B, c, n.output[0], out=out, trans_b=trans_b, alpha=alpha)  # type: ignore[arg-type]
    return [Act(r.name, r.type, sy is not None, signed)]


# ---- dynamic quantization: DynamicQuantizeLinear + MatMulInteger + Cast + Mul(scale) ----------------


@register("DynamicQuantizeLinear")
def dynamic_quantize(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Runtime scales cannot exist in a static spiking graph: the scale onnxruntime would compute
    from each input ((max(0,x) - min(0,x)) / 255) is computed once from the calibration range of x."""
    (x,) = ins
    if not isinstance(x, Act):
        raise FrontendError("DynamicQuantizeLinear of a non-activation")
    r = L.stats.range(n.input[0])
    t = range_type(r[0], r[1], 8, x.shape) if r else x.type
    q = L.b.requant_to(n.output[0], x, t)
    act = Act(q.name, q.type, True, False)
    return [act, DynScale(act, np.ones(()), "scale"), DynScale(act, np.zeros(()), "zero_point")]


@register("MatMulInteger")
def matmul_integer(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, b = ins[:2]
    bz = ins[3] if len(ins) > 3 else None
    if not isinstance(a, Act) or not isinstance(b, Const):
        raise FrontendError("MatMulInteger needs a quantized activation and a constant integer weight")
    w = b.value.astype(np.int64)
    if bz is not None:
        z = np.asarray(L.const_value(bz)).astype(np.int64)
        w = w - (z.reshape(1, -1) if z.size > 1 else int(z.reshape(-1)[0]))
    return [IntAcc(a, w)]


def mul_dynamic(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val) -> list | None:
    """The Mul steps of dynamic quantization: scale x constant, and accumulator x scale -> Soma."""
    if isinstance(b, IntAcc) or (isinstance(b, DynScale) and not isinstance(a, IntAcc)):
        a, b = b, a
    if isinstance(a, DynScale) and isinstance(b, Const | QWeight):
        return [DynScale(a.act, a.factor * L.const_value(b), a.what)]
    if isinstance(a, IntAcc) and isinstance(b, DynScale):
        f = np.asarray(b.factor, np.float64).reshape(-1)
        sw = tuple(float(np.float32(v)) for v in f)
        if b.act.name != a.act.name:
            raise FrontendError("MatMulInteger rescaled by another tensor's dynamic scale")
        shape = a.act.shape[:-1] + (a.weights.shape[1],)
        tensor = n.output[0]
        bias = None
        fb = _fusable_bias(L, tensor)
        if fb is not None:
            add, bias = fb
            L.skip.add(id(add))
            tensor = add.output[0]
        out = L.out_type(tensor, shape)
        bu = bias_units(L, bias, a.act.scale, sw, a.weights.shape[1])
        res = L.b.soma_matmul(tensor, a.act, a.weights, sw, out, bu)
        if tensor != n.output[0]:
            L.env[tensor] = res
        return [res]
    if isinstance(a, DynScale | IntAcc) or isinstance(b, DynScale | IntAcc):
        raise FrontendError(f"unsupported use of a dynamic-quantization scale or integer accumulator: "
                            f"{type(a).__name__} x {type(b).__name__}")
    return None
