"""Arithmetic and unary nonlinearities (QuantizeLinear / DequantizeLinear and the QOperator ops other than
QLinearAdd / QLinearMul live in ``ops_quant.py``).

* Add/Sub of two activations -> 2-input mul-form Soma in a common scale (``emit.add_acts``);
  Add/Sub/Mul/Div by constants -> 1-input mul-form Soma (``emit.affine_const``); Mul of two
  activations -> DecodeMAC; Div by an activation -> ASNC reciprocal (rsqrt when the divisor is a
  Sqrt) + DecodeMAC; ``Pow(x, 2)`` -> DecodeMAC(x, x).
* Additive masks (constants with entries <= -1e4, e.g. ``finfo.min``) become a :class:`Masked` value that
  Softmax applies as a Mask node: never quantized as data (``Where(cond, x, -big)``: ``ops_int.py``).
* Add/Sub/Mul of integer data are exact (``common.int_binary``); the integer/bool ops are in ``ops_int.py``.
* Unary functions -> ASNCSegment in exact lookup-table form (``emit.asnc_lut``), named by a
  registered function so the ``asnc-fit`` pass can refit them.

Float arithmetic in detail: a constant that broadcasts the activation up copies it first (data
movement); a divisor that can be <= 0 gets IEEE's signed 1/b table, one that is an elementwise chain a
single 1/f table (``chains.py``); Pow by a constant tensor, by an activation, and Clip with activation
bounds: see their handlers (Identity and Dropout: ``ops_int.py``). Unary functions of a float
activation -- and any chain of elementwise ops on one activation -- are evaluated into one exact table by
``chains.py`` before they reach a handler here; the unary handler serves what chains cannot evaluate
(activations that are exact integer data). Integer Div/Pow/Clip by constants: exact tables per value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.chains import planned_table, recip_bound, reciprocal_table, values_table
from lasercc.frontends.onnx.common import (
    MASK_THRESHOLD,
    broadcast_to,
    int_binary,
    int_of,
    int_type,
    is_const,
    is_int,
    model_type,
    q_input,
)
from lasercc.frontends.onnx.cores import mul_dynamic
from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynMask,
    Masked,
    QWeight,
    Val,
    code_type,
    range_type,
)

# ---- arithmetic ------------------------------------------------------------------------------------


def _shape_of(v: Val) -> tuple[int, ...]:
    if isinstance(v, Act):
        return v.shape
    if isinstance(v, Masked):
        return v.act.shape
    return tuple(np.shape(v.value if isinstance(v, Const) else v.q))  # type: ignore[union-attr]


def _out(L: Lowerer, n: onnx.NodeProto, shape: tuple[int, ...], out=None):  # noqa: ANN001, ANN202
    if out is not None:
        return out if tuple(out.shape) == tuple(shape) else out.model_copy(update={"shape": tuple(shape)})
    return L.out_type(n.output[0], shape)


def _mask_of(c: np.ndarray) -> np.ndarray | None:
    """A boolean mask if ``c`` is an additive -inf mask (every entry either ~0 or <= MASK_THRESHOLD)."""
    c = np.asarray(c, np.float64)
    big = c <= MASK_THRESHOLD
    if big.any() and np.all(np.abs(c[~big]) < 1e-6):
        return big
    return None


def _biased_mask_of(c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(bias, mask)`` if ``c`` is a finite additive bias with "minus infinity" entries (at or below
    MASK_THRESHOLD, or -inf) -- T5's relative position bias under a causal mask, folded into one constant
    once the sequence length is pinned (transformers' default attention writes ``Where(causal, bias,
    finfo.min)``). The masked entries of ``bias`` are 0."""
    c = np.asarray(c, np.float64)
    big = (c <= MASK_THRESHOLD) | np.isneginf(c)
    if not big.any() or big.all() or np.isnan(c).any() or np.isposinf(c).any():
        return None
    return np.where(big, 0.0, c), big


def _add_bias_masked(L: Lowerer, n: onnx.NodeProto, a: Act, bias: np.ndarray, mask: np.ndarray, out=None  # noqa: ANN001
                     ) -> Masked:
    """``a + where(mask, -inf, bias)``: the bias added to the unmasked entries (a Soma), then masked. The sum's
    code type is the interval of ``a``'s range plus the bias's range -- the calibrated range of the ONNX
    tensor holds the -inf fill, so it cannot be used."""
    shape = tuple(np.broadcast_shapes(a.shape, bias.shape))
    if shape != a.shape:  # the constant broadcasts the activation up: copy it first (data movement)
        a = broadcast_to(L, n.output[0] + ".bcast", a, shape)
    lo, hi = a.scale * (a.type.lo - a.zp), a.scale * (a.type.hi - a.zp)
    bits = _out(L, n, shape, out).bits
    t = range_type(lo + float(bias.min()), hi + float(bias.max()), bits, shape)
    return Masked(L.b.affine_const(n.output[0], a, None, bias, t), np.broadcast_to(mask, shape))


