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

import numpy as np
import onnx

from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.lower import Lowerer, attr, register
from lasercc.frontends.onnx.ops_elementwise import MASK_THRESHOLD, _qin, is_const
from lasercc.frontends.onnx.values import Act, Masked, code_type, range_type
from lasercc.ir.nodes import Mask, WTAMax


def _mask_node(L: Lowerer, stem: str, x: Act, mask: np.ndarray | Act) -> Act:
    if isinstance(mask, Act):
        return _dyn_mask(L, stem, x, mask)
    name = L.b.fresh(stem)
    # the smallest broadcastable mask keeps weights.npz small (causal masks repeat over batch/heads)
    m = np.asarray(mask, bool)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    axes = tuple(i for i in range(m.ndim) if m.shape[i] > 1 and np.all(m == m.take([0], axis=i)))
    for a in axes:
        m = m.take([0], axis=a)
    L.b.add(Mask(name=name, inputs=(x.name,), type=x.type, mask=L.b.const(name + ".mask", np.ascontiguousarray(m)),
                 fill=0))
    return Act(name, x.type)


def _dyn_mask(L: Lowerer, stem: str, x: Act, drop: Act) -> Act:
    """Code 0 where ``drop``'s real value is positive, x's code elsewhere, by one exact 2-input Soma:
    acc = (x - z_x) - 2^bits * (d - z_d), requantized with scale exactly 1 and x's zero point, so a
    dropped entry saturates to code 0 and a kept one (d = z_d) is unchanged."""
    big = np.array([-(1 << x.type.bits)], np.int64)
    return L.b.soma_mul(stem, [x, drop], [np.ones(1, np.int64), big], x.scale, (1.0,), x.type)


