"""What every handler module shares: value-class helpers, data movement, exact integer codes, table lookups.

The three value classes (see :mod:`values`): (a) compile-time constants (:class:`Const`, :class:`QWeight`),
(b) exact integer/bool data derived from inputs (:class:`Ids`, and :class:`Act` with ``int_range``: scale-1
codes whose width comes from interval arithmetic, never from calibration), (c) activations carried as codes
(:class:`Act`). Helpers here move values of any class (``move``, ``take``, ``broadcast_to``), bring integer
data into codes (``int_of``, ``ids_as_codes``, ``int_type``) and look rows up in constant tables
(``gather``, ``gather_by_codes``). Handler modules import this module, never each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr
from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynMask,
    Ids,
    Masked,
    QWeight,
    Val,
    code_type,
    onnx_int_bits,
    range_type,
)
from lasercc.frontends.onnx.weights import quantize_rows, table_range
from lasercc.ir.nodes import Concat, Gather, Reshape, Take, Transpose
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lowering_api import LowererAPI as Lowerer


def move(L: Lowerer, n: onnx.NodeProto, x: Val, shape: tuple[int, ...], perm: tuple[int, ...] | None = None) -> Val:
    if isinstance(x, DynMask):  # a mask computed from an input moves with its source
        src = move(L, n, x.src, shape, perm)
        assert isinstance(src, Act)
        return DynMask(src, x.factor)
    if isinstance(x, Masked):
        inner = move(L, n, x.act, shape, perm)
        assert isinstance(inner, Act)
        if isinstance(x.mask, Act):  # an input-dependent mask moves with the scores, at their shape
            dm = move(L, n, full_mask(L, n.output[0], x), shape, perm)
            assert isinstance(dm, Act)
            return Masked(inner, dm)
        full = np.broadcast_to(x.mask, x.act.shape)
        m = np.transpose(full, perm) if perm else np.reshape(full, shape)
        return Masked(inner, m)
    if isinstance(x, Ids) and perm is None:
        return Ids(x.name, tuple(shape), x.base if x.base is not None else x.shape)
    if isinstance(x, Ids):  # a transpose of integer input data: as exact integer codes (value class b)
        x = int_of(L, n.output[0] + ".ids", x)
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} of {type(x).__name__}")
    if perm is None and tuple(shape) == x.shape:
        return x
    name = L.b.fresh(n.output[0])
    t = code_type(x.type.bits, x.scale, x.zp, shape)
    if perm is None:
        L.b.add(Reshape(name=name, inputs=(x.name,), type=t))
    else:
        L.b.add(Transpose(name=name, inputs=(x.name,), type=t, perm=tuple(perm)))
    return x.moved(name, t)


def val_shape(x: Val) -> tuple[int, ...]:
    if isinstance(x, DynMask):
        return x.src.shape
    return x.act.shape if isinstance(x, Masked) else x.shape  # type: ignore[union-attr]


def ids_as_codes(L: Lowerer, stem: str, x: Ids, hi: int = 3) -> Act:
    """Small integer inputs used as numbers (attention masks, position ids): a Gather of the code table
    [0, 1, ..., 2^b - 1] (b-bit codes, scale 1, the fewest bits >= 2 that hold ``hi``), reshaped to the
    viewed shape. Values above the table are an input error at run time."""
    bits = max(2, int(hi).bit_length())
    if bits > 16:
        raise FrontendError(f"integer input {x.name!r} used as a number reaches {hi}: more than 16 bits")
    return ids_lookup(L, stem, x, np.arange(1 << bits, dtype=np.int64), bits)


def ids_lookup(L: Lowerer, stem: str, x: Ids, table: np.ndarray, bits: int) -> Act:
    """``table[ids]`` for a 1-D table of ``bits``-bit codes (scale 1, zero point 0): a host Gather of the
    ids, reshaped to the viewed shape. Ids at or beyond the table's length are a run-time input error."""
    base = x.base if x.base is not None else x.shape
    name = L.b.fresh(stem)
    t = code_type(bits, 1.0, 0, base)
    L.b.add(Gather(name=name, inputs=(x.name,), type=t, table=L.b.const(name + ".table", np.asarray(table))))
    if tuple(base) == tuple(x.shape):
        return Act(name, t)
    r = L.b.fresh(stem + ".view")
    tr = code_type(bits, 1.0, 0, x.shape)
    L.b.add(Reshape(name=r, inputs=(name,), type=tr))
    return Act(r, tr)


def take(L: Lowerer, stem: str, x: Act, axis: int, idx: np.ndarray) -> Act:
    shape = list(x.shape)
    shape[axis] = idx.size
    name = L.b.fresh(stem)
    t = code_type(x.type.bits, x.scale, x.zp, tuple(shape))
    L.b.add(Take(name=name, inputs=(x.name,), type=t, axis=axis, indices=tuple(int(i) for i in idx)))
    return x.moved(name, t)