def _add_masked(L: Lowerer, n: onnx.NodeProto, a: Act, b: Masked) -> Masked:
    """``scores + where(keep, bias, -inf)`` (T5's position bias under a padding mask): the sum of the two
    activations, masked where ``b`` is. The sum's code type comes from interval arithmetic on the operands'
    ranges -- the calibrated range of the ONNX tensor holds the -inf fill, so it cannot be used."""
    x = b.act
    shape = tuple(np.broadcast_shapes(a.shape, x.shape))

    def span(v: Act) -> tuple[float, float]:
        return v.scale * (v.type.lo - v.zp), v.scale * (v.type.hi - v.zp)

    (alo, ahi), (xlo, xhi) = span(a), span(x)
    t = range_type(alo + xlo, ahi + xhi, max(a.type.bits, x.type.bits), shape)
    total = L.b.add_acts(n.output[0], a, x, 1, t)
    mask = b.mask
    if isinstance(mask, np.ndarray):
        mask = np.broadcast_to(mask, shape)
    elif mask.shape != shape:
        mask = broadcast_to(L, n.output[0] + ".maskb", mask, shape)
    return Masked(total, mask)


def add_sub(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val, sign: int, out=None) -> Val:  # noqa: ANN001
    if is_int(a) or is_int(b):  # integer tensors (position ids): exact, never calibrated
        return int_binary(L, n, a, b, "add" if sign > 0 else "sub")
    if isinstance(a, DynMask) and isinstance(b, Act) and sign > 0:
        a, b = b, a
    if isinstance(a, Act) and isinstance(b, DynMask) and sign * b.factor < 0:
        return Masked(a, b.src)
    if isinstance(a, Masked) and isinstance(b, Act) and sign > 0:
        a, b = b, a
    if isinstance(a, Act) and isinstance(b, Masked) and sign > 0:
        return _add_masked(L, n, a, b)
    if isinstance(a, Masked) and is_const(b) and sign > 0:
        a, b = b, a
    if is_const(a) and isinstance(b, Act | Masked) and sign > 0:
        a, b = b, a
    if isinstance(a, Act) and is_const(b):
        c = sign * L.const_value(b)
        m = _mask_of(c) if sign > 0 else None
        shape = tuple(np.broadcast_shapes(a.shape, np.shape(c)))
        if m is not None:
            if shape != a.shape:
                raise FrontendError("an additive mask may not broadcast the activation")
            return Masked(a, np.broadcast_to(m, shape))
        bm = _biased_mask_of(c) if sign > 0 else None
        if bm is not None:
            return _add_bias_masked(L, n, a, bm[0], bm[1], out)
        if shape != a.shape:  # the constant broadcasts the activation up: copy it first (data movement)
            a = broadcast_to(L, n.output[0] + ".bcast", a, shape)
        return L.b.affine_const(n.output[0], a, None, c, _out(L, n, shape, out))
    if is_const(a) and isinstance(b, Act):  # c - x
        c = L.const_value(a)
        shape = tuple(np.broadcast_shapes(b.shape, np.shape(c)))
        if shape != b.shape:
            b = broadcast_to(L, n.output[0] + ".bcast", b, shape)
        return L.b.affine_const(n.output[0], b, -np.ones(1), c, _out(L, n, shape, out))
    if isinstance(a, Act) and isinstance(b, Act):
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        return L.b.add_acts(n.output[0], a, b, sign, _out(L, n, shape, out))
    raise FrontendError(f"{n.op_type} of {type(a).__name__} and {type(b).__name__} is not supported")


