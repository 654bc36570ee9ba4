"""Exact integer and boolean data (value class b) and the ops that produce or consume it.

Integer and bool tensors computed from the inputs (ids, masks, positions, comparisons) are carried exactly:
an integer graph input is an :class:`Ids` (raw ids, looked up on the host) until arithmetic needs it as
codes (:func:`~lasercc.frontends.onnx.common.int_of`); every computed integer tensor is an :class:`Act` with
``int_range`` -- scale-1 codes whose width comes from interval arithmetic, never calibration; a bool tensor
is such an Act with range [0, 1] and ``boolean`` set. The rules, one per (op, value class):

* comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual) -- of integer data: the exact difference
  (a Soma with integer weights) and a 0/1 step table on it; of an integer input against a scalar, a host
  lookup table; of activations: the difference of the two codes in a common fine grid (or the activation
  itself against a scalar constant) and a step table -- exact for the quantized values, so inputs closer
  than a code step may compare differently from the float model;
* Not / And / Or / Xor: one Soma with integer weights against a constant; of two bool tensors the sum and a
  0/1 table;
* Where: the ``finfo.min`` masks (Masked / DynMask) as before; otherwise a selection -- a constant condition
  is a Soma with 0/1 weights (exact when both branches share a code type), a condition from the inputs
  multiplies each branch by the 0/1 condition in a DecodeMAC (exact) and adds them;
* Trilu: a constant triangle -> a ``Mask`` node (masked codes become the zero point: pure data movement);
  ``k`` from the inputs -> the triangle computed as an exact comparison, then a selection;
* CumSum: a matmul-form Soma with a triangular ones matrix (exact on integers, requantized on activations);
* Cast / CastLike: float -> float is the identity (the code grid is the carried precision, finer than
  float16's near the grid's range: float16 rounding is not modelled); float -> int truncates toward zero
  and integer -> narrower integer wraps around (exact lookup tables on the codes, ONNX semantics);
  anything -> bool is ``!= 0``; bool / integer -> float is the same codes viewed as a float activation (a
  0/1 mask becomes a 0/1 activation usable in Mul/ReduceSum/Div);
* IsNaN / IsInf of codes: constant false (codes are finite real numbers; noted in the compile info);
* Range / ConstantOfShape with operands from the inputs: refused (the output *shape* would depend on input
  values); with constant operands they are folded by the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    MASK_THRESHOLD,
    as01,
    broadcast_to,
    const_output,
    id_bound,
    ids_as_codes,
    ids_lookup,
    int_lut,
    int_of,
    int_result,
    int_type,
    is_const,
    is_intlike,
    logical_not,
    move,
    val_shape,
)
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register
from lasercc.frontends.onnx.values import Act, Const, DynMask, Ids, IntAcc, Masked, Val, code_type, range_type
from lasercc.ir.nodes import Mask, Reshape

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

ADD_FINE_BITS = 10


def _shape(L: Lowerer, v: Val) -> tuple[int, ...]:
    if is_const(v):
        return tuple(np.shape(L.const_value(v)))
    return tuple(val_shape(v))


def _bshape(L: Lowerer, *vs: Val | None) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*(_shape(L, v) for v in vs if v is not None)))


def _bool(r: Act) -> Act:
    return Act(r.name, r.type, boolean=True, int_range=(0, 1))


def _fit(L: Lowerer, stem: str, x: Act, shape: tuple[int, ...]) -> Act:
    """``x`` broadcast to ``shape`` (data movement) when an operation's result is larger than it; a one-element
    result of a Soma (rank >= 1) viewed as the scalar it is."""
    if tuple(x.shape) == tuple(shape):
        return x
    if int(np.prod(x.shape)) == 1 and not shape:
        name = L.b.fresh(stem + ".scalar")
        t = code_type(x.type.bits, x.scale, x.zp, ())
        L.b.add(Reshape(name=name, inputs=(x.name,), type=t))
        return x.moved(name, t)
    return broadcast_to(L, stem, x, tuple(shape))


def _qints(L: Lowerer, stem: str, v: Val) -> Val:
    """A quantized tensor (the ONNX uint8/int8/... output of QuantizeLinear or a QLinear op) is integer data:
    its ONNX value is q = code - shift, not the dequantized real value. As exact integer codes (scale 1, zero
    point ``shift``: the same codes under a new type, one identity Soma); any other value unchanged."""
    if not (isinstance(v, Act) and v.quantized and not v.integer):
        return v
    shift = (1 << (v.type.bits - 1)) if v.signed else 0
    t = code_type(v.type.bits, 1.0, shift, v.shape)
    r = L.b.soma_mul(stem + ".q", [Act(v.name, t)], [np.ones(1, np.int64)], 1.0, (1.0,), t)  # same codes, new type
    return Act(r.name, t, int_range=(t.lo - shift, t.hi - shift))


def _const_is_int(c: np.ndarray) -> bool:
    c = np.asarray(c)
    return c.dtype.kind in "biu" or bool(np.all(np.isfinite(c)) and np.all(c == np.rint(c)))


# ---- identity ------------------------------------------------------------------------------------------


@register("Identity")
def identity(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Any value class passes through."""
    return [ins[0]]


