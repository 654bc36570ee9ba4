"""Softmax, LayerNormalization and reductions, decomposed into the four spiking kinds (DESIGN.md section 3).

Softmax(x) along the last axis, K entries::

    m = WTAMax(x)                      (masked entries first set to code 0 by a Mask node)
    d = Soma(x - m)                    exact: same scale, code = x - m + 2^N - 1
    e = ASNC exp(d)                    e in (0, 1], internal_bits, scale 1/(2^b - 1)
    e = Mask(e, 0)                     masked entries contribute nothing
    S = Soma(e @ ones[K, 1])           S in [1, K]
    r = ASNC reciprocal(S)             r in (0, 1]
    y = DecodeMAC(e * r)               in the output code type

LayerNorm(x) = gamma * (x - mean) * rsqrt(var + eps) + beta::

    mu = Soma(x @ ones/K)    c = Soma(x - mu)    q = DecodeMAC(c * c)    v = Soma(q @ ones/K)
    r = ASNC rsqrt(v; eps)   n = DecodeMAC(c * r)    y = Soma(gamma * n + beta)

The internal code types (``internal_bits``, 16 by default) are planned by running the same float
decomposition on the calibration values of the input (kept by :mod:`calibrate`): each internal
range is the observed one with a margin (x1.1 for magnitudes, x1.25 for sums and variances, x0.5
on the smallest variance), falling back to bounds from the input code range when no calibration
values exist. Saturation outside the planned range is the documented failure mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from lasercc.frontends.onnx.common import q_input
from lasercc.frontends.onnx.cores import reduce_last, softmax_core
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, attr, register
from lasercc.frontends.onnx.values import Ids, MaskLengths

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

from lasercc.frontends.onnx.values import Act, Masked


def _softmax_axis(n: onnx.NodeProto, rank: int, opset: int) -> None:
    axis = attr(n, "axis", -1 if opset >= 13 else 1) % rank
    if axis != rank - 1:
        raise FrontendError(f"Softmax along axis {axis} of a rank-{rank} tensor: only the last axis is supported")


@register("Softmax")
def softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    xa = x.act if isinstance(x, Masked) else x
    if not isinstance(xa, Act):
        raise FrontendError("Softmax of a non-activation")
    _softmax_axis(n, len(xa.shape), L.opset.get("", 17))
    out = L.out_type(n.output[0], xa.shape)
    return [softmax_core(L, n.output[0], x, out, L.stats.values(n.input[0]))]


@register("QLinearSoftmax", domain=MS)
def qlinear_softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, sx, zx, sy = ins[:4]
    zy = ins[4] if len(ins) > 4 else None
    X = x if isinstance(x, Masked) else q_input(L, x, sx, zx)  # a masked input keeps its pre-mask codes
    xa = X.act if isinstance(X, Masked) else X
    assert isinstance(xa, Act)
    _softmax_axis(n, len(xa.shape), int(attr(n, "opset", 13)))
    out, signed = L.q_type(sy, zy, xa.shape)
    r = softmax_core(L, n.output[0], X, out, None)
    return [Act(r.name, r.type, True, signed)]


register("ReduceMean")(reduce_last)


@register("ReduceSum")
def reduce_sum(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``ReduceSum(Cast(attention_mask), axes=[1], keepdims=0)``: the 1-D mask_index onnxruntime's
    BERT fusion feeds to Attention, kept symbolic (:class:`MaskLengths`). Everything else: the
    decomposition's ReduceSum."""
    x = ins[0]
    if isinstance(x, Ids):
        axes = [int(a) for a in L.const_value(ins[1]).reshape(-1)] if len(ins) > 1 and ins[1] is not None \
            else list(attr(n, "axes", []) or [])
        if len(x.shape) != 2 or [a % 2 for a in axes] != [1] or attr(n, "keepdims", 1):
            raise FrontendError("ReduceSum of integer inputs is supported only as an attention mask_index "
                                "(a [batch, seq] mask summed over axis 1, keepdims=0)")
        return [MaskLengths(x)]
    return reduce_last(L, n, ins)
