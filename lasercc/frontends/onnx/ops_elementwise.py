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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    MASK_THRESHOLD,
    int_binary,
    is_const,
    is_int,
    model_type,
    q_input,
)
from lasercc.frontends.onnx.cores import mul_dynamic
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynMask,
    Masked,
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


def add_sub(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val, sign: int, out=None) -> Val:  # noqa: ANN001
    if is_int(a) or is_int(b):  # integer tensors (position ids): exact, never calibrated
        return int_binary(L, n, a, b, "add" if sign > 0 else "sub")
    if isinstance(a, DynMask) and isinstance(b, Act) and sign > 0:
        a, b = b, a
    if isinstance(a, Act) and isinstance(b, DynMask) and sign * b.factor < 0:
        return Masked(a, b.src)
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
        return L.b.affine_const(n.output[0], a, None, c, _out(L, n, shape, out))
    if is_const(a) and isinstance(b, Act):  # c - x
        c = L.const_value(a)
        shape = tuple(np.broadcast_shapes(b.shape, np.shape(c)))
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
        silu = _silu_source(L, n)
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        if silu is not None:
            return L.b.asnc_lut(n.output[0], silu, "silu", (), _out(L, n, shape, out), _samples(L, _silu_in(L, n)))
        return L.b.decode_mac(n.output[0], a, b, "mul", _out(L, n, shape, out))
    raise FrontendError(f"Mul of {type(a).__name__} and {type(b).__name__} is not supported")


def _masked_scaled_type(L: Lowerer, n: onnx.NodeProto, x: Act, c: np.ndarray, shape):  # noqa: ANN001, ANN202
    """Scaling masked scores: the calibration range includes -inf entries, so derive the type from x."""
    cmax = float(np.max(c))
    lo, hi = x.scale * (0 - x.zp) * cmax, x.scale * (x.type.hi - x.zp) * cmax
    return range_type(lo, hi, x.type.bits, shape)


def _silu_in(L: Lowerer, n: onnx.NodeProto) -> str:
    return next(i for i in n.input if L.sources.get(i, ("", None))[0] != "Sigmoid")


def _silu_source(L: Lowerer, n: onnx.NodeProto) -> Act | None:
    """x * Sigmoid(x) (the sigmoid read by nothing else) -> one SiLU table on x."""
    for i, j in ((0, 1), (1, 0)):
        op, src = L.sources.get(n.input[j], ("", None))
        if op == "Sigmoid" and src is not None and src.input[0] == n.input[i] \
                and len(L.consumers.get(n.input[j], [])) == 1:
            v = L.env.get(n.input[i])
            return v if isinstance(v, Act) else None
    return None


@register("Mul")
def mul_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    return [mul(L, n, ins[0], ins[1])]


@register("Div")
def div(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, b = ins
    if is_const(b):
        return [mul(L, n, a, Const(1.0 / L.const_value(b).astype(np.float64)))]
    if isinstance(a, Act) and isinstance(b, Act):
        r = reciprocal_of(L, n.input[1], b, n.output[0] + ".recip")
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        return [L.b.decode_mac(n.output[0], a, r, "mul", L.out_type(n.output[0], shape))]
    if is_const(a) and isinstance(b, Act):
        c = L.const_value(a)
        r = reciprocal_of(L, n.input[1], b, n.output[0] + ".recip")
        shape = tuple(np.broadcast_shapes(b.shape, np.shape(c)))
        return [L.b.affine_const(n.output[0], r, c, None, L.out_type(n.output[0], shape))]
    raise FrontendError("unsupported Div operands")


def reciprocal_of(L: Lowerer, tensor: str, b: Act, stem: str) -> Act:
    """1/b as an ASNC table; 1/Sqrt(v) becomes one rsqrt(v) table (the Sqrt node is then dead)."""
    op, src = L.sources.get(tensor, ("", None))
    v = L.env.get(src.input[0]) if op == "Sqrt" and src is not None else None
    if isinstance(v, Act):
        samples = _samples(L, src.input[0])
        lo = _positive_floor(L, src.input[0], v)
        out = range_type(0.0, 1.0 / np.sqrt(lo), L.opts.internal_bits, v.shape)
        return L.b.asnc_lut(stem, v, "rsqrt", (0.0,), out, samples)
    lo = _positive_floor(L, tensor, b)
    out = range_type(0.0, 1.0 / lo, L.opts.internal_bits, b.shape)
    return L.b.asnc_lut(stem, b, "reciprocal", (0.0,), out, _samples(L, tensor))


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
@register(*UNARY, "Gelu", "LeakyRelu", "HardSigmoid", "Clip")
def unary(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} of a non-activation")
    fn, params = unary_params(n, L, ins)
    if n.op_type == "Neg":
        return [negate(L, n.output[0], x)]
    return [L.b.asnc_lut(n.output[0], x, fn, params, L.out_type(n.output[0], x.shape), _samples(L, n.input[0]))]


@register("Pow")
def pow_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, p = ins
    if not isinstance(x, Act) or not is_const(p):
        raise FrontendError("Pow needs an activation base and a constant exponent")
    e = float(np.asarray(L.const_value(p)).reshape(-1)[0])
    out = L.out_type(n.output[0], x.shape)
    if e == 2.0:
        return [L.b.decode_mac(n.output[0], x, x, "mul", out)]
    if e == 1.0:
        return [L.b.requant_to(n.output[0], x, out)]
    return [L.b.asnc_lut(n.output[0], x, "pow", (e,), out, _samples(L, n.input[0]))]


# ---- QOperator elementwise ------------------------------------------------------------------------


@register("QLinearAdd", "QLinearMul", domain=MS)
def qlinear_binary(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, sa, za, b, sb, zb, sc = ins[:7]
    zc = ins[7] if len(ins) > 7 else None
    A, B = q_input(L, a, sa, za), q_input(L, b, sb, zb)
    shape = tuple(np.broadcast_shapes(_shape_of(A), _shape_of(B)))
    out, signed = L.q_type(sc, zc, shape)
    r = add_sub(L, n, A, B, 1, out) if n.op_type == "QLinearAdd" else mul(L, n, A, B, out)
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