def pad_codes(L: Lowerer, stem: str, x: Act, axis: int, before: int, after: int, code: int) -> Act:
    """``x`` padded along ``axis`` with ``code`` (a code of x's type): each strip is a Take of ``before`` /
    ``after`` copies of x's first slice times 0 in a Soma whose bias is ``code - zero point`` (requantization
    scale exactly 1), concatenated around x -- data movement plus one constant-producing Soma per strip."""
    parts: list[Act] = []
    for k, n_pad in enumerate((before, after)):
        if n_pad > 0:
            strip = take(L, stem + ".strip", x, axis, np.zeros(n_pad, np.int64))
            c = L.b.soma_mul(stem + ".pad", [strip], [np.zeros(1, np.int64)], x.scale, (1.0,), strip.type,
                             np.array([code - x.zp], np.int64) if code != x.zp else None)
            parts.append(strip.moved(c.name, c.type))
        if k == 0:
            parts.append(x)
    if len(parts) == 1:
        return x
    r = concat_acts(L, stem, parts, axis, x.type)
    return x.moved(r.name, r.type)


def full_mask(L: Lowerer, stem: str, x: Masked) -> Act:
    """An input-dependent mask of ``x`` at the scores' shape: a mask broadcast against the scores ([1, 1, q, k]
    against [1, heads, q, k]) is copied along the broadcast axes (:func:`broadcast_to`, data movement) before it
    is reshaped, transposed or sliced with them -- moving it alone would pair its entries with the wrong scores."""
    assert isinstance(x.mask, Act)
    return x.mask if x.mask.shape == x.act.shape else broadcast_to(L, stem + ".mask", x.mask, x.act.shape)


def broadcast_to(L: Lowerer, stem: str, x: Act, shape: tuple[int, ...]) -> Act:
    """``x`` broadcast (NumPy rules) to ``shape``: leading 1s by a Reshape, each size-1 axis that grows by a
    ``Take`` of index 0 repeated -- pure data movement, the codes are copied."""
    if tuple(np.broadcast_shapes(x.shape, shape)) != tuple(shape):
        raise FrontendError(f"cannot broadcast {list(x.shape)} to {list(shape)}")
    if len(x.shape) < len(shape):
        full = (1,) * (len(shape) - len(x.shape)) + tuple(x.shape)
        name = L.b.fresh(stem + ".rank")
        t = code_type(x.type.bits, x.scale, x.zp, full)
        L.b.add(Reshape(name=name, inputs=(x.name,), type=t))
        x = x.moved(name, t)
    for ax, (have, want) in enumerate(zip(x.shape, shape)):
        if have != want:
            x = take(L, stem, x, ax, np.zeros(want, np.int64))
    return x


def int_type(lo: int, hi: int, shape: tuple[int, ...]) -> CodeType:
    """The exact code type of integers in [lo, hi]: scale 1, zero point ``max(0, -lo)``, >= 2 bits.

    Why not calibration: integer tensors (positions, counts) must hold every value the arithmetic can
    produce, and are exact -- a calibrated range would saturate on the first longer row.
    """
    zp = max(0, -int(lo))
    bits = max(2, (int(hi) + zp).bit_length())
    if bits > 24:  # the requantization of an exact integer accumulator is exact below 2^24 (float32)
        raise FrontendError(f"integer tensor range [{lo}, {hi}] needs {bits} bits; at most 24 are exact")
    return code_type(bits, 1.0, zp, shape)


def concat_acts(L: Lowerer, stem: str, xs: list[Act], axis: int, out) -> Act:  # noqa: ANN001
    xs = [L.b.requant_to(stem + ".in", x, code_type(out.bits, out.scale[0], out.zero_point[0], x.shape)) for x in xs]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    t = code_type(out.bits, out.scale[0], out.zero_point[0], tuple(shape))
    name = L.b.fresh(stem)
    L.b.add(Concat(name=name, inputs=tuple(x.name for x in xs), type=t, axis=axis))
    return Act(name, t)


def union_type(xs: list[Act], shape: tuple[int, ...], bits: int) -> CodeType:
    """The code type spanning every input's whole real range, at ``bits`` or the widest input's bits.

    Why not the calibration range: a concatenation holds exactly its inputs' values, so their types
    bound it; a narrower calibrated range would saturate held-out rows (rotate_half's Concat(-x2, x1)).
    """
    lo = min(x.scale * (x.type.lo - x.zp) for x in xs)
    hi = max(x.scale * (x.type.hi - x.zp) for x in xs)
    return range_type(lo, hi, max(bits, *(x.type.bits for x in xs)), shape)


# the (scale, zero point) input slots of each quantized-codes operand slot (QOperator ops, DequantizeLinear)
CODE_PARAMS: dict[str, dict[int, tuple[int, int]]] = {
    "DequantizeLinear": {0: (1, 2)}, "QLinearMatMul": {0: (1, 2), 3: (4, 5)}, "QLinearAdd": {0: (1, 2), 3: (4, 5)},
    "QLinearMul": {0: (1, 2), 3: (4, 5)}, "QGemm": {0: (1, 2)}, "QLinearConv": {0: (1, 2)},
    "QLinearSigmoid": {0: (1, 2)}, "QLinearLeakyRelu": {0: (1, 2)}, "QLinearSoftmax": {0: (1, 2)}}


