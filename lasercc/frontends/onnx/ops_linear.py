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
from lasercc.frontends.onnx.registry import attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer
from lasercc.frontends.onnx.values import Act, Const, QWeight, Val, code_type


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
