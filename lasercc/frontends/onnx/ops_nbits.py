"""com.microsoft ``MatMulNBits`` (onnxruntime's 2/4/8-bit block-wise weight-only MatMul), lowered to a Soma.

Unpacking and dequantization of the packed weights live in :mod:`nbits` (the opset-21 int4 /
``block_size`` ``DequantizeLinear`` uses the same code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.cores import soma_linear
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.nbits import check_layout, const_or_none, dequantize_nbits, single_block_weight
from lasercc.frontends.onnx.registry import MS, attr, register
from lasercc.frontends.onnx.values import Act, Const, Val

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer


@register("MatMulNBits", domain=MS)
def matmul_nbits(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``A @ dequant(B) (+ bias)``: a Soma with per-output-channel integer weights (see the module docstring)."""
    ins = list(ins) + [None] * (6 - len(ins))
    a, b, scales, zp, g_idx, bias = ins[:6]
    if not isinstance(a, Act):
        raise FrontendError("MatMulNBits needs an activation A")
    k, nn, bits, block = (int(attr(n, x, d)) for x, d in (("K", 0), ("N", 0), ("bits", 4), ("block_size", 0)))
    bv, sv = const_or_none(L, b, "B"), const_or_none(L, scales, "scales")
    zv, gv, cv = const_or_none(L, zp, "zero_points"), const_or_none(L, g_idx, "g_idx"), const_or_none(L, bias, "bias")
    if bv is None or sv is None:
        raise FrontendError("MatMulNBits needs B and scales")
    if k <= 0 or nn <= 0 or a.shape[-1] != k:
        raise FrontendError(f"MatMulNBits K={k}, N={nn} does not fit input {list(a.shape)}")
    check_layout(bits, block)
    if gv is not None:  # GPTQ act-order: deprecated in onnxruntime; our reading of it did not match its kernel
        raise FrontendError("MatMulNBits with g_idx (act-order) is not supported; re-quantize without act-order")
    w: Val | None = single_block_weight(bv, sv, zv, k, nn, bits) if -(-k // block) == 1 else None
    if w is None:
        w = Const(dequantize_nbits(bv, sv, zv, k, nn, bits, block))
    return [soma_linear(L, n, a, w, None if cv is None else Const(cv.astype(np.float32)), n.output[0])]