def code_reader(L: Lowerer, tensor: str) -> tuple[str, str] | None:
    """(scale, zero point) tensor names of the first consumer that reads ``tensor`` as quantized codes (a
    DequantizeLinear, or an operand of a QOperator op such as QLinearAdd); None if nothing does."""
    for c in L.consumers.get(tensor, []):
        for k, (si, zi) in CODE_PARAMS.get(c.op_type, {}).items():
            if k < len(c.input) and c.input[k] == tensor and si < len(c.input):
                return c.input[si], c.input[zi] if zi < len(c.input) else ""
    return None


def code_table(L: Lowerer, n: onnx.NodeProto, data: Val):  # noqa: ANN202
    """(unsigned code table, its code type, signed?) for an embedding table."""
    if isinstance(data, Const) and data.value.dtype.kind in "iu":  # a quantized (QOperator) table
        bits, signed = onnx_int_bits(data.value.dtype)
        shift = (1 << (bits - 1)) if signed else 0
        rd = code_reader(L, n.output[0])
        if rd is None:
            raise FrontendError("an integer embedding table must be read as quantized codes after the Gather "
                                "(DequantizeLinear or a QLinear operand)")
        t, _ = L.q_type(L.env[rd[0]], L.env.get(rd[1]) if rd[1] else None, ())
        return data.value.astype(np.int64) + shift, t, signed
    if isinstance(data, QWeight) and data.scale.size == 1:
        bits, signed = onnx_int_bits(data.q.dtype)
        shift = (1 << (bits - 1)) if signed else 0
        t = code_type(bits, float(data.scale[0]), int(data.zero_point.reshape(-1)[0]) + shift, ())
        return data.q.astype(np.int64) + shift, t, False
    real = np.asarray(L.const_value(data), np.float32)  # no copy of a float32 table
    cons = L.consumers.get(n.output[0], [])
    ps = {L.q_params_of(c) for c in cons} if cons else {None}
    if len(ps) == 1 and None not in ps:
        t = L.out_type(n.output[0], ())
    else:
        t = range_type(*table_range(real), L.opts.act_bits, ())
    # row blocks, narrowest code dtype, memory-mapped pages dropped as it goes (weights.py)
    return quantize_rows(real, t.scale[0], t.zero_point[0], t.bits), t, False


def gather_by_codes(L: Lowerer, n: onnx.NodeProto, data: Const | QWeight, idx: Act, table_rows=None) -> Act:  # noqa: ANN001
    """``data[idx]`` (axis 0) for an exact integer activation ``idx``: an IR Gather whose index is the code.

    The code of ``idx`` is ``value + zero_point``, so the table is re-indexed by code: row ``c`` holds
    ``data[c - zp]``, negative values wrapping like ONNX's Gather (``-1`` is the last row). An integer table
    that no DequantizeLinear reads (a buffer of ids) gives an exact integer result; any other table is
    quantized once as an embedding table (:func:`code_table`). ``table_rows`` overrides the table
    (GatherElements passes its 1-D row).
    """
    raw = np.asarray(data.value if isinstance(data, Const) else data.q) if table_rows is None else table_rows
    rows = raw.shape[0]
    zp = idx.zp
    lo, hi = idx.int_range  # type: ignore[misc]
    if lo < -rows:
        raise FrontendError(f"Gather index {n.input[1]!r} may reach {lo}, below -{rows} (the table's rows)")
    integer = table_rows is not None and raw.dtype.kind in "iu" or (
        isinstance(data, Const) and raw.dtype.kind in "iu" and code_reader(L, n.output[0]) is None)
    if integer:
        vlo, vhi = int(raw.min()), int(raw.max())
        t = int_type(vlo, vhi, ())
        table, signed = raw.astype(np.int64) + t.zero_point[0], False  # code = value + zero point
    elif table_rows is not None:
        raise FrontendError("GatherElements of a float table by computed indices is not supported")
    else:
        table, t, signed = code_table(L, n, data)
    if zp:  # code c selects value c - zp; negative values wrap (ONNX Gather semantics)
        table = table[(np.arange(zp + min(hi, rows - 1) + 1) - zp) % rows]
    name = L.b.fresh(n.output[0])
    out = code_type(t.bits, t.scale[0], t.zero_point[0], idx.shape + tuple(table.shape[1:]))
    L.b.add(Gather(name=name, inputs=(idx.name,), type=out, table=L.b.const(name + ".table", table)))
    if integer:
        return Act(name, out, int_range=(vlo, vhi))
    return Act(name, out, isinstance(data, Const) and raw.dtype.kind in "iu", signed)


