"""LayerNormalization, decomposed into the four spiking kinds (DESIGN.md section 3). Softmax, LogSoftmax
and the reductions live in :mod:`ops_reduce` (their cores, shared with onnxruntime's fused ops, in :mod:`cores`).

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

from lasercc.frontends.onnx.cores import layernorm_core
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

from lasercc.frontends.onnx.values import Act


@register("LayerNormalization")
def layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if not isinstance(x, Act):
        raise FrontendError("LayerNormalization of a non-activation")
    if attr(n, "axis", -1) % len(x.shape) != len(x.shape) - 1:
        raise FrontendError("LayerNormalization only over the last axis is supported")
    gamma = L.const_value(ins[1], "scale") if len(ins) > 1 and ins[1] is not None else None
    beta = L.const_value(ins[2], "bias") if len(ins) > 2 and ins[2] is not None else None
    out = L.out_type(n.output[0], x.shape)
    y = layernorm_core(L, n.output[0], x, gamma, beta, float(attr(n, "epsilon", 1e-5)), out, L.stats.values(n.input[0]))
    return [y] + [None] * (len(n.output) - 1)
