"""Lowerings that several ops share: the linear Soma (MatMul/Gemm/QLinear*/contrib), the products of two
activations, and the softmax / layer-norm / reduction decompositions (standard ops and onnxruntime's fused
ones build on the same cores, so a fix reaches all of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import MASK_THRESHOLD, as01, logical_not, move
from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.values import Act, Const, DynScale, IntAcc, Masked, QWeight, Val, code_type, range_type
from lasercc.frontends.onnx.weights import quantize_columns
from lasercc.ir.nodes import Mask, WTAMax
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer


def weight_ints(L: Lowerer, w: Val, what: str = "weight") -> tuple[np.ndarray, tuple[float, ...]]:
    """[K, N] integer weights (zero point removed) and per-tensor / per-output-channel scales.

    A model's own integers come back in the narrowest dtype that holds ``q - zero_point`` and its negation
    (int16 for 8-bit weights, int32 for 16-bit, else int64), not int64: a billion-parameter QDQ model's
    LM head would otherwise be copied to 0.5 GB of int64. Callers that do arithmetic beyond negation widen
    first (a float weight's :func:`quantize_columns` codes are int64)."""
    if isinstance(w, QWeight) and w.q.ndim == 2 and (w.axis in (None, 1) or w.scale.size == 1):
        size = w.q.dtype.itemsize if w.q.dtype.kind in "iu" else 8
        wide = np.int16 if size == 1 else np.int32 if size == 2 else np.int64
        q = w.q.astype(wide)
        q -= (w.zero_point.astype(np.int64).reshape(1, -1).astype(wide) if w.zero_point.size > 1  # in place
              else int(w.zero_point.reshape(-1)[0]))
        return q, tuple(float(s) for s in np.asarray(w.scale, np.float32).reshape(-1))
    real = L.const_value(w, what)
    if real.ndim != 2:
        raise FrontendError(f"{what} must be a 2-D constant, got shape {list(real.shape)}")
    q, s = quantize_columns(real, L.opts.weight_bits)  # in row blocks (weights.py): no float64 copies
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
    real = np.asarray(L.const_value(c, "bias"), np.float64)
    if real.ndim >= 2 and any(d != 1 for d in real.shape[:-1]):  # varies over rows too (Gemm's C of [M, N])
        return np.rint(real / unit.astype(np.float64)).astype(np.int64)  # broadcasts against the [..., N] result
    return np.rint(np.broadcast_to(real.reshape(-1), (n_out,)) / unit.astype(np.float64)).astype(np.int64)


def fusable_bias(L: Lowerer, tensor: str) -> tuple[onnx.NodeProto, Val] | None:
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
    if alpha == 0.0:
        raise FrontendError("alpha = 0 makes the product vanish; drop the linear op from the model")
    if alpha != 1.0:  # scales stay positive: a negative alpha negates the integer weights
        sw = tuple(s * abs(alpha) for s in sw)
        q = -q if alpha < 0 else q
    if q.shape[0] != x.shape[-1]:
        raise FrontendError(f"weight {list(q.shape)} does not fit input {list(x.shape)}")
    shape = x.shape[:-1] + (q.shape[1],)
    if bias is None and out is None:
        fb = fusable_bias(L, out_tensor)
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


def mul_dynamic(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val) -> list | None:
    """The Mul steps of dynamic quantization: scale x constant, and accumulator x scale -> Soma."""
    if isinstance(b, IntAcc) or (isinstance(b, DynScale) and not isinstance(a, IntAcc)):
        a, b = b, a
    if isinstance(a, DynScale) and isinstance(b, Const | QWeight):
        return [DynScale(a.act, a.factor * L.const_value(b), a.what)]
    if isinstance(a, IntAcc) and isinstance(b, DynScale):
        f = np.asarray(b.factor, np.float64).reshape(-1)
        sw = tuple(float(np.float32(v)) for v in f)
        if b.act.name not in (a.act.name, a.source):
            raise FrontendError("MatMulInteger/ConvInteger rescaled by another tensor's dynamic scale")
        shape = a.act.shape[:-1] + (a.weights.shape[1],)
        tensor = n.output[0]
        bias = None
        fb = fusable_bias(L, tensor)
        if fb is not None:
            add, bias = fb
            L.skip.add(id(add))
            tensor = add.output[0]
        out = L.out_type(tensor, shape)
        bu = bias_units(L, bias, a.act.scale, sw, a.weights.shape[1])
        res = L.b.soma_matmul(tensor, a.act, a.weights, sw, out, bu)
        if a.layout is not None:
            moved = move(L, n, res, tuple(res.shape[p] for p in a.layout), a.layout)
            assert isinstance(moved, Act)
            res = moved
        if tensor != n.output[0]:
            L.env[tensor] = res
        return [res]
    if isinstance(a, DynScale | IntAcc) or isinstance(b, DynScale | IntAcc):
        raise FrontendError(f"unsupported use of a dynamic-quantization scale or integer accumulator: "
                            f"{type(a).__name__} x {type(b).__name__}")
    return None


def mask_node(L: Lowerer, stem: str, x: Act, mask: np.ndarray | Act) -> Act:
    if isinstance(mask, Act):
        return dyn_mask(L, stem, x, mask)
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


def dyn_mask(L: Lowerer, stem: str, x: Act, drop: Act) -> Act:
    """Code 0 where ``drop``'s real value is positive, x's code elsewhere, by one exact 2-input Soma:
    acc = (x - z_x) - 2^bits * (d - z_d), requantized with scale exactly 1 and x's zero point, so a
    dropped entry saturates to code 0 and a kept one (d = z_d) is unchanged."""
    big = np.array([-(1 << x.type.bits)], np.int64)
    return L.b.soma_mul(stem, [x, drop], [np.ones(1, np.int64), big], x.scale, (1.0,), x.type)


def exp_shifted(L: Lowerer, stem: str, x: Act | Masked, samples: np.ndarray | None,
                masked_rows: str = "uniform") -> tuple:
    """The shared front of Softmax / LogSoftmax / ReduceLogSumExp along the last axis, K entries::

        m = WTAMax(x)            (masked entries first set to code 0 by a Mask node)
        d = Soma(x - m)          exact: same scale, code = x - m + 2^N - 1
        e = ASNC exp(d)          e in (0, 1], internal_bits, scale 1/(2^b - 1); masked entries -> 0
        S = Soma(e @ ones[K, 1]) S in [1, K] (planned from the calibration samples when there are some)

    A row masked throughout gives the uniform 1/K that ONNX computes for ``x + finfo.min`` (every entry rounds
    to the same value): its exps are left unzeroed (:func:`_partly_dropped`). Returns ``(m, d, e, S, ssamp)``;
    ``ssamp`` are the calibration values of S (or None). ``masked_rows="zero"`` gives such rows zero
    probabilities instead: what the standard Attention (opset 23) and onnxruntime's fused attention define.
    """
    if masked_rows not in ("uniform", "zero"):
        raise ValueError(f"masked_rows must be 'uniform' or 'zero', got {masked_rows!r}")
    mask = x.mask if isinstance(x, Masked) else None
    xa = x.act if isinstance(x, Masked) else x
    if not xa.shape:
        raise FrontendError("Softmax of a scalar")
    k = xa.shape[-1]
    zero_mask = mask
    if isinstance(mask, np.ndarray) and k and masked_rows == "uniform":
        every = np.all(np.broadcast_to(mask, xa.shape), axis=-1, keepdims=True)
        if np.any(every):  # rows masked throughout: uniform, as for input-dependent masks (_partly_dropped)
            zero_mask = np.broadcast_to(mask, xa.shape) & ~every
    ib = L.opts.internal_bits
    n_bits = xa.type.bits
    shape1 = xa.shape[:-1] + (1,)
    xin = mask_node(L, stem + ".mask", xa, mask) if mask is not None else xa
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
        every = np.all(dead, axis=-1, keepdims=True)  # rows masked throughout: uniform (see _partly_dropped)
        if masked_rows == "zero":
            every = np.zeros_like(every)
        s = np.where(every, 0.0, np.where(dead, -np.inf, s))
        mx = np.max(s, axis=-1, keepdims=True)
        dd = s - np.where(np.isfinite(mx), mx, 0.0)
        dsamp = dd[np.isfinite(dd)]
        ssamp = np.sum(np.exp(dd), axis=-1).reshape(-1)
        smax = float(np.max(ssamp)) if ssamp.size else None
    e = L.b.asnc_lut(stem + ".exp", d, "exp", (), e_t, dsamp)
    if mask is not None:
        e = mask_node(L, stem + ".zero", e, zero_mask if isinstance(mask, np.ndarray) or masked_rows == "zero"
                      else _partly_dropped(L, stem, mask))
    s_hi = float(min(k, 1.25 * smax)) if smax else float(k)
    s_t = range_type(0.0, max(s_hi, 1.0), ib, shape1)
    ssum = L.b.soma_matmul(stem + ".sum", e, np.ones((k, 1), np.int64), (1.0,), s_t)
    return m, d, e, ssum, ssamp


# Rounding an input code moves exp(x - m) by up to e^(s/2) - 1 (s: the input's code step). Softmax output does not
# depend on a common offset of its row, but the codes must carry it: a row offset by 10^4 in a 16-bit tensor has a
# step of ~0.15 (ONNX's test_softmax_large_number), i.e. probabilities off by ~8 %. Refused (never a silent wrong
# answer) when that rounding alone exceeds this many steps of the result at min(input, output) bits.
SOFTMAX_INPUT_STEPS = 256


def check_softmax_input(xa: Act, out: CodeType, log: bool, what: str = "Softmax") -> None:
    """Refuse a softmax whose input code step alone spoils the result (see :data:`SOFTMAX_INPUT_STEPS`)."""
    if xa.shape and xa.shape[-1] == 1:
        return  # one entry per row: the result is exactly 1 (0 for log-softmax) whatever the input
    s = xa.scale
    bits = min(xa.type.bits, out.bits)
    if log:  # log-softmax: an absolute error s/2 against the output's real span
        err = s / 2
        span = out.scale[0] * ((1 << out.bits) - 1)
    else:  # probabilities: a relative error e^(s/2) - 1 of values up to 1
        err = float(np.expm1(min(s / 2, 700.0)))
        span = 1.0
    step = span / ((1 << bits) - 1)
    if err > SOFTMAX_INPUT_STEPS * step:
        lo, hi = s * (xa.type.lo - xa.zp), s * (xa.type.hi - xa.zp)
        raise FrontendError(
            f"{what} input codes are too coarse: its {xa.type.bits}-bit range [{lo:.4g}, {hi:.4g}] has a step of "
            f"{s:.3g}, so rounding the input alone moves the result by up to {err:.3g}, more than "
            f"{SOFTMAX_INPUT_STEPS} steps of a {bits}-bit result. {what} ignores a common offset of each row but the "
            "codes must carry it: narrow the input's range (rows offset by large constants) or use more bits")


def _partly_dropped(L: Lowerer, stem: str, drop: Act) -> Act:
    """``drop`` (an input-dependent mask: true where the real value is positive) kept only in rows (last axis)
    that keep at least one entry, as exact 0/1 codes; computed once per mask tensor.

    Why: in a row where every entry is masked, ONNX's ``x + finfo.min`` rounds every entry to the same value,
    so its softmax is uniform (1/K); zeroing every exp would give 0 (left-padded causal LMs have such rows at the
    padding positions). Here the masked codes are all 0, so the row's max is 0 and every exp is 1: leaving them
    unzeroed gives 1/K. (A -1e4 mask would keep ``softmax(x)`` there; finfo.min and -1e9 are what exporters use.)
    ``drop01 * max_row(1 - drop01)``: an ASNC nonzero table, a Soma, a WTAMax and a DecodeMAC on the mask tensor
    (typically [batch, 1, 1, keys]: small).
    """
    cache = L.__dict__.setdefault("_partly_dropped", {})
    if drop.name in cache:
        return cache[drop.name]
    d01 = as01(L, stem + ".drop01", drop)
    keep = logical_not(L, stem + ".keep", d01)
    if keep.shape and keep.shape[-1] > 1:
        t = with_shape(keep.type, keep.shape[:-1] + (1,))
        name = L.b.fresh(stem + ".anykeep")
        L.b.add(WTAMax(name=name, inputs=(keep.name,), type=t, axis=len(keep.shape) - 1))
        keep = Act(name, t)
    r = L.b.decode_mac(stem + ".dropkept", d01, keep, "mul", code_type(2, 1.0, 0, d01.shape))
    cache[drop.name] = r
    return r


def softmax_core(L: Lowerer, stem: str, x: Act | Masked, out, samples: np.ndarray | None,  # noqa: ANN001
                 masked_rows: str = "uniform") -> Act:
    """Softmax along the last axis: :func:`exp_shifted`, then r = ASNC reciprocal(S) in (0, 1] and
    y = DecodeMAC(e * r) in the output code type (``masked_rows``: see :func:`exp_shifted`)."""
    xa = x.act if isinstance(x, Masked) else x
    if not xa.shape:
        raise FrontendError("Softmax of a scalar")
    check_softmax_input(xa, out, log=False)
    ib = L.opts.internal_bits
    shape1 = xa.shape[:-1] + (1,)
    _, _, e, ssum, ssamp = exp_shifted(L, stem, x, samples, masked_rows)
    unit = 1.0 / ((1 << ib) - 1)
    r = L.b.asnc_lut(stem + ".recip", ssum, "reciprocal", (0.0,), code_type(ib, unit, 0, shape1), ssamp)
    return L.b.decode_mac(stem, e, r, "mul", with_shape(out, xa.shape))


def layernorm_core(L: Lowerer, stem: str, x: Act, gamma, beta, eps: float, out, samples, *,  # noqa: ANN001
                   rms: bool = False, parts: dict | None = None) -> Act:
    """LayerNorm (``rms=False``) or RMSNorm (``rms=True``: no centring, ``x * rsqrt(mean(x^2) + eps)``) of ``x``
    over its last axis, then ``gamma`` / ``beta`` (constants or None). ``out`` None: the normalised value in its
    planned internal type. ``parts`` (a dict) receives the internals ``mean`` (LayerNorm only), ``rsqrt`` (the
    inverse standard deviation / RMS) and ``norm`` for ops that output them."""
    k = x.shape[-1]
    ib = max(L.opts.internal_bits, x.type.bits)
    shape1 = x.shape[:-1] + (1,)
    ones = np.ones((k, 1), np.int64)
    if samples is not None:
        s = np.asarray(samples, np.float64).reshape(-1, k)
        c = s if rms else s - s.mean(axis=-1, keepdims=True)
        v = (c * c).mean(axis=-1, keepdims=True)
        # rows that are exactly constant (v = 0: DeiT's zero-initialised CLS/distillation tokens) normalise to 0
        # whatever the rsqrt is (their centred codes are 0), so they do not widen its range to 1/sqrt(eps)
        live = v[v > 0]
        vmin = float(live.min()) if live.size else 0.0
        cmax, qmax, vmax = float(np.abs(c).max()), float((c * c).max()), float(v.max())
        nmax = float(np.abs(c / np.sqrt(v + eps)).max())
        vsamp = v.reshape(-1)
    else:
        cmax = max(abs(x.scale * (x.type.lo - x.zp)), abs(x.scale * (x.type.hi - x.zp))) if rms \
            else x.scale * x.type.hi
        qmax = vmax = cmax * cmax
        vmin, nmax, vsamp = 0.0, float(np.sqrt(k)), None
    # floors: a group of one element (or constant rows) normalises to exactly 0; its types must still be sane,
    # and x - mean must pass emit.check_cancellation: the centred range spans at least 128 input steps
    cmax, nmax = max(cmax, 128 * x.scale), max(nmax, 0.1)
    if rms:
        c_a = x
    else:
        up = ib - x.type.bits
        mean_t = code_type(ib, x.scale / (1 << up), x.zp << up, shape1)
        mu = L.b.soma_matmul(stem + ".mean", x, ones, (1.0 / k,), mean_t)
        if parts is not None:
            parts["mean"] = mu
        c_t = range_type(-1.1 * cmax, 1.1 * cmax, ib, x.shape, symmetric=True)
        c_a = L.b.add_acts(stem + ".centre", x, mu, -1, c_t)
    q = L.b.decode_mac(stem + ".sq", c_a, c_a, "mul", range_type(0.0, 1.21 * qmax, ib, x.shape))
    var = L.b.soma_matmul(stem + (".ms" if rms else ".var"), q, ones, (1.0 / k,),
                          range_type(0.0, 1.25 * vmax, ib, shape1))
    r_hi = 1.0 / np.sqrt(0.5 * vmin + eps)
    r = L.b.asnc_lut(stem + ".rsqrt", var, "rsqrt", (float(eps),), range_type(0.0, r_hi, ib, shape1), vsamp)
    nrm = L.b.decode_mac(stem + ".norm", c_a, r, "mul", range_type(-1.1 * nmax, 1.1 * nmax, ib, x.shape,
                                                                    symmetric=True))
    if parts is not None:
        parts["rsqrt"], parts["norm"] = r, nrm
    g = None if gamma is None else np.asarray(gamma, np.float64)
    bta = None if beta is None or not np.any(beta) else np.asarray(beta, np.float64)
    if out is None:
        return nrm
    if g is None and bta is None:
        return L.b.requant_to(stem, nrm, with_shape(out, x.shape))
    return L.b.affine_const(stem, nrm, g, bta, with_shape(out, x.shape))