def gather(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    data, idx = ins
    axis = attr(n, "axis", 0)
    if isinstance(data, Const | QWeight):
        axis %= max(np.ndim(data.value if isinstance(data, Const) else data.q), 1)
    if isinstance(idx, Ids) and isinstance(data, Const | QWeight):
        if idx.base is not None and idx.base != idx.shape:
            raise FrontendError("token-id Gather of reshaped ids is not supported")
        if axis != 0:
            raise FrontendError("token-id Gather must be along axis 0")
        table, t, signed = code_table(L, n, data)
        name = L.b.fresh(n.output[0])
        t = code_type(t.bits, t.scale[0], t.zero_point[0], idx.shape + table.shape[1:])
        L.b.add(Gather(name=name, inputs=(idx.name,), type=t, table=L.b.const(name + ".table", table)))
        return [Act(name, t, isinstance(data, Const) and data.value.dtype.kind in "iu", signed)]
    if isinstance(idx, Act) and idx.integer and isinstance(data, Const | QWeight):
        if axis % max(np.ndim(data.value if isinstance(data, Const) else data.q), 1) != 0:
            raise FrontendError("a Gather by computed integer indices must be along axis 0")
        return [gather_by_codes(L, n, data, idx)]
    if isinstance(data, Act) and isinstance(idx, Const):
        ax = axis % len(data.shape)
        iv = np.asarray(idx.value).astype(np.int64)
        r = take(L, n.output[0] + (".take" if iv.ndim != 1 else ""), data, ax, iv.reshape(-1))
        if iv.ndim != 1:
            shape = data.shape[:ax] + iv.shape + data.shape[ax + 1:]
            r = move(L, n, r, shape)  # type: ignore[assignment]
        return [r]
    if isinstance(data, Act) and isinstance(idx, Ids) and not data.integer:
        if axis % max(len(data.shape), 1) != 0:
            raise FrontendError("a Gather of an activation by input ids must be along axis 0")
        return [rows_by_ids(L, n.output[0], data, idx)]
    raise FrontendError(f"Gather of {type(data).__name__} by {type(idx).__name__} is not supported")


def rows_by_ids(L: Lowerer, stem: str, data: Act, idx: Ids) -> Act:
    """``data[idx]`` along axis 0 for an activation ``data`` and input ids (rotary caches fed as inputs): the
    ids become one-hot 2-bit codes (a host lookup of the identity table, value class (b)) and a DecodeMAC
    multiplies them with the rows -- its requantization is the identity (scale 1 x s_data / s_data), so the
    selected rows are exact copies of the codes. Ids outside [0, rows) are a run-time input error."""
    m = data.shape[0]
    rest = tuple(data.shape[1:])
    flat = move(L, onnx.helper.make_node("Reshape", [], [stem + ".rows"]), data, (m, int(np.prod(rest))))
    assert isinstance(flat, Act)
    base = idx.base or idx.shape
    name = L.b.fresh(stem + ".onehot")
    t = code_type(2, 1.0, 0, tuple(base) + (m,))
    L.b.add(Gather(name=name, inputs=(idx.name,), type=t, table=L.b.const(name + ".table", np.eye(m, dtype=np.int64))))
    oh = Act(name, t, int_range=(0, 1))
    lead = tuple(idx.shape) if len(idx.shape) >= 1 else (1,)
    oh = move(L, onnx.helper.make_node("Reshape", [], [stem + ".onehot"]), oh, lead + (m,))  # type: ignore[assignment]
    r = L.b.decode_mac(stem + ".sel", oh, flat, "matmul", code_type(data.type.bits, data.scale, data.zp,
                                                                     lead + (flat.shape[1],)))
    return move(L, onnx.helper.make_node("Reshape", [], [stem]), r, tuple(idx.shape) + rest)  # type: ignore[return-value]


MASK_THRESHOLD = -1e4  # additive constants at or below this are "minus infinity" masks

# The refusals that measure a composed function on the calibration samples (chains' tables, Attention's context)
# share one rule: refused when the code grids alone -- the input's, the internals' -- move the result by more than
# 2^-RESOLUTION_BITS of its output range, or 2^-(bits - 3) at fewer output bits. That is 64 steps of a 16-bit result
# and 8 of an 8-bit one: the accuracy the ONNX conformance harness requires (onnx_conformance.STEPS_TOLERANCE), so a
# result the rule lets through can still be right, and one it refuses would be a wrong answer on its own samples.
RESOLUTION_BITS = 10


def resolution_limit(span: float, bits: int) -> float:
    """The largest error the grids alone may cause in a ``bits``-bit result spanning ``span`` (see above)."""
    return span * 2.0 ** -min(RESOLUTION_BITS, bits - 3)


def is_const(v: Val | None) -> bool:
    return isinstance(v, Const | QWeight)


def q_input(L: Lowerer, x: Val, s: Val, z: Val | None) -> Val:
    """A QLinear operand: a quantized tensor's codes under the operand's (scale, zero point) -- the same
    integers, so the same codes (:func:`retype`); a float activation is requantized."""
    if isinstance(x, Act):
        t, _ = L.q_type(s, z, x.shape)
        if x.quantized and x.type.bits == t.bits:
            return retype(L, "qin", x, t).as_float()
        return (x if x.type.same_quant(t) else L.b.requant_to("qin", x, t)).as_float()
    if isinstance(x, Const) and x.value.dtype.kind in "iu":
        sv = np.asarray(L.const_value(s), np.float32).reshape(-1)
        zv = np.zeros(sv.shape, x.value.dtype) if z is None else np.asarray(L.const_value(z)).reshape(-1)
        return QWeight(x.value, sv, zv, None if sv.size == 1 else x.value.ndim - 1)
    raise FrontendError("QLinear operand must be a quantized activation or integer constant")


def logical_not(L: Lowerer, stem: str, keep: Act) -> Act:
    """1 - keep as 2-bit codes of scale 1 (keep values above 1 clip to 0)."""
    return L.b.affine_const(stem, keep, -np.ones(1), np.ones(1), code_type(2, 1.0, 0, keep.shape))


def model_type(L: Lowerer, tensor: str, shape: tuple[int, ...]) -> CodeType | None:
    """The code type a QDQ model chose for ``tensor`` (every consumer a QuantizeLinear with the same
    constant parameters, not a graph output), else None -- then the lowering may choose."""
    cons = L.consumers.get(tensor, [])
    if not cons or tensor in {o.name for o in L.model.graph.output}:
        return None
    ps = {L.q_params_of(c) for c in cons}
    return L.out_type(tensor, shape) if len(ps) == 1 and None not in ps else None


ALIASES = ("Cast", "Unsqueeze", "Reshape", "Squeeze", "Flatten", "Identity")


def id_bound(L: Lowerer, x: Ids) -> int:
    """The largest value integer input ``x`` may hold, from how the model reads it.

    In order: the rows of an embedding table it indexes (token ids: the vocabulary); the calibration range
    of a float cast of it (an attention mask used as numbers); the calibration range of the input itself
    (where calibration records integer inputs); 1 if the model casts it to bool (a 0/1 attention mask).
    Views and integer casts of the input are followed. Larger values are a run-time input error (the host
    lookup has no row for them), never a silently wrong position.
    """
    seen, todo, bound, boolean = set(), [x.name], None, False
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for c in L.consumers.get(t, []):
            if c.op_type == "Gather" and c.input[1] == t and isinstance(L.env.get(c.input[0]), Const | QWeight):
                v = L.env[c.input[0]]
                rows = int(np.shape(v.value if isinstance(v, Const) else v.q)[0])  # type: ignore[union-attr]
                bound = rows - 1 if bound is None else min(bound, rows - 1)
            elif c.op_type == "Cast":
                dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(attr(c, "to")))
                if dt.kind == "f" and L.stats.range(c.output[0]) is not None and bound is None:
                    bound = max(int(np.ceil(L.stats.range(c.output[0])[1])), 1)  # type: ignore[index]
                boolean |= dt.kind == "b"
                if dt.kind in "iu":
                    todo.append(c.output[0])
            elif c.op_type in ALIASES:
                todo.append(c.output[0])
    if bound is not None:
        return bound
    r = L.stats.range(x.name)
    if r is not None:
        return max(int(np.ceil(r[1])), 1)
    if boolean:
        return 1
    raise FrontendError(f"integer input {x.name!r} is used in arithmetic, but nothing bounds its values "
                        "(it indexes no table and is not a mask)")