@register("Add")
def add(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    return [add_sub(L, n, ins[0], ins[1], 1)]


@register("Sub")
def sub(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    return [add_sub(L, n, ins[0], ins[1], -1)]


def mul(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val, out=None) -> Val:  # noqa: ANN001
    if is_int(a) or is_int(b):  # integer tensors (position ids): exact, never calibrated
        return int_binary(L, n, a, b, "mul")
    dyn = mul_dynamic(L, n, a, b)
    if dyn is not None:
        return dyn[0]
    if is_const(a):
        a, b = b, a
    if isinstance(a, Act) and is_const(b) and np.size(L.const_value(b)) == 1 \
            and abs(float(L.const_value(b).reshape(-1)[0])) >= -MASK_THRESHOLD:
        return DynMask(a, float(L.const_value(b).reshape(-1)[0]))
    if isinstance(a, Masked) and is_const(b):
        c = L.const_value(b)
        if np.any(np.asarray(c) <= 0):
            raise FrontendError("a masked tensor may only be scaled by positive constants")
        x = a.act
        shape = tuple(np.broadcast_shapes(x.shape, np.shape(c)))
        t = _masked_scaled_type(L, n, x, c, shape) if out is None else out
        return Masked(L.b.affine_const(n.output[0], x, c, None, t), a.mask)
    if isinstance(a, Act) and is_const(b):
        c = L.const_value(b)
        shape = tuple(np.broadcast_shapes(a.shape, np.shape(c)))
        return L.b.affine_const(n.output[0], a, c, None, _out(L, n, shape, out))
    if isinstance(a, Act) and isinstance(b, Act):
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        return L.b.decode_mac(n.output[0], a, b, "mul", _out(L, n, shape, out))
    raise FrontendError(f"Mul of {type(a).__name__} and {type(b).__name__} is not supported")


def _masked_scaled_type(L: Lowerer, n: onnx.NodeProto, x: Act, c: np.ndarray, shape):  # noqa: ANN001, ANN202
    """Scaling masked scores: the calibration range includes -inf entries, so derive the type from x."""
    cmax = float(np.max(c))
    lo, hi = x.scale * (0 - x.zp) * cmax, x.scale * (x.type.hi - x.zp) * cmax
    return range_type(lo, hi, x.type.bits, shape)


@register("Mul")
def mul_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    return [mul(L, n, ins[0], ins[1])]


@register("Div")
def div(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``a / c`` -> ``a * (1/c)`` (a Soma); ``a / b`` of activations -> a reciprocal table on b, then a
    DecodeMAC product. A divisor that is an elementwise chain of one activation (``sqrt(v + eps)``) is
    already a table of 1/f(v) (``chains.py``); another divisor gets a table of 1/b (rsqrt when b is a
    Sqrt): a positive divisor the registered ``reciprocal``, one that can be negative IEEE's 1/b."""
    a, b = ins
    if is_int(a) and is_const(b):
        return [_div_int(L, n, a, b)]
    if is_int(a) and is_int(b):  # integer by integer: ONNX truncates toward zero
        return [int_pair_table(L, n, a, b, _trunc_div, "Div")]
    recip = L.__dict__.get("chain_recips", {}).get(n.input[1])
    if recip is not None:
        shape = tuple(np.broadcast_shapes(_shape_of(a), recip.shape))
        if isinstance(a, Act):
            return [L.b.decode_mac(n.output[0], a, recip, "mul", L.out_type(n.output[0], shape))]
        if is_const(a):
            return [L.b.affine_const(n.output[0], recip, L.const_value(a), None, L.out_type(n.output[0], shape))]
        raise FrontendError(f"Div of {type(a).__name__} by an activation is not supported")
    if is_const(b):
        return [mul(L, n, a, Const(1.0 / L.const_value(b).astype(np.float64)))]
    if isinstance(b, Act) and not b.integer and isinstance(a, Act | Const | QWeight) and not is_int(a):
        r = reciprocal_of(L, n.input[1], b, n.output[0] + ".recip")
        shape = tuple(np.broadcast_shapes(_shape_of(a), b.shape))
        if isinstance(a, Act):
            return [L.b.decode_mac(n.output[0], a, r, "mul", L.out_type(n.output[0], shape))]
        return [L.b.affine_const(n.output[0], r, L.const_value(a), None, L.out_type(n.output[0], shape))]
    raise FrontendError(f"Div of {type(a).__name__} by {type(b).__name__} is not supported")


def _div_int(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val) -> Act:
    """Integer data divided by a constant integer tensor: ONNX's integer Div truncates toward zero."""
    c = _int_const(L, b, "Div")
    if np.any(c == 0):
        raise FrontendError("integer Div by the constant 0")
    return _int_tables(L, n, a, c, lambda v, d: np.trunc(v / d).astype(np.int64), "Div")


def _trunc_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ONNX's integer Div: the quotient truncated toward zero. Division by 0 is undefined in ONNX (a C++ fault in
    most runtimes); it gives 0 here, like NumPy's integer division, so a table entry exists for it."""
    q = np.abs(x) // np.where(y == 0, 1, np.abs(y))
    return np.where(y == 0, 0, np.sign(x) * np.sign(y) * q)


def _int_pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ONNX's integer Pow: ``x ** y`` for ``y >= 0``. A negative exponent has an integer result only for a base of
    +-1; elsewhere 1 / x^|y| truncates to 0 (onnxruntime's cast of ``std::pow``; 0 ** -k, undefined, gives 0).
    Powers of 2^62 and more saturate there, so the result's range check (:func:`int_type`) refuses them rather
    than int64 wrapping around to a small wrong value."""
    big = np.power(np.abs(x).astype(np.float64), np.maximum(y, 0)) >= 2.0 ** 62
    r = np.where(big, np.int64(1 << 62), x ** np.where(big, 0, np.maximum(y, 0)))
    unit = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 0, 1, -1), 0))
    return np.where(y < 0, unit, r)


def int_pair_table(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val, f, op: str,  # noqa: ANN001
                   stem: str | None = None) -> Act:
    """``f(x, y)`` of two exact integer operands (value class b), exactly: each bounded by interval arithmetic
    (an integer input by how the model reads it, :func:`~lasercc.frontends.onnx.common.id_bound`), the pair is
    one integer ``k = (x - xlo) * ny + (y - ylo)`` (an exact Soma with integer weights) and the result one table
    on ``k``'s codes holding ``f`` of every pair in the box. Refused when the box has more than
    ``2^MAX_TABLE_BITS`` pairs (a table's codes): a bounded quotient or power of two wide integers has no
    exact spiking form here."""
    from lasercc.frontends.onnx.chains import MAX_TABLE_BITS
    from lasercc.frontends.onnx.common import int_result

    stem = stem or n.output[0]
    x, y = int_of(L, stem + ".x", a), int_of(L, stem + ".y", b)
    (xlo, xhi), (ylo, yhi) = x.int_range, y.int_range  # type: ignore[misc]
    nx, ny = xhi - xlo + 1, yhi - ylo + 1
    if nx * ny > 1 << MAX_TABLE_BITS:
        raise FrontendError(f"{op} of two integer tensors: their values span [{xlo}, {xhi}] x [{ylo}, {yhi}], "
                            f"{nx * ny} pairs, more than one {MAX_TABLE_BITS}-bit table holds (bound the inputs "
                            "more tightly)")
    shape = tuple(np.broadcast_shapes(x.shape, y.shape))
    k = int_result(L, stem + ".pair", [x, y], [np.full(1, ny), np.ones(1)], -(xlo * ny + ylo), 0, nx * ny - 1,
                   shape)
    kv = np.arange(1 << k.type.bits, dtype=np.int64) - k.zp
    inside = (kv >= 0) & (kv < nx * ny)
    kc = np.clip(kv, 0, nx * ny - 1)
    q = np.asarray(f(xlo + kc // ny, ylo + kc % ny), np.int64)
    qlo, qhi = int(q[inside].min()), int(q[inside].max())
    r = values_table(L, stem, k, np.clip(q, qlo, qhi).astype(np.float64), int_type(qlo, qhi, shape), None)
    return Act(r.name, r.type, int_range=(qlo, qhi))


def _int_const(L: Lowerer, b: Val, op: str) -> np.ndarray:
    c = np.asarray(L.const_value(b))
    if c.dtype.kind not in "iu" and not np.all(c == np.rint(c)):
        raise FrontendError(f"{op} of integer data by a non-integer constant is not supported")
    return c.astype(np.int64)


def _int_tables(L: Lowerer, n: onnx.NodeProto, a: Val, c: np.ndarray, f, op: str) -> Act:  # noqa: ANN001
    """``f(x, c)`` for exact integer data x and a constant integer tensor c: one exact table on x's integer
    codes per distinct value of c (at most ``DIV_MAX_TABLES``), each element selecting its own by a Soma
    with 0/1 weights (exact: every table has the result's type, the requantization scale is 1); the
    result typed by the interval of the values (value class b, never calibrated)."""
    x = int_of(L, n.output[0] + ".in", a)
    if x.type.bits > 16:
        raise FrontendError(f"{op} of {x.type.bits}-bit integer data: a table takes at most 16-bit codes")
    ds = np.unique(c)
    if ds.size > DIV_MAX_TABLES:
        raise FrontendError(f"{op} of integer data by a constant with {ds.size} distinct values: at most "
                            f"{DIV_MAX_TABLES} (one table each)")
    v = np.arange(1 << x.type.bits, dtype=np.int64) - x.zp
    lo, hi = x.int_range  # type: ignore[misc]
    inside = (v >= lo) & (v <= hi)
    qs = [np.asarray(f(v, int(d)), np.int64) for d in ds]
    qlo, qhi = min(int(q[inside].min()) for q in qs), max(int(q[inside].max()) for q in qs)
    shape = tuple(np.broadcast_shapes(x.shape, c.shape))
    out = int_type(qlo, qhi, shape)
    ts = [values_table(L, f"{n.output[0]}.t{k}" if ds.size > 1 else n.output[0], x,
                       np.clip(q, qlo, qhi).astype(np.float64), int_type(qlo, qhi, x.shape), None)
          for k, q in enumerate(qs)]
    if ds.size == 1:
        r = ts[0] if shape == x.shape else broadcast_to(L, n.output[0] + ".bcast", ts[0], shape)
    else:
        ws = [np.broadcast_to(c == d, shape).astype(np.int64) for d in ds]
        r = L.b.soma_mul(n.output[0], ts, ws, 1.0, (1.0,), out)
    return Act(r.name, r.type, int_range=(qlo, qhi))


DIV_MAX_TABLES = 32


def reciprocal_of(L: Lowerer, tensor: str, b: Act, stem: str) -> Act:
    """1/b as an ASNC table; 1/Sqrt(v) becomes one rsqrt(v) table (the Sqrt node is then dead); a divisor
    whose calibrated range reaches 0 or below gets IEEE's signed reciprocal (``chains.reciprocal_table``)."""
    op, src = L.sources.get(tensor, ("", None))
    v = L.env.get(src.input[0]) if op == "Sqrt" and src is not None else None
    bound = recip_bound(L, tensor) or np.inf  # beyond it a nonzero numerator saturates the quotient anyway
    if isinstance(v, Act) and _positive(L, src.input[0], v):
        samples = _samples(L, src.input[0])
        lo = _positive_floor(L, src.input[0], v)
        out = range_type(0.0, min(1.0 / np.sqrt(lo), bound), L.opts.internal_bits, v.shape)
        return L.b.asnc_lut(stem, v, "rsqrt", (0.0,), out, samples)
    if not _positive(L, tensor, b):
        return reciprocal_table(L, tensor, b, stem)
    lo = _positive_floor(L, tensor, b)
    out = range_type(0.0, min(1.0 / lo, bound), L.opts.internal_bits, b.shape)
    return L.b.asnc_lut(stem, b, "reciprocal", (0.0,), out, _samples(L, tensor))


def _positive(L: Lowerer, tensor: str, x: Act) -> bool:
    """Is the divisor planned positive: calibrated above 0, or (uncalibrated) a type with no negative codes?"""
    r = L.stats.range(tensor)
    return r[0] > 0 if r is not None else x.zp <= 0


def _positive_floor(L: Lowerer, tensor: str, x: Act) -> float:
    """Smallest divisor to plan for: the calibration minimum (with 2x margin) or one code step."""
    r = L.stats.range(tensor)
    lo = r[0] / 2 if r and r[0] > 0 else x.scale * max(1 - x.zp, 1)
    if lo <= 0:
        raise FrontendError(f"divisor {tensor!r} can be zero or negative; cannot plan its reciprocal")
    return lo


def _samples(L: Lowerer, tensor: str) -> np.ndarray | None:
    return L.stats.values(tensor)


# ---- unary nonlinearities ---------------------------------------------------------------------------

UNARY = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Exp": "exp", "Reciprocal": "reciprocal", "Sqrt": "sqrt",
         "Relu": "relu", "Softplus": "softplus", "FastGelu": "gelu_tanh", "Neg": "neg", "Abs": "abs",
         "Sin": "sin", "Cos": "cos"}


def unary_params(n: onnx.NodeProto, L: Lowerer, ins: list) -> tuple[str, tuple[float, ...]]:
    t = n.op_type
    if t in UNARY:
        return UNARY[t], ((0.0,) if t == "Reciprocal" else ())
    if t == "Gelu":
        return ("gelu_tanh" if attr(n, "approximate", "none") in ("tanh", b"tanh") else "gelu"), ()
    if t == "LeakyRelu":
        return "leaky_relu", (float(attr(n, "alpha", 0.01)),)
    if t == "HardSigmoid":
        return "hard_sigmoid", (float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5)))
    if t == "Clip":
        lo = float(L.const_value(ins[1])) if len(ins) > 1 and ins[1] is not None else float(attr(n, "min", -np.inf))
        hi = float(L.const_value(ins[2])) if len(ins) > 2 and ins[2] is not None else float(attr(n, "max", np.inf))
        return "clip", (lo, hi)
    raise FrontendError(f"no table for {t}")


def negate(L: Lowerer, tensor: str, x: Act) -> Act:
    """-x exactly: code' = 2^N - 1 - code in the mirrored type (same scale, zero point 2^N - 1 - z).

    Why not the calibration range of the result: it is the mirror of x's own range, and rows outside the
    calibration (held-out inputs) would saturate -- rotate_half in RoPE negates half of every query and
    key, so that saturation reached the attention scores. One Soma with weight -1 and requant scale 1.
    """
    out = model_type(L, tensor, x.shape) or code_type(x.type.bits, x.scale, x.type.hi - x.zp, x.shape)
    return L.b.soma_mul(tensor, [x], [-np.ones(1, np.int64)], x.scale, (1.0,), out)


@register("Gelu", domain=MS)  # onnxruntime's contrib Gelu is the standard (erf) GELU
@register(*UNARY, "Gelu", "LeakyRelu", "HardSigmoid")
def unary(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """A unary function of an activation -> an exact lookup table. (A float activation's unary op normally
    arrives here only when ``chains.py`` could not evaluate it: one-op chains are tables there.)"""
    x = ins[0]
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} of a non-activation")
    fn, params = unary_params(n, L, ins)
    if n.op_type == "Neg":
        return [negate(L, n.output[0], x)]
    return [L.b.asnc_lut(n.output[0], x, fn, params, L.out_type(n.output[0], x.shape), _samples(L, n.input[0]))]


def _bound(L: Lowerer, n: onnx.NodeProto, ins: list, k: int, name: str, default: float):  # noqa: ANN202
    """Clip's min (k=1) or max (k=2): a float, or an activation (a bound computed at run time)."""
    v = ins[k] if len(ins) > k else None
    if v is None:
        return float(attr(n, name, default))
    if isinstance(v, Act) and not v.integer and not v.boolean:
        if int(np.prod(v.shape)) != 1:
            raise FrontendError(f"Clip's {name} must be a scalar, got shape {list(v.shape)}")
        return v
    c = np.asarray(L.const_value(v, f"Clip {name}"))
    if c.size != 1:
        raise FrontendError(f"Clip's {name} must be a scalar, got shape {list(c.shape)}")
    return float(c.reshape(-1)[0])


def _real_range(x: Act) -> tuple[float, float]:
    return x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)


def max_acts(L: Lowerer, stem: str, a: Act, b: Act, out, sign: int = 1) -> Act:  # noqa: ANN001
    """``max(a, b)`` (sign 1) or ``min(a, b)`` (sign -1) of two activations: ``a + relu(b - a)`` /
    ``a - relu(a - b)``: a 2-input Soma, an exact relu table, a 2-input Soma (internal_bits wide)."""
    (alo, ahi), (blo, bhi) = _real_range(a), _real_range(b)
    dlo, dhi = (blo - ahi, bhi - alo) if sign > 0 else (alo - bhi, ahi - blo)
    shape = tuple(np.broadcast_shapes(a.shape, b.shape))
    ib = L.opts.internal_bits
    d = L.b.add_acts(stem + ".diff", b, a, -1, range_type(dlo, dhi, ib, shape)) if sign > 0 else \
        L.b.add_acts(stem + ".diff", a, b, -1, range_type(dlo, dhi, ib, shape))
    r = L.b.asnc_lut(stem + ".relu", d, "relu", (), range_type(0.0, max(dhi, 0.0), ib, shape), None)
    return L.b.add_acts(stem, a, r, sign, out)


@register("Clip")
def clip(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Clip of a float activation. Constant bounds (inputs, or the attributes before opset 11; an omitted
    bound is +-inf) -> one exact clip table (a one-op chain, normally lowered by ``chains.py``); a bound that
    is an activation (computed at run time) -> ``max(x, lo)`` / ``min(., hi)`` by :func:`max_acts`.
    ``min > max`` gives ``max`` everywhere, as ONNX says."""
    x = ins[0]
    if is_int(x):
        return [_clip_int(L, n, ins)]
    if not isinstance(x, Act) or x.boolean:
        raise FrontendError(f"Clip of {type(x).__name__} is not supported")
    lo, hi = _bound(L, n, ins, 1, "min", -np.inf), _bound(L, n, ins, 2, "max", np.inf)
    out = L.out_type(n.output[0], x.shape)
    if not isinstance(lo, Act) and not isinstance(hi, Act):
        return [L.b.asnc_lut(n.output[0], x, "clip", (lo, hi), out, _samples(L, n.input[0]))]
    y = x
    clo = lo if not isinstance(lo, Act) else -np.inf
    chi = hi if not isinstance(hi, Act) else np.inf
    ib = max(L.opts.internal_bits, x.type.bits)
    if np.isfinite(clo) or np.isfinite(chi):
        y = L.b.asnc_lut(n.output[0] + ".const", x, "clip", (clo, chi), x.type, None)
    if isinstance(lo, Act):
        (ylo, yhi), (llo, lhi) = _real_range(y), _real_range(lo)
        t = out if not isinstance(hi, Act) else range_type(max(ylo, llo), max(yhi, lhi), ib, x.shape)
        y = max_acts(L, n.output[0] + (".max" if isinstance(hi, Act) else ""), y, lo, t)
    if isinstance(hi, Act):
        y = max_acts(L, n.output[0], y, hi, out, sign=-1)
    return [y]


def _clip_int(L: Lowerer, n: onnx.NodeProto, ins: list) -> Act:
    """Clip of exact integer data, ``min(max(x, lo), hi)`` in that order (``lo > hi`` gives ``hi``, as ONNX says):
    a constant bound is an exact table on the integer codes (scale 1), a bound computed at run time from integer
    inputs an exact table on the pair (:func:`int_pair_table`); each result typed by the interval of its values
    -- value class (b), never calibrated."""
    x = int_of(L, n.output[0] + ".in", ins[0])
    steps: list[tuple[str, Val | None, float]] = []
    for k, name, default in ((1, "min", -np.inf), (2, "max", np.inf)):
        v = ins[k] if len(ins) > k else None
        if v is not None and not is_const(v):
            if not is_int(v):
                raise FrontendError(f"Clip of integer data with a non-integer {name} computed at run time is not "
                                    "supported")
            steps.append((name, v, default))
            continue
        c = float(np.asarray(L.const_value(v)).reshape(-1)[0]) if v is not None else float(attr(n, name, default))
        if np.isfinite(c):
            steps.append((name, None, c))
    for k, (name, v, c) in enumerate(steps):
        stem = n.output[0] if k == len(steps) - 1 else f"{n.output[0]}.{name}"
        if v is not None:
            x = int_pair_table(L, n, x, v, np.maximum if name == "min" else np.minimum, "Clip", stem)
            continue
        a, b = x.int_range  # type: ignore[misc]
        clo, chi = (c, np.inf) if name == "min" else (-np.inf, c)
        lo, hi = int(np.clip(a, clo, chi)), int(np.clip(b, clo, chi))
        if x.type.bits > 16:
            raise FrontendError(f"Clip of {x.type.bits}-bit integer data: a table takes at most 16-bit codes")
        r = L.b.asnc_lut(stem, x, "clip", (clo, chi), int_type(lo, hi, x.shape), None)
        x = Act(r.name, r.type, int_range=(lo, hi))
    return x


@register("Pow")
def pow_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``x ** p`` of a float activation.

    * constant scalar p: 2 -> DecodeMAC(x, x), 1 -> x, else one exact table (normally a one-op chain);
    * constant tensor p (per element): one table per distinct exponent (at most ``POW_MAX_TABLES``), each
      element selecting its own by a Soma with 0/1 weights -- exact, since every table has the output's
      code type;
    * p an activation: ``exp(p * log(x))`` (a log table, a DecodeMAC, an exp table) when calibration saw
      only x > 0; otherwise refused (a negative base needs p's parity, which codes do not carry);
    * constant base c > 0 and activation p: ``exp(log(c) * p)`` (a Soma and an exp table).
    Integer base and exponent (exact integer data) are refused here.
    """
    x, p = ins
    if is_int(x) and is_const(p):
        e = _int_const(L, p, "Pow")
        if np.any(e < 0):
            raise FrontendError("Pow of integer data by a negative exponent is not an integer")
        return [_int_tables(L, n, x, e, lambda v, k: v ** k, "Pow")]
    if is_int(x) and is_int(p):  # integer base and exponent from the inputs, both bounded: one exact table
        return [int_pair_table(L, n, x, p, _int_pow, "Pow")]
    if is_int(x):
        raise FrontendError("Pow of integer data by a float exponent computed at run time is not supported")
    if is_int(p) and isinstance(x, Act):
        p = int_of(L, n.output[0] + ".exp", p)  # an integer exponent tensor: exact codes, then exp(p * log x)
    if isinstance(x, Act) and is_const(p):
        pv = np.asarray(L.const_value(p), np.float64)
        shape = tuple(np.broadcast_shapes(x.shape, pv.shape))
        out = L.out_type(n.output[0], shape)
        vals = np.unique(pv)
        if vals.size == 1:
            e = float(vals[0])
            if e == 2.0:
                r = L.b.decode_mac(n.output[0], x, x, "mul", with_shape(out, x.shape))
            elif e == 1.0:
                r = L.b.requant_to(n.output[0], x, with_shape(out, x.shape))
            else:
                r = _pow_table(L, n.output[0], x, n.input[0], e, with_shape(out, x.shape))
            return [r if r.shape == shape else broadcast_to(L, n.output[0] + ".bcast", r, shape)]
        if vals.size > POW_MAX_TABLES:
            raise FrontendError(f"Pow by a constant tensor with {vals.size} distinct exponents: at most "
                                f"{POW_MAX_TABLES} (one table each)")
        ts = [_pow_table(L, f"{n.output[0]}.p{k}", x, n.input[0], float(e), with_shape(out, x.shape))
              for k, e in enumerate(vals)]
        ws = [np.broadcast_to(pv == e, shape).astype(np.int64) for e in vals]
        return [L.b.soma_mul(n.output[0], ts, ws, out.scale[0], (1.0,), out)]
    if isinstance(x, Act) and isinstance(p, Act):
        r = L.stats.range(n.input[0])
        if r is None or r[0] <= 0:
            raise FrontendError("Pow of two activations needs a positive base (exp(p * log x)); calibration saw "
                                f"base values down to {r[0] if r else 'unknown'}")
        lg = planned_table(L, n.input[0], x, np.log, n.output[0] + ".log", "log")
        (glo, ghi), (plo, phi) = _real_range(lg), _real_range(p)
        ends = [glo * plo, glo * phi, ghi * plo, ghi * phi]
        shape = tuple(np.broadcast_shapes(x.shape, p.shape))
        prod = L.b.decode_mac(n.output[0] + ".mul", p, lg, "mul",
                              range_type(min(ends), max(ends), L.opts.internal_bits, shape))
        return [L.b.asnc_lut(n.output[0], prod, "exp", (), L.out_type(n.output[0], shape), None)]
    if is_const(x) and isinstance(p, Act):
        c = np.asarray(L.const_value(x), np.float64)
        if np.any(c <= 0):
            raise FrontendError("Pow of a constant base with an activation exponent needs a positive base")
        shape = tuple(np.broadcast_shapes(c.shape, p.shape))
        (plo, phi) = _real_range(p)
        lc = np.log(c)
        ends = [float(lc.min()) * plo, float(lc.min()) * phi, float(lc.max()) * plo, float(lc.max()) * phi]
        e = L.b.affine_const(n.output[0] + ".mul", p, lc, None,
                             range_type(min(ends), max(ends), L.opts.internal_bits, shape))
        return [L.b.asnc_lut(n.output[0], e, "exp", (), L.out_type(n.output[0], shape), None)]
    raise FrontendError(f"Pow of {type(x).__name__} by {type(p).__name__} is not supported")


POW_MAX_TABLES = 8


def _pow_table(L: Lowerer, stem: str, x: Act, tensor: str, e: float, out) -> Act:  # noqa: ANN001
    """x ** e on every code, IEEE (a negative base with a fractional e has no real value: code of 0)."""
    from lasercc.semantics.quant import dequantize

    xs = np.asarray(dequantize(np.arange(1 << x.type.bits), x.scale, x.zp), np.float32)
    with np.errstate(all="ignore"):
        y = np.power(xs, np.float32(e)).astype(np.float64)
    return values_table(L, stem, x, y, out, _samples(L, tensor), extra=[("pow", (e,))])


# ---- QOperator elementwise ------------------------------------------------------------------------


@register("QLinearAdd", "QLinearMul", domain=MS)
def qlinear_binary(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, sa, za, b, sb, zb, sc = ins[:7]
    zc = ins[7] if len(ins) > 7 else None
    masks = (Masked, DynMask)
    if n.op_type == "QLinearAdd" and (isinstance(a, masks) or isinstance(b, masks)):
        # an attention mask quantized with the scores (ORT's default op list): still a mask. Its quantization
        # (scale ~1e36 for a finfo.min fill) would round every unmasked score to one code; lasercc applies the
        # mask in the Softmax instead and keeps the scores' own codes (README, "QOperator attention masks")
        A = a if isinstance(a, masks) else q_input(L, a, sa, za)
        B = b if isinstance(b, masks) else q_input(L, b, sb, zb)
        return [add_sub(L, n, A, B, 1)]
    A, B = q_input(L, a, sa, za), q_input(L, b, sb, zb)
    shape = tuple(np.broadcast_shapes(_shape_of(A), _shape_of(B)))
    out, signed = L.q_type(sc, zc, shape)
    r = add_sub(L, n, A, B, 1, out) if n.op_type == "QLinearAdd" else mul(L, n, A, B, out)
    if isinstance(r, Masked | DynMask):  # a quantized -inf mask: added to the scores, or made (x * finfo.min)
        return [r]
    assert isinstance(r, Act)
    return [Act(r.name, r.type, True, signed)]


# ---- exact integer arithmetic on integer inputs (position ids, ALiBi positions) ---------------------
#
# Exporters compute position ids inside the graph from the integer inputs: RoBERTa
# ``cumsum(ids != pad) * (ids != pad) + pad``, OPT ``cumsum(mask) * mask - 1 (+ 2)``, BLOOM's ALiBi
# ``(cumsum(mask) - 1) * mask``. These are integer tensors (``Act.int_range`` set): exact codes of scale 1
# whose type covers the *interval* of every value the arithmetic can produce -- no calibration, nothing
# saturates -- computed by Somas with integer weights (requantization scale exactly 1) and DecodeMACs.
# Integer graph inputs enter through a host Gather of ``arange(bound + 1)`` (:func:`int_of`), their bound
# taken from how the model uses them (:func:`id_bound`).