def softmax_core(L: Lowerer, stem: str, x: Act | Masked, out, samples: np.ndarray | None) -> Act:  # noqa: ANN001
    mask = x.mask if isinstance(x, Masked) else None
    xa = x.act if isinstance(x, Masked) else x
    if not xa.shape:
        raise FrontendError("Softmax of a scalar")
    k = xa.shape[-1]
    ib = L.opts.internal_bits
    n_bits = xa.type.bits
    shape1 = xa.shape[:-1] + (1,)
    xin = _mask_node(L, stem + ".mask", xa, mask) if mask is not None else xa
    mname = L.b.fresh(stem + ".max")
    L.b.add(WTAMax(name=mname, inputs=(xin.name,), type=with_shape(xin.type, shape1), axis=len(xa.shape) - 1))
    m = Act(mname, with_shape(xin.type, shape1))
    top = (1 << n_bits) - 1
    d = L.b.soma_mul(stem + ".sub", [xin, m], [np.ones(1, np.int64), -np.ones(1, np.int64)], xa.scale, (1.0,),
                     code_type(n_bits, xa.scale, top, xa.shape))
    unit = 1.0 / ((1 << ib) - 1)
    e_t = code_type(ib, unit, 0, xa.shape)
    dsamp = smax = ssamp = None
    if samples is not None:
        s = np.asarray(samples, np.float64)
        dead = (s <= MASK_THRESHOLD) | ~np.isfinite(s)
        if isinstance(mask, np.ndarray) and mask.ndim == s.ndim and s.shape[0] % mask.shape[0] == 0:
            dead |= np.tile(mask, (s.shape[0] // mask.shape[0],) + (1,) * (mask.ndim - 1))
        s = np.where(dead, -np.inf, s)
        mx = np.max(s, axis=-1, keepdims=True)
        dd = s - np.where(np.isfinite(mx), mx, 0.0)
        dsamp = dd[np.isfinite(dd)]
        ssamp = np.sum(np.exp(dd), axis=-1).reshape(-1)
        smax = float(np.max(ssamp))
    e = L.b.asnc_lut(stem + ".exp", d, "exp", (), e_t, dsamp)
    if mask is not None:
        e = _mask_node(L, stem + ".zero", e, mask)
    s_hi = float(min(k, 1.25 * smax)) if smax else float(k)
    s_t = range_type(0.0, max(s_hi, 1.0), ib, shape1)
    ssum = L.b.soma_matmul(stem + ".sum", e, np.ones((k, 1), np.int64), (1.0,), s_t)
    r = L.b.asnc_lut(stem + ".recip", ssum, "reciprocal", (0.0,), code_type(ib, unit, 0, shape1), ssamp)
    return L.b.decode_mac(stem, e, r, "mul", with_shape(out, xa.shape))


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


@register("QLinearSoftmax")
def qlinear_softmax(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, sx, zx, sy = ins[:4]
    zy = ins[4] if len(ins) > 4 else None
    X = x if isinstance(x, Masked) else _qin(L, x, sx, zx)  # a masked input keeps its pre-mask codes
    xa = X.act if isinstance(X, Masked) else X
    assert isinstance(xa, Act)
    _softmax_axis(n, len(xa.shape), int(attr(n, "opset", 13)))
    out, signed = L.q_type(sy, zy, xa.shape)
    r = softmax_core(L, n.output[0], X, out, None)
    return [Act(r.name, r.type, True, signed)]


def layernorm_core(L: Lowerer, stem: str, x: Act, gamma, beta, eps: float, out, samples) -> Act:  # noqa: ANN001
    k = x.shape[-1]
    ib = max(L.opts.internal_bits, x.type.bits)
    shape1 = x.shape[:-1] + (1,)
    up = ib - x.type.bits
    mean_t = code_type(ib, x.scale / (1 << up), x.zp << up, shape1)
    ones = np.ones((k, 1), np.int64)
    mu = L.b.soma_matmul(stem + ".mean", x, ones, (1.0 / k,), mean_t)
    if samples is not None:
        s = np.asarray(samples, np.float64)
        c = s - s.mean(axis=-1, keepdims=True)
        v = (c * c).mean(axis=-1, keepdims=True)
        cmax, qmax, vmax, vmin = float(np.abs(c).max()), float((c * c).max()), float(v.max()), float(v.min())
        nmax = float(np.abs(c / np.sqrt(v + eps)).max())
        vsamp = v.reshape(-1)
    else:
        cmax = x.scale * x.type.hi
        qmax = vmax = cmax * cmax
        vmin, nmax, vsamp = 0.0, float(np.sqrt(k)), None
    c_t = range_type(-1.1 * cmax, 1.1 * cmax, ib, x.shape, symmetric=True)
    c_a = L.b.add_acts(stem + ".centre", x, mu, -1, c_t)
    q = L.b.decode_mac(stem + ".sq", c_a, c_a, "mul", range_type(0.0, 1.21 * qmax, ib, x.shape))
    var = L.b.soma_matmul(stem + ".var", q, ones, (1.0 / k,), range_type(0.0, 1.25 * vmax, ib, shape1))
    r_hi = 1.0 / np.sqrt(0.5 * vmin + eps)
    r = L.b.asnc_lut(stem + ".rsqrt", var, "rsqrt", (float(eps),), range_type(0.0, r_hi, ib, shape1), vsamp)
    nrm = L.b.decode_mac(stem + ".norm", c_a, r, "mul", range_type(-1.1 * nmax, 1.1 * nmax, ib, x.shape,
                                                                    symmetric=True))
    g = None if gamma is None else np.asarray(gamma, np.float64)
    bta = None if beta is None or not np.any(beta) else np.asarray(beta, np.float64)
    if g is None and bta is None:
        return L.b.requant_to(stem, nrm, with_shape(out, x.shape))
    return L.b.affine_const(stem, nrm, g, bta, with_shape(out, x.shape))


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


@register("ReduceMean", "ReduceSum")
def reduce_last(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} of a non-activation")
    if len(ins) > 1 and ins[1] is not None and is_const(ins[1]):
        axes = [int(a) for a in L.const_value(ins[1]).reshape(-1)]
    else:
        axes = list(attr(n, "axes", []) or [])
    rank = len(x.shape)
    if [a % rank for a in axes] != [rank - 1]:
        raise FrontendError(f"{n.op_type} over axes {axes}: only the last axis is supported")
    k = x.shape[-1]
    keep = attr(n, "keepdims", 1)
    shape1 = x.shape[:-1] + (1,)
    out = L.out_type(n.output[0], shape1 if keep else x.shape[:-1])
    w = (1.0 / k,) if n.op_type == "ReduceMean" else (1.0,)
    y = L.b.soma_matmul(n.output[0], x, np.ones((k, 1), np.int64), w, with_shape(out, shape1))
    if not keep:
        from lasercc.frontends.onnx.ops_move import _move

        y = _move(L, n, y, x.shape[:-1])  # type: ignore[assignment]
    return [y]