def int_of(L: Lowerer, stem: str, v: Val) -> Act:
    """An integer operand as exact codes: an integer input by a host lookup of ``arange(bound + 1)``; a bool
    activation as exact 0/1 codes (:func:`as01`)."""
    if isinstance(v, Act) and v.integer:
        return v
    if isinstance(v, Act) and v.boolean:
        return as01(L, stem, v)
    if isinstance(v, Ids):


        hi = id_bound(L, v)
        t = int_type(0, hi, ())
        a = ids_lookup(L, stem, v, np.arange(hi + 1, dtype=np.int64), t.bits)
        return Act(a.name, a.type, int_range=(0, hi))
    raise FrontendError(f"expected an integer tensor, got {type(v).__name__}")


def is_int(v: Val | None) -> bool:
    """An integer tensor computed from inputs (or the input itself)."""
    return isinstance(v, Ids) or (isinstance(v, Act) and v.integer)


def is_intlike(v: Val | None) -> bool:
    """Exact integer or bool data from inputs (value class b): :func:`is_int` or a bool activation."""
    return is_int(v) or (isinstance(v, Act) and v.boolean)


def int_lut(L: Lowerer, stem: str, x: Act, function: str, params: tuple[float, ...] = (),
            boolean: bool = False) -> Act:
    """``function(x)`` for a registered integer-valued function (comparisons, truncation, wrap-around) as an
    exact lookup table on ``x``'s codes: the result is exact integer data whose range is the function's
    range over every input code (interval of the table, not calibration)."""
    from lasercc.asnc.functions import FUNCTIONS
    from lasercc.semantics.quant import dequantize

    if x.type.bits > 20:
        raise FrontendError(f"a {x.type.bits}-bit tensor needs a lookup table of 2^{x.type.bits} entries for this "
                            "integer operation; at most 20 bits are supported")
    codes = np.arange(1 << x.type.bits, dtype=np.int64)
    vals = FUNCTIONS[function](dequantize(codes, np.asarray(x.type.scale), np.asarray(x.type.zero_point), None)
                               .astype(np.float64), params)
    lo, hi = (0, 1) if boolean else (int(vals.min()), int(vals.max()))
    r = L.b.asnc_lut(stem, x, function, params, int_type(lo, hi, x.shape), None)
    return Act(r.name, r.type, boolean=boolean, int_range=(lo, hi))