@register("Dropout")
def dropout(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """The identity at inference, its mask output constant true. In training mode (``training_mode`` true, or
    computed from the inputs) with a nonzero ratio the output is random: refused."""
    mode = ins[2] if len(ins) > 2 else None
    ratio = ins[1] if len(ins) > 1 else None
    zero = ratio is not None and is_const(ratio) and float(np.asarray(L.const_value(ratio)).reshape(-1)[0]) == 0.0
    if mode is not None and not zero:  # a constant ratio of 0 drops nothing: the identity in either mode
        if not is_const(mode):
            raise FrontendError("Dropout with training_mode computed from the inputs (random in training) is not "
                                "supported")
        training = bool(np.asarray(L.const_value(mode)).reshape(-1)[0])
        r = 0.5 if ratio is None else float(np.asarray(L.const_value(ratio, "ratio")).reshape(-1)[0])
        if training and r != 0.0:
            raise FrontendError("Dropout in training mode is random; export the model for inference")
    x = ins[0]
    outs = [x]
    if len(n.output) > 1:
        outs.append(Const(np.ones(_shape(L, x), bool)))
    return outs


# ---- comparisons --------------------------------------------------------------------------------------

CMP = {"Equal": "equal_to", "Less": "less", "Greater": "greater", "LessOrEqual": "less_equal",
       "GreaterOrEqual": "greater_equal"}
MIRROR = {"equal_to": "equal_to", "less": "greater", "greater": "less", "less_equal": "greater_equal",
          "greater_equal": "less_equal"}
_NP = {"equal_to": np.equal, "less": np.less, "greater": np.greater, "less_equal": np.less_equal,
       "greater_equal": np.greater_equal}


def _difference(L: Lowerer, stem: str, a: Act, b: Act, shape: tuple[int, ...]) -> Act:
    """``a - b`` of two float activations on a grid fine enough that its sign and zero are those of the codes'
    real values (each input's step is a whole number of the grid's steps where the scales allow)."""
    lo = a.scale * (a.type.lo - a.zp) - b.scale * (b.type.hi - b.zp)
    hi = a.scale * (a.type.hi - a.zp) - b.scale * (b.type.lo - b.zp)
    bits = max(L.opts.internal_bits, a.type.bits, b.type.bits)
    if a.scale == b.scale:  # same grid: the difference is an exact integer number of steps
        m = max(abs(lo), abs(hi)) / a.scale
        if m < (1 << (bits - 1)) - 1:
            t = code_type(bits, a.scale, 1 << (bits - 1), shape)
            return L.b.soma_mul(stem, [a, b], [np.ones(1, np.int64), -np.ones(1, np.int64)], a.scale, (1.0,), t)
    return L.b.add_acts(stem, a, b, -1, range_type(lo, hi, bits, shape, symmetric=True))


@register(*CMP)
def compare(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, b = (_qints(L, f"{n.output[0]}.in{i}", v) for i, v in enumerate(ins))
    fn = CMP[n.op_type]
    if is_const(a) and not is_const(b):
        a, b, fn = b, a, MIRROR[fn]
    for v in (a, b):
        if isinstance(v, Masked | DynMask | IntAcc):
            raise FrontendError(f"{n.op_type} of a {type(v).__name__} value (a -inf mask or a pending integer "
                                "product) is not supported")
    shape = _bshape(L, a, b)
    stem = n.output[0]
    sh1 = shape or (1,)  # Soma results have rank >= 1; _fit views a one-element result as the scalar
    if is_const(b):
        c = np.asarray(L.const_value(b))
        if c.dtype == bool:
            c = c.astype(np.int64)
        if isinstance(a, Ids) and c.size == 1:  # integer input vs scalar: a host lookup table of the answer
            table = _NP[fn](np.arange(id_bound(L, a) + 1), c.reshape(-1)[0]).astype(np.int64)
            return [_bool(_fit(L, stem, ids_lookup(L, stem, a, table, 2), shape))]
        x = int_of(L, stem + ".in", a) if is_intlike(a) else a
        if not isinstance(x, Act):
            raise FrontendError(f"{n.op_type} of {type(a).__name__}")
        if c.size == 1:
            return [_fit(L, stem, int_lut(L, stem, x, fn, (float(c.reshape(-1)[0]),), boolean=True), shape)]
        if x.integer:
            if not _const_is_int(c):  # integers against fractional constants: compare with the exact value
                raise FrontendError(f"{n.op_type} of integer data with a non-integer constant tensor")
            lo, hi = x.int_range  # type: ignore[misc]
            ci = c.astype(np.int64)
            d = int_result(L, stem + ".diff", [x], [np.ones(1)], -ci, lo - int(ci.max()), hi - int(ci.min()), sh1)
        else:
            lo, hi = x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)
            cf = c.astype(np.float64)
            t = range_type(lo - cf.max(), hi - cf.min(), max(L.opts.internal_bits, x.type.bits), sh1, True)
            d = L.b.affine_const(stem + ".diff", x, None, -cf, t)
        return [_fit(L, stem, int_lut(L, stem, d, fn, (0.0,), boolean=True), shape)]
    if is_intlike(a) and is_intlike(b):
        x, y = int_of(L, stem + ".a", a), int_of(L, stem + ".b", b)
        (lo, hi), (ylo, yhi) = x.int_range, y.int_range  # type: ignore[misc]
        d = int_result(L, stem + ".diff", [x, y], [np.ones(1), -np.ones(1)], 0, lo - yhi, hi - ylo, sh1)
    elif isinstance(a, Act) and isinstance(b, Act):
        d = _difference(L, stem + ".diff", a, b, sh1)
    else:
        raise FrontendError(f"{n.op_type} of {type(a).__name__} and {type(b).__name__} is not supported")
    return [_fit(L, stem, int_lut(L, stem, d, fn, (0.0,), boolean=True), shape)]


# ---- logic --------------------------------------------------------------------------------------------


def _bool01(L: Lowerer, stem: str, v: Val) -> Act:
    """A bool operand (bool activation, integer data, or a float activation: true where nonzero) as 0/1 codes."""
    if isinstance(v, Act) and not v.integer and not v.boolean:
        return _bool(L.b.asnc_lut(stem, v, "nonzero", (), code_type(2, 1.0, 0, v.shape), None))
    if is_intlike(v):
        x = int_of(L, stem, v)
        if x.int_range is not None and 0 <= x.int_range[0] and x.int_range[1] <= 1:
            return _bool(x)
        return as01(L, stem, x)
    raise FrontendError(f"a bool operand that is {type(v).__name__} is not supported")


@register("Not")
def not_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Logical not of a bool tensor: ``1 - x`` on exact 0/1 codes (one Soma, weight -1, bias 1)."""
    x = _bool01(L, n.output[0] + ".01", ins[0])
    return [int_result(L, n.output[0], [x], [-np.ones(1)], 1, 0, 1, x.shape, boolean=True)]


@register("And", "Or", "Xor")
def logic(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """And / Or / Xor of bool tensors, exact on 0/1 codes.

    Against a constant ``c`` (transformers' ``And(causal, padding)``: the constant part folds), one Soma with
    integer weights: And = ``x*c``, Or = ``x*(1-c) + c``, Xor = ``x*(1-2c) + c``. Of two bool tensors, their
    sum (0..2) and a table: And = ``s == 2``, Or = ``s >= 1``, Xor = ``s == 1``.
    """
    a, b = ins
    if is_const(a):
        a, b = b, a
    stem = n.output[0]
    shape = _bshape(L, a, b)
    x = _bool01(L, stem + ".a", a)
    if is_const(b):
        c = np.asarray(L.const_value(b)).astype(bool).astype(np.int64)
        if n.op_type == "And":
            if np.all(c) and shape == x.shape:
                return [x]
            w, bias = c, np.zeros((), np.int64)
        elif n.op_type == "Or":
            w, bias = 1 - c, c
        else:
            w, bias = 1 - 2 * c, c
        return [int_result(L, stem, [x], [w], bias, 0, 1, shape, boolean=True)]
    y = _bool01(L, stem + ".b", b)
    s = int_result(L, stem + ".sum", [x, y], [np.ones(1), np.ones(1)], 0, 0, 2, shape)
    fn, c = {"And": ("equal_to", 2.0), "Or": ("greater_equal", 1.0), "Xor": ("equal_to", 1.0)}[n.op_type]
    return [int_lut(L, stem, s, fn, (c,), boolean=True)]


# ---- Where --------------------------------------------------------------------------------------------


def _real_range(x: Act) -> tuple[float, float]:
    return x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)


def _select(L: Lowerer, n: onnx.NodeProto, cond: Val, a: Val, b: Val) -> Act:
    """``where(cond, a, b)`` for any classes of condition and branches (constant branches fold into a bias).

    The result is a sum of terms: a constant condition weights each branch by its 0/1 mask (``c``, ``1-c``); a
    condition from the inputs multiplies an activation branch by the condition (or its negation) in a
    DecodeMAC -- exact, the product is the branch's own codes or its zero -- and a constant branch ``v``
    becomes ``cond * (v_a - v_b) + v_b``. Integer/bool branches give an exact integer result; float branches
    are summed on a grid fine enough for every term (exact when they share one code type).
    """
    stem = n.output[0]
    shape = _bshape(L, cond, a, b)
    if not shape:  # scalars: select on one-element vectors (Somas and DecodeMACs are rank >= 1), then view
        one = [Const(np.reshape(L.const_value(v), (1,))) if is_const(v) else move(L, n, v, (1,)) for v in (cond, a, b)]
        return _fit(L, stem, _select(L, n, *one), ())
    integer = all(is_intlike(v) or (is_const(v) and np.asarray(L.const_value(v)).dtype.kind in "biu")
                  for v in (a, b))
    if integer:
        a = int_of(L, stem + ".a", a) if is_intlike(a) else a
        b = int_of(L, stem + ".b", b) if is_intlike(b) else b
    for v in (a, b):
        if not (is_const(v) or isinstance(v, Act)):
            raise FrontendError(f"Where branch of {type(v).__name__} is not supported")
    if is_const(cond):
        c = np.asarray(L.const_value(cond)).astype(bool)
        terms: list[tuple[Act, np.ndarray]] = []
        bias = np.zeros((), np.float64)
        for v, m in ((a, c), (b, ~c)):
            if is_const(v):
                bias = bias + np.where(m, np.asarray(L.const_value(v), np.float64), 0.0)
            else:
                terms.append((v, m.astype(np.float64)))  # type: ignore[arg-type]
    else:
        k = _bool01(L, stem + ".cond", cond)
        terms, bias = [], np.zeros((), np.float64)
        consts = {i: np.asarray(L.const_value(v), np.float64) for i, v in enumerate((a, b)) if is_const(v)}
        for i, v in enumerate((a, b)):
            if isinstance(v, Act):
                sel = k if i == 0 else int_result(L, stem + ".not", [k], [-np.ones(1)], 1, 0, 1, k.shape, boolean=True)
                sshape = tuple(np.broadcast_shapes(sel.shape, v.shape))
                lo, hi = v.int_range if v.integer else (None, None)  # type: ignore[misc]
                t = int_type(min(lo, 0), max(hi, 0), sshape) if v.integer else code_type(v.type.bits, v.scale, v.zp,
                                                                                          sshape)
                p = L.b.decode_mac(stem + f".sel{i}", sel, v, "mul", t)  # exact: the branch's codes or its zero
                p = Act(p.name, p.type, int_range=(min(lo, 0), max(hi, 0)) if v.integer else None)
                terms.append((p, np.ones(1)))
        if 0 in consts and 1 in consts:
            terms.append((k, consts[0] - consts[1]))
            bias = consts[1]
        elif 0 in consts:
            terms.append((k, consts[0]))
        elif 1 in consts:
            terms.append((k, -consts[1]))
            bias = consts[1]
    acts = [x for x, _ in terms]
    if not terms:
        raise FrontendError("Where of constants only")  # folded by the driver; never reached
    if integer:
        los, his = [], []
        for v in (a, b):
            if is_const(v):
                cv = np.asarray(L.const_value(v)).astype(np.int64)
                if cv.size:
                    los.append(int(cv.min()))
                    his.append(int(cv.max()))
            else:
                los.append(v.int_range[0])  # type: ignore[union-attr,index]
                his.append(v.int_range[1])  # type: ignore[union-attr,index]
        boolean = all((isinstance(v, Act) and v.boolean) or (is_const(v) and np.asarray(L.const_value(v)).dtype == bool)
                      for v in (a, b))
        ws = [np.rint(w).astype(np.int64) for _, w in terms]
        return int_result(L, stem, acts, ws, np.rint(bias).astype(np.int64), min(los), max(his), shape, boolean)
    # float branches
    act_br = [v for v in (a, b) if isinstance(v, Act)]
    cvals = [np.asarray(L.const_value(v), np.float64) for v in (a, b) if is_const(v)]
    same = all(x.type.same_quant(act_br[0].type) for x in act_br)
    if act_br and same and all(_real_range(act_br[0])[0] <= v.min() and v.max() <= _real_range(act_br[0])[1]
                               for v in cvals if v.size):
        out = code_type(act_br[0].type.bits, act_br[0].scale, act_br[0].zp, shape)
        sc = act_br[0].scale
    else:
        lo = min([_real_range(x)[0] for x in act_br] + [float(v.min()) for v in cvals if v.size])
        hi = max([_real_range(x)[1] for x in act_br] + [float(v.max()) for v in cvals if v.size])
        bits = max([L.opts.act_bits] + [x.type.bits for x in act_br])
        out = range_type(lo, hi, bits, shape)
        scales = sorted({x.scale for x in act_br})
        # one branch scale: its grid (weight 1, exact); two: a common fine grid (as emit.add_acts); none: the
        # output's grid refined (a condition-weighted constant)
        sc = scales[0] if len(scales) == 1 else (scales[0] / (1 << ADD_FINE_BITS) if scales
                                                  else out.scale[0] / (1 << ADD_FINE_BITS))
    # weights in units of sc: an input of scale s with real weight w contributes w * s / sc per code; the
    # accumulator must stay well inside the Soma's limit (2^46)
    big = max([float(np.abs(w).max()) * x.scale * x.type.hi for x, w in terms] + [float(np.abs(bias).max())])
    sc = float(np.float32(max(sc, big / (1 << 40))))
    ws = [np.rint(np.asarray(w, np.float64) * x.scale / sc).astype(np.int64) for x, w in terms]
    if tuple(np.broadcast_shapes(*(x.shape for x in acts), *(w.shape for w in ws))) != tuple(shape):
        ws[0] = np.broadcast_to(ws[0], np.broadcast_shapes(ws[0].shape, shape)).copy()  # the bias sets the shape
    bunits = np.rint(np.asarray(bias, np.float64) / sc).astype(np.int64)
    return L.b.soma_mul(stem, acts, ws, sc, (1.0,), out, bunits)


@register("Where")
def where(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``Where(cond, a, b)``. Attention masks first: a -inf fill (constants <= -1e4, ``finfo.min``) is never
    data -- with a constant condition the result is a :class:`Masked` activation, with a bool condition from
    the inputs a :class:`DynMask` (constant branches) or a Masked with an input-dependent mask; Softmax applies
    them. Every other combination is a selection (:func:`_select`)."""
    cond, a, b = (_qints(L, f"{n.output[0]}.in{i}", v) for i, v in enumerate(ins))
    for v in (cond, a, b):
        if isinstance(v, Masked | DynMask | IntAcc):
            raise FrontendError(f"Where of a {type(v).__name__} value is not supported")

    def is_fill(v: Val) -> bool:
        return is_const(v) and bool(np.all(np.asarray(L.const_value(v), np.float64) <= MASK_THRESHOLD))

    def is_zero(v: Val) -> bool:
        return is_const(v) and not np.any(np.asarray(L.const_value(v)))

    if is_const(cond):
        c = np.asarray(L.const_value(cond)).astype(bool)
        for x, fill, drop in ((a, b, ~c), (b, a, c)):
            if isinstance(x, Act) and not x.integer and is_fill(fill):
                shape = x.shape
                if tuple(np.broadcast_shapes(shape, drop.shape)) != shape:
                    raise FrontendError("a Where mask (fill <= -1e4) may not broadcast the activation")
                return [Masked(x, np.broadcast_to(drop, shape))]
    elif isinstance(cond, Act | type(None)) or is_intlike(cond):
        if is_zero(a) and is_fill(b):  # where(keep, 0, -inf)
            keep = _bool01(L, n.output[0] + ".keep", cond)
            return [DynMask(logical_not(L, n.output[0] + ".drop", keep), float(np.asarray(L.const_value(b)).min()))]
        if is_zero(b) and is_fill(a):  # where(drop, -inf, 0)
            drop = _bool01(L, n.output[0] + ".drop", cond)
            return [DynMask(drop, float(np.asarray(L.const_value(a)).min()))]
        for x, fill, first in ((a, b, True), (b, a, False)):
            if isinstance(x, Act) and not x.integer and is_fill(fill):
                m = _bool01(L, n.output[0] + ".m", cond)
                drop = logical_not(L, n.output[0] + ".drop", m) if first else m
                if tuple(np.broadcast_shapes(x.shape, drop.shape)) != x.shape:
                    raise FrontendError("a Where mask (fill <= -1e4) may not broadcast the activation")
                return [Masked(x, drop)]
        for x, fill, first in ((a, b, True), (b, a, False)):
            if is_const(x) and not is_fill(x) and is_fill(fill):  # where(keep, bias, -inf): T5's position bias
                m = _bool01(L, n.output[0] + ".m", cond)
                drop = logical_not(L, n.output[0] + ".drop", m) if first else m
                xv = np.asarray(L.const_value(x), np.float32)
                shape = tuple(np.broadcast_shapes(xv.shape, drop.shape))
                xa = const_output(L, n.output[0] + ".bias", np.broadcast_to(xv, shape).copy())
                if drop.shape != shape:
                    drop = broadcast_to(L, n.output[0] + ".dropb", drop, shape)
                return [Masked(xa, drop)]
    if is_fill(a) or is_fill(b):
        raise FrontendError("Where with a -inf fill (<= -1e4) must select it against an activation or 0 (a mask)")
    return [_select(L, n, cond, a, b)]


# ---- Trilu ----------------------------------------------------------------------------------------------


@register("Trilu")
def trilu(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Upper/lower triangle of the last two axes (``k`` diagonals off), any batch axes.

    With a constant ``k`` the kept triangle is a constant: a ``Mask`` node sets the other codes to the zero
    point (data movement, exact for every value class). With ``k`` from the inputs the triangle is an exact
    comparison ``j - i >= k`` (upper) / ``j - i <= k`` (lower) on integer codes, then a selection."""
    if isinstance(ins[0], Const) and ins[0].value.size == 0:
        return [ins[0]]  # an empty input (no values to keep or zero), whatever k is: itself
    x = _qints(L, n.output[0] + ".in", ins[0])
    if isinstance(x, Ids):
        x = int_of(L, n.output[0] + ".in", x)
    if not isinstance(x, Act):
        raise FrontendError(f"Trilu of {type(x).__name__} is not supported")
    if len(x.shape) < 2:
        raise FrontendError("Trilu needs a tensor of rank >= 2")
    rows, cols = x.shape[-2:]
    upper = bool(attr(n, "upper", 1))
    k = ins[1] if len(ins) > 1 else None
    if k is None or is_const(k):
        kv = 0 if k is None else int(np.asarray(L.const_value(k)).reshape(-1)[0])
        ones = np.ones((rows, cols), bool)
        keep = np.triu(ones, kv) if upper else np.tril(ones, kv)
        if keep.all():
            return [x]
        name = L.b.fresh(n.output[0])
        L.b.add(Mask(name=name, inputs=(x.name,), type=x.type, mask=L.b.const(name + ".mask", ~keep), fill=x.zp))
        r = x.moved(name, x.type)
        if x.integer:
            lo, hi = x.int_range  # type: ignore[misc]
            r = Act(name, x.type, boolean=x.boolean, int_range=(min(lo, 0), max(hi, 0)))
        return [r]
    kk = int_of(L, n.output[0] + ".k", k)
    klo, khi = kk.int_range  # type: ignore[misc]
    kk = move(L, n, kk, (1, 1))  # type: ignore[assignment]
    d_ji = (np.arange(cols)[None, :] - np.arange(rows)[:, None]).astype(np.int64)
    d = int_result(L, n.output[0] + ".diag", [kk], [-np.ones(1)], d_ji, int(d_ji.min()) - khi,  # type: ignore[list-item]
                   int(d_ji.max()) - klo, (rows, cols))
    keep = int_lut(L, n.output[0] + ".keep", d, "greater_equal" if upper else "less_equal", (0.0,), boolean=True)
    zero = Const(np.zeros((), np.int64 if x.integer else np.float32))
    return [_select(L, n, keep, x, zero)]


# ---- CumSum ---------------------------------------------------------------------------------------------


def _cumsum_along(L: Lowerer, n: onnx.NodeProto, x: Act, ax: int, stem: str) -> Act:
    k = x.shape[ax]
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")  # w[i, j]: does x_i count in out_j
    keep = (i > j if attr(n, "exclusive", 0) else i >= j) if attr(n, "reverse", 0) \
        else (i < j if attr(n, "exclusive", 0) else i <= j)
    last = len(x.shape) - 1
    perm = tuple(p for p in range(len(x.shape)) if p != ax) + (ax,)
    xt = x if ax == last else move(L, n, x, tuple(x.shape[p] for p in perm), perm)
    assert isinstance(xt, Act)
    st = stem + (".t" if ax != last else "")
    if x.integer:
        lo, hi = x.int_range  # type: ignore[misc]
        lo, hi = min(0, k * lo), max(0, k * hi)
        r = L.b.soma_matmul(st, xt, keep.astype(np.int64), (1.0,), int_type(lo, hi, xt.shape))
        out = Act(r.name, r.type, int_range=(lo, hi))
    else:
        t = L.out_type(n.output[0], xt.shape)
        out = L.b.soma_matmul(st, xt, keep.astype(np.int64), (1.0,), t)
    if ax != last:
        inv = tuple(int(q) for q in np.argsort(perm))
        out = move(L, n, out, x.shape, inv)  # type: ignore[assignment]
    return out


@register("CumSum")
def cumsum(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Cumulative sum along an axis: a matmul-form Soma with a constant triangular ones matrix (``exclusive``
    drops the diagonal, ``reverse`` transposes it). Integer data: exact, the result's type covers
    ``[min(0, n*lo), max(0, n*hi)]`` for ``n`` = the axis length, so nothing saturates. Activations: the same
    Soma requantized into the result's calibrated type.

    An axis computed from the inputs: of a rank-1 tensor it can only be 0 (or -1); otherwise the sum along
    every axis is computed and the one the axis names is selected by exact 0/1 conditions ``axis == a`` (or
    ``a - rank``) -- each a DecodeMAC that keeps its candidate's codes or zeroes them, summed exactly."""
    x = _qints(L, n.output[0] + ".in", ins[0])
    if is_intlike(x):
        x = int_of(L, n.output[0] + ".in", x)
    if not isinstance(x, Act):
        raise FrontendError(f"CumSum of {type(x).__name__} is not supported")
    if not x.shape:
        raise FrontendError("CumSum of a scalar")
    rank = len(x.shape)
    if is_const(ins[1]) or rank == 1:
        ax = int(np.asarray(L.const_value(ins[1], "axis")).reshape(-1)[0]) % rank if rank > 1 else 0
        return [_cumsum_along(L, n, x, ax, n.output[0])]
    if not is_intlike(ins[1]):
        raise FrontendError(f"CumSum's axis is {type(ins[1]).__name__}, not integer data")
    axis = int_of(L, n.output[0] + ".axis", ins[1])
    if axis.shape not in ((), (1,)):
        raise FrontendError("CumSum's axis must be a scalar")
    cands = [_cumsum_along(L, n, x, a, f"{n.output[0]}.ax{a}") for a in range(rank)]
    t = cands[0].type
    terms = []
    for a, c in enumerate(cands):
        sel = [int_lut(L, f"{n.output[0]}.is{a}{s}", axis, "equal_to", (float(v),), boolean=True)
               for s, v in (("", a), ("n", a - rank))]
        cond = int_result(L, f"{n.output[0]}.is{a}", sel, [np.ones(1), np.ones(1)], 0, 0, 1, axis.shape or (1,),
                          boolean=True)
        terms.append(L.b.decode_mac(f"{n.output[0]}.sel{a}", cond, c, "mul", t))  # exact: c's codes or its zero
    r = L.b.soma_mul(n.output[0], terms, [np.ones(1, np.int64)] * rank, t.scale[0], (1.0,), t)  # scale 1: exact
    return [Act(r.name, r.type, int_range=cands[0].int_range)]


# ---- shapes from values: refused ------------------------------------------------------------------------


@register("Range")
def range_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    raise FrontendError("Range with start/limit/delta computed from the inputs: its output *length* would depend "
                        "on input values (static shapes only); make them constants")


@register("ConstantOfShape")
def constant_of_shape(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    raise FrontendError("ConstantOfShape of a shape computed from input values: the output shape would depend on "
                        "input values (static shapes only); use Shape of a tensor or a constant")


# ---- IsNaN / IsInf ----------------------------------------------------------------------------------------


@register("IsNaN", "IsInf")
def is_nan_inf(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Codes are finite real numbers: a constant all-false tensor (recorded in the compile info's notes)."""
    x = ins[0]
    if isinstance(x, Masked | DynMask):
        raise FrontendError(f"{n.op_type} of a -inf mask (it is infinite where masked) is not supported")
    L.notes.append(f"{n.op_type} {n.name or n.output[0]!r}: codes are finite, folded to constant false")
    return [Const(np.zeros(_shape(L, x), bool))]


# ---- Cast / CastLike --------------------------------------------------------------------------------------

_SMALL = {np.dtype(t): (np.dtype(t).itemsize * 8, np.dtype(t).kind == "i")
          for t in (np.int8, np.uint8, np.int16, np.uint16)}


def _wrap(L: Lowerer, stem: str, x: Act, dt: np.dtype) -> Act:
    """Integer codes cast to integer dtype ``dt``: unchanged when the range fits, else wrapped (ONNX Cast)."""
    lo, hi = x.int_range  # type: ignore[misc]
    if dt in _SMALL:
        bits, signed = _SMALL[dt]
        tlo, thi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if lo < tlo or hi > thi:
            return int_lut(L, stem, x, "wrap_int", (float(bits), float(signed)))
    elif dt.kind == "u" and lo < 0:
        raise FrontendError(f"Cast of integer data that may be negative (down to {lo}) to {dt}: the wrapped value "
                            "needs more than 24 bits")
    return x


def _cast_to(L: Lowerer, n: onnx.NodeProto) -> np.dtype:
    """The target dtype; bfloat16 (no NumPy dtype: ml_dtypes' is opaque) counts as a float like float16."""
    if n.op_type == "Cast":
        to = attr(n, "to")
        return np.dtype(np.float32) if to == onnx.TensorProto.BFLOAT16 else \
            np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to))
    v = L.env.get(n.input[1])
    if is_const(v):
        dt = np.asarray(L.const_value(v)).dtype
    else:
        from lasercc.frontends.onnx.load import tensor_dtypes

        types = L.__dict__.setdefault("_dtypes", tensor_dtypes(L.model))
        if n.input[1] not in types:
            raise FrontendError(f"CastLike: the element type of {n.input[1]!r} is unknown")
        dt = types[n.input[1]]
    return np.dtype(np.float32) if dt.name == "bfloat16" else dt


@register("Cast", "CastLike")
def cast(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    dt = _cast_to(L, n)
    stem = n.output[0]
    if dt.kind not in "fiub":
        raise FrontendError(f"Cast to {dt} is not supported (codes are real numbers)")
    if isinstance(x, IntAcc):
        return [IntAcc(x.act, x.weights, True, x.layout, x.source)]
    if isinstance(x, Masked | DynMask):
        if dt.kind == "f":
            return [x]
        raise FrontendError(f"Cast of a -inf mask to {dt} is not supported")
    if isinstance(x, Ids):
        if dt.kind == "f":
            # integers used as numbers: attention masks (0/1) and position ids (RoPE angles = pos * inv_freq);
            # the code width covers the largest value calibration saw (at least 2 bits)
            r = L.stats.range(n.output[0])
            a = ids_as_codes(L, stem, x, int(np.ceil(r[1])) if r else 3)
            return [Act(a.name, a.type)]
        if dt.kind == "b":
            table = (np.arange(id_bound(L, x) + 1) != 0).astype(np.int64)
            return [_bool(ids_lookup(L, stem, x, table, 2))]
        if dt in _SMALL:
            return [_wrap(L, stem, int_of(L, stem + ".in", x), dt)]
        return [x]  # ids stay ids in any integer type that holds them
    if not isinstance(x, Act):
        raise FrontendError(f"Cast of {type(x).__name__} to {dt} is not supported")
    x = _qints(L, stem, x)  # type: ignore[assignment]
    if x.boolean and not (x.int_range is not None and x.int_range[0] >= 0 and x.int_range[1] <= 1):
        x = as01(L, stem + ".01", x)  # a bool is true where nonzero: exact 0/1 before it is used as a number
    if dt.kind == "b":
        return [x if x.boolean else _bool01(L, stem, x)]
    if dt.kind == "f":
        return [Act(x.name, x.type)]  # same codes, a float view
    if x.integer:
        r = _wrap(L, stem, x, dt)
        return [r if r is not x else Act(x.name, x.type, int_range=x.int_range)]
    # float activation -> integer: truncation toward zero (and wrap-around for narrow types), one table
    if dt in _SMALL:
        bits, signed = _SMALL[dt]
        return [int_lut(L, stem, x, "wrap_int", (float(bits), float(signed)))]
    return [int_lut(L, stem, x, "trunc")]


# ---- Expand ----------------------------------------------------------------------------------------------


