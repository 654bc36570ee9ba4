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

from lasercc.frontends.onnx.common import move
from lasercc.frontends.onnx.cores import matmul_acts, soma_linear
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer
from lasercc.frontends.onnx.values import Act, Const, DynScale, IntAcc, QWeight, Val, code_type, range_type


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


    c = np.asarray(L.const_value(a), np.float64)
    if c.ndim < 2 or len(b.shape) < 2:
        raise FrontendError("MatMul of a constant and an activation needs both of rank >= 2")
    if any(d != 1 for d in c.shape[:-2]):
        raise FrontendError(f"MatMul of a constant {list(c.shape)} with batch axes by an activation is not supported")
    if c.shape[-1] != b.shape[-2]:
        raise FrontendError(f"MatMul shapes {list(c.shape)} x {list(b.shape)} do not fit")
    lead = tuple(np.broadcast_shapes(c.shape[:-2], b.shape[:-2]))
    if lead != b.shape[:-2]:
        b = move(L, n, b, lead + b.shape[-2:])  # type: ignore[assignment]
    r = len(b.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    bt = move(L, n, b, tuple(b.shape[p] for p in perm), perm)
    assert isinstance(bt, Act)
    shape = lead + (c.shape[-2], b.shape[-1])
    out = L.out_type(n.output[0], shape)
    tshape = lead + (b.shape[-1], c.shape[-2])
    y = soma_linear(L, n, bt, Const(c.reshape(c.shape[-2:]).T.copy()), None, n.output[0],
                    out=code_type(out.bits, out.scale[0], out.zero_point[0], tshape))
    res = move(L, n, y, shape, perm)
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


@register("QGemm", domain=MS)
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