def int_binary(L: Lowerer, n: onnx.NodeProto, a: Val, b: Val, op: str) -> Act:
    """``a op b`` (op: add, sub, mul) for integer tensors and integer constants, exactly.

    Exporters compute position ids inside the graph from the integer inputs: RoBERTa
    ``cumsum(ids != pad) * (ids != pad) + pad``, OPT ``cumsum(mask) * mask - 1 (+ 2)``, BLOOM's ALiBi
    ``(cumsum(mask) - 1) * mask``. These are integer tensors (``Act.int_range`` set): exact codes of scale 1
    whose type covers the *interval* of every value the arithmetic can produce -- no calibration, nothing
    saturates -- computed by Somas with integer weights (requantization scale exactly 1) and DecodeMACs.
    Integer graph inputs enter through a host Gather of ``arange(bound + 1)`` (:func:`int_of`), their bound
    taken from how the model uses them (:func:`id_bound`).
    """
    stem = n.output[0]
    if is_const(a) and op != "sub":
        a, b = b, a
    if is_const(a):  # c - x
        c, x = const_int(L, a), int_of(L, stem + ".in", b)
        lo, hi = x.int_range  # type: ignore[misc]
        shape = tuple(np.broadcast_shapes(x.shape, c.shape))
        return int_result(L, stem, [x], [-np.ones(1)], c, int(c.min()) - hi, int(c.max()) - lo, shape)
    x = int_of(L, stem + ".in", a)
    lo, hi = x.int_range  # type: ignore[misc]
    if is_const(b):
        c = const_int(L, b)
        shape = tuple(np.broadcast_shapes(x.shape, c.shape))
        if op == "mul":
            ends = [lo * int(c.min()), lo * int(c.max()), hi * int(c.min()), hi * int(c.max())]
            return int_result(L, stem, [x], [c], 0, min(ends), max(ends), shape)
        s = 1 if op == "add" else -1
        return int_result(L, stem, [x], [np.ones(1)], s * c, lo + min(s * int(c.min()), s * int(c.max())),
                          hi + max(s * int(c.min()), s * int(c.max())), shape)
    if not is_intlike(b):
        raise FrontendError(f"{n.op_type} of an integer tensor and {type(b).__name__} is not supported")
    y = int_of(L, stem + ".in1", b)
    ylo, yhi = y.int_range  # type: ignore[misc]
    shape = tuple(np.broadcast_shapes(x.shape, y.shape))
    if op == "mul":
        ends = [lo * ylo, lo * yhi, hi * ylo, hi * yhi]
        out = int_type(min(ends), max(ends), shape)
        r = L.b.decode_mac(stem, x, y, "mul", out)  # exact: (x - zx)(y - zy) requantized by scale 1
        return Act(r.name, r.type, boolean=x.boolean and y.boolean, int_range=(min(ends), max(ends)))
    if op == "add":
        return int_result(L, stem, [x, y], [np.ones(1), np.ones(1)], 0, lo + ylo, hi + yhi, shape)
    return int_result(L, stem, [x, y], [np.ones(1), -np.ones(1)], 0, lo - yhi, hi - ylo, shape)


def int_result(L: Lowerer, stem: str, xs: list[Act], ws: list[np.ndarray], bias: np.ndarray | int,
               lo: int, hi: int, shape: tuple[int, ...], boolean: bool = False) -> Act:
    """``sum_i ws[i] * xs[i] + bias`` exactly: a mul-form Soma with integer weights, requant scale 1."""


    if not shape:  # a Soma's result has rank >= 1: compute [1], then view it as a scalar
        r = int_result(L, stem + ".1", xs, ws, bias, lo, hi, (1,), boolean)
        name = L.b.fresh(stem)
        t = int_type(lo, hi, ())
        L.b.add(Reshape(name=name, inputs=(r.name,), type=t))
        return r.moved(name, t)
    out = int_type(lo, hi, shape)
    ws = [np.asarray(w, np.int64) for w in ws]
    if tuple(np.broadcast_shapes(*(x.shape for x in xs), *(w.shape for w in ws))) != tuple(shape):
        ws[0] = np.broadcast_to(ws[0], np.broadcast_shapes(ws[0].shape, shape)).copy()  # the bias sets the shape
    r = L.b.soma_mul(stem, xs, ws, 1.0, (1.0,), out, np.asarray(bias, np.int64))
    return Act(r.name, r.type, boolean=boolean, int_range=(int(lo), int(hi)))


def const_int(L: Lowerer, v: Val) -> np.ndarray:
    c = np.asarray(L.const_value(v))
    if c.dtype.kind == "f" and not np.all(c == np.rint(c)):
        raise FrontendError("integer arithmetic with a non-integer constant")
    return c.astype(np.int64)


def as01(L: Lowerer, stem: str, x: Act) -> Act:
    """A bool activation as exact 0/1 integer codes (``nonzero`` table unless it is 0/1 already)."""
    if x.int_range is not None and x.int_range[0] >= 0 and x.int_range[1] <= 1:
        return Act(x.name, x.type, boolean=True, int_range=(0, 1))
    r = L.b.asnc_lut(stem, x, "nonzero", (), code_type(2, 1.0, 0, x.shape), None)
    return Act(r.name, r.type, boolean=True, int_range=(0, 1))


# ---- quantized codes as exact integers (QuantizeLinear outputs, integer inputs that are codes) -------------
#
# An ONNX integer tensor that holds quantized codes (the output of QuantizeLinear / a QLinear op, or a uint8 /
# int8 graph input feeding DequantizeLinear or QLinearMatMul) is carried with the same codes under two views:
# its quantization type code<bits, s, z + shift> (shift = 2^(bits-1) for signed types) where arithmetic reads
# it, and its integer view code<bits, 1, shift> (real value = the ONNX integer) where the integers themselves
# are the value -- a graph output, MatMulInteger. Switching views changes no code: a Gather of the identity
# table (data movement, :func:`retype`).

# op type -> the inputs that are quantized codes (never a scale or zero point)
CODE_OPERANDS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (0, 2), "QLinearMatMul": (0, 3), "MatMulInteger": (0, 1, 2, 3), "QLinearConv": (0, 3),
    "QGemm": (0, 3), "QLinearAdd": (0, 3), "QLinearMul": (0, 3), "QLinearSigmoid": (0,), "QLinearLeakyRelu": (0,),
    "QLinearSoftmax": (0,), "ConvInteger": (0, 1), "QLinearAveragePool": (0,), "QLinearGlobalAveragePool": (0,)}


def retype(L: Lowerer, stem: str, x: Act, t: CodeType) -> Act:
    """The codes of ``x`` under code type ``t`` (same bits, per tensor): a Gather of the identity table."""
    if x.type.same_quant(t):
        return x
    if x.type.bits != t.bits or not x.type.per_tensor or not t.per_tensor:
        raise FrontendError(f"cannot view {x.type.bits}-bit codes as {t.bits}-bit codes")
    name = L.b.fresh(stem)
    tt = code_type(t.bits, t.scale[0], t.zero_point[0], x.shape)
    L.b.add(Gather(name=name, inputs=(x.name,), type=tt,
                   table=L.b.const(name + ".table", np.arange(1 << t.bits, dtype=np.int64))))
    return x.moved(name, tt)


def is_codes_input(L: Lowerer, name: str, dtype: np.dtype) -> bool:
    """An 8/16-bit integer graph input that only quantized operations read, as codes."""
    if np.dtype(dtype).kind not in "iu" or np.dtype(dtype).itemsize > 2:
        return False
    cons = L.consumers.get(name, [])
    if not cons or name in {o.name for o in L.model.graph.output}:
        return False
    for c in cons:
        slots = [k for k, i in enumerate(c.input) if i == name]
        if not slots or any(k not in CODE_OPERANDS.get(c.op_type, ()) for k in slots):
            return False
    return True


def codes_input(L: Lowerer, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> Act:
    """An integer graph input that *is* quantized codes: a real input (the runtime takes the integers as
    numbers) encoded exactly as ``q + shift`` -- the integer view -- by a BSEEncode of scale 1."""
    from lasercc.ir.nodes import BSEEncode, Input
    from lasercc.ir.types import TensorType

    bits, signed = onnx_int_bits(dtype)
    shift = (1 << (bits - 1)) if signed else 0
    L.b.add(Input(name=name, type=TensorType(dtype="f32", shape=shape)))
    t = code_type(bits, 1.0, shift, shape)
    enc = L.b.fresh(name + ".codes")
    L.b.add(BSEEncode(name=enc, inputs=(name,), type=t))
    return Act(enc, t, True, signed, int_range=(-shift, (1 << bits) - 1 - shift))


def integer_view(L: Lowerer, stem: str, x: Act) -> Act:
    """A quantized activation (the ONNX integer tensor) as its integers: code<bits, 1, shift>."""
    shift = (1 << (x.type.bits - 1)) if x.signed else 0
    t = code_type(x.type.bits, 1.0, shift, x.shape)
    r = retype(L, stem, x, t)
    return Act(r.name, r.type, True, x.signed, int_range=(-shift, (1 << x.type.bits) - 1 - shift))


def dynamic_qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) onnxruntime's DynamicQuantizeLinear computes for data in [lo, hi] (uint8, float32
    arithmetic); a zero range gives scale 1 (a code type needs a positive scale; every code is then 0)."""
    mn, mx = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    s = np.float32((mx - mn) / np.float32(255.0))
    if not s > 0:
        return 1.0, 0
    z = int(np.clip(np.rint(np.float32(-mn) / s), 0, 255))
    return float(s), z


def zero_code(L: Lowerer, stem: str) -> Act:
    """A one-element tensor of code 0 (2 bits, scale 1) computed from a graph input: one element of the input
    taken (data movement) and multiplied by 0 in a Soma. What a constant needs to become a spiking value."""
    from lasercc.frontends.onnx.load import graph_inputs

    vals = [L.env.get(vi.name) for vi in graph_inputs(L.model)]
    for v in sorted(vals, key=lambda v: isinstance(v, Ids)):  # an activation first: no bound to find
        if isinstance(v, Ids):
            v = ids_lookup(L, stem + ".src", v, np.zeros(id_bound(L, v) + 1, np.int64), 2)
        if not isinstance(v, Act):
            continue
        for ax in range(len(v.shape)):
            if v.shape[ax] != 1:
                v = take(L, stem + ".src", v, ax, np.zeros(1, np.int64))
        name = L.b.fresh(stem + ".one")
        t = code_type(v.type.bits, v.scale, v.zp, (1,))
        L.b.add(Reshape(name=name, inputs=(v.name,), type=t))
        return L.b.soma_mul(stem + ".zero", [v.moved(name, t)], [np.zeros(1, np.int64)], 1.0, (1.0,),
                            int_type(0, 0, (1,)))
    raise FrontendError("a constant output needs a graph input to be computed from, and the model has none with "
                        "values (an empty input holds none)")


def _has_values(L: Lowerer) -> bool:
    """Does some graph input hold values (an activation or ids of nonzero size) to compute a constant from?"""
    from lasercc.frontends.onnx.load import graph_inputs

    return any(isinstance(v, Act | Ids) and int(np.prod(v.shape)) > 0
               for v in (L.env.get(vi.name) for vi in graph_inputs(L.model)))


def _empty_output(L: Lowerer, stem: str, v: np.ndarray) -> Act:
    """An empty constant output when every graph input is empty too (QuantizeLinear of a ``[2, 0]`` input): no
    value is computed, so an empty input is encoded to the output's empty shape (a BSEEncode of real values or a
    host lookup of ids, then a Reshape: zero elements each)."""
    from lasercc.frontends.onnx.load import graph_inputs
    from lasercc.ir.nodes import BSEEncode, Input
    from lasercc.ir.types import TensorType

    nodes = {n.name: n for n in L.b.nodes if isinstance(n, Input)}
    for vi in graph_inputs(L.model):
        src = nodes.get(vi.name)
        if src is None or not isinstance(src.type, TensorType):
            continue
        if src.type.dtype == "f32":
            enc = L.b.fresh(stem + ".enc")
            L.b.add(BSEEncode(name=enc, inputs=(src.name,), type=int_type(0, 0, tuple(src.type.shape))))
        else:  # empty ids: a host lookup of no rows
            enc = ids_lookup(L, stem + ".enc", Ids(src.name, tuple(src.type.shape)), np.zeros(1, np.int64), 2).name
        out = L.b.fresh(stem)
        ot = int_type(0, 0, v.shape)
        L.b.add(Reshape(name=out, inputs=(enc,), type=ot))
        return Act(out, ot, boolean=v.dtype == bool, int_range=(0, 0))
    raise FrontendError("a constant output needs a graph input to be computed from, and the model has none with "
                        "values (an empty input holds none)")


def const_output(L: Lowerer, stem: str, value: np.ndarray) -> Act:
    """A constant as a graph output: a Gather of its codes (one table row) by a zero code (:func:`zero_code`).

    Integer, bool and integer-valued float constants become exact scale-1 codes; other float constants are
    quantized over their own range at ``act_bits`` (a constant has no calibration range: it is its own)."""
    v = np.asarray(value)
    if v.dtype.kind not in "biuf":
        raise FrontendError(f"a constant output of dtype {v.dtype} has no code form")
    if v.size == 0 and not _has_values(L):
        return _empty_output(L, stem, v)
    vf = v.astype(np.float64)
    lo, hi = (float(vf.min()), float(vf.max())) if v.size else (0.0, 0.0)
    integer = v.dtype.kind in "biu" or bool(np.all(vf == np.rint(vf)))
    if integer:
        t = int_type(int(lo), int(hi), ())
        codes = (vf.astype(np.int64) + t.zero_point[0]).reshape(1, -1)
    else:
        from lasercc.semantics.quant import quantize

        t = range_type(lo, hi, L.opts.act_bits, ())
        codes = quantize(vf.astype(np.float32), t.scale[0], t.zero_point[0], t.bits).reshape(1, -1)
    z = zero_code(L, stem)
    name = L.b.fresh(stem + ".const")
    gt = code_type(t.bits, t.scale[0], t.zero_point[0], (1, codes.shape[1]))
    L.b.add(Gather(name=name, inputs=(z.name,), type=gt, table=L.b.const(name + ".table", codes)))
    out = L.b.fresh(stem)
    ot = code_type(t.bits, t.scale[0], t.zero_point[0], v.shape)
    L.b.add(Reshape(name=out, inputs=(name,), type=ot))
    if integer:
        return Act(out, ot, boolean=v.dtype == bool, int_range=(int(lo), int(hi)))
    return Act(out, ot)


def const_codes(L: Lowerer, stem: str, like: Act, value: np.ndarray, out) -> Act:  # noqa: ANN001
    """A constant as codes of type ``out`` (shape ``value.shape``): one mul-form Soma whose weight is 0 and whose
    bias is the codes minus the zero point (requantization scale exactly 1); ``like`` is any activation of the
    graph, read through one element -- a constant needs an input to be a node of the spiking graph. The one
    helper for constants that meet activations (Concat parts, Attention's constant K/V/past state, RoPE caches)."""
    v = np.asarray(value, np.float64)
    from lasercc.semantics.quant import quantize

    codes = np.asarray(quantize(v.astype(np.float32), out.scale[0], out.zero_point[0], out.bits), np.int64)
    one = like
    for ax in range(len(like.shape)):
        if one.shape[ax] != 1:
            one = take(L, stem + ".one", one, ax, np.zeros(1, np.int64))
    if len(one.shape) != v.ndim:
        r = L.b.fresh(stem + ".one")
        t = code_type(one.type.bits, one.scale, one.zp, (1,) * v.ndim)
        L.b.add(Reshape(name=r, inputs=(one.name,), type=t))
        one = Act(r, t)
    t = code_type(out.bits, out.scale[0], out.zero_point[0], v.shape)
    return L.b.soma_mul(stem, [one], [np.zeros(v.shape or (1,), np.int64)], out.scale[0], (1.0,), t,
                        codes - out.zero_point[0])
