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
    from lasercc.frontends.onnx.lower import Lowerer


def move(L: Lowerer, n: onnx.NodeProto, x: Val, shape: tuple[int, ...], perm: tuple[int, ...] | None = None) -> Val:
    if isinstance(x, DynMask):  # a mask computed from an input moves with its source
        src = move(L, n, x.src, shape, perm)
        assert isinstance(src, Act)
        return DynMask(src, x.factor)
    if isinstance(x, Masked):
        m = np.transpose(x.mask, perm) if perm else np.reshape(x.mask, shape)
        inner = move(L, n, x.act, shape, perm)
        assert isinstance(inner, Act)
        return Masked(inner, m)
    if isinstance(x, Ids) and perm is None:
        return Ids(x.name, tuple(shape), x.base or x.shape)
    if isinstance(x, Ids):
        raise FrontendError(f"{n.op_type} of token ids is not supported (feed ids in the model's input shape)")
    if isinstance(x, Masked) and isinstance(x.mask, Act):
        raise FrontendError(f"{n.op_type} of a tensor masked by an input-dependent mask is not supported")
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
    base = x.base or x.shape
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


def code_table(L: Lowerer, n: onnx.NodeProto, data: Val):  # noqa: ANN202
    """(unsigned code table, its code type, signed?) for an embedding table."""
    if isinstance(data, Const) and data.value.dtype.kind in "iu":  # a quantized (QOperator) table
        bits, signed = onnx_int_bits(data.value.dtype)
        shift = (1 << (bits - 1)) if signed else 0
        dq = next((c for c in L.consumers.get(n.output[0], []) if c.op_type == "DequantizeLinear"), None)
        if dq is None:
            raise FrontendError("an integer embedding table must be dequantized after the Gather")
        t, _ = L.q_type(L.env[dq.input[1]], L.env.get(dq.input[2]) if len(dq.input) > 2 else None, ())
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
        isinstance(data, Const) and raw.dtype.kind in "iu"
        and not any(c.op_type == "DequantizeLinear" for c in L.consumers.get(n.output[0], [])))
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


def is_const(v: Val | None) -> bool:
    return isinstance(v, Const | QWeight)


def q_input(L: Lowerer, x: Val, s: Val, z: Val | None) -> Val:
    if isinstance(x, Act):
        t, _ = L.q_type(s, z, x.shape)
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
    """An integer operand as exact codes: an integer input by a host lookup of ``arange(bound + 1)``."""
    if isinstance(v, Act) and v.integer:
        return v
    if isinstance(v, Ids):


        hi = id_bound(L, v)
        t = int_type(0, hi, ())
        a = ids_lookup(L, stem, v, np.arange(hi + 1, dtype=np.int64), t.bits)
        return Act(a.name, a.type, int_range=(0, hi))
    raise FrontendError(f"expected an integer tensor, got {type(v).__name__}")


def is_int(v: Val | None) -> bool:
    """An integer tensor computed from inputs (or the input itself)."""
    return isinstance(v, Ids) or (isinstance(v, Act) and v.integer)


def int_result(L: Lowerer, stem: str, xs: list[Act], ws: list[np.ndarray], bias: np.ndarray | int,
               lo: int, hi: int, shape: tuple[int, ...], boolean: bool = False) -> Act:
    """``sum_i ws[i] * xs[i] + bias`` exactly: a mul-form Soma with integer weights, requant scale 1."""


    out = int_type(lo, hi, shape)
    r = L.b.soma_mul(stem, xs, [np.asarray(w, np.int64) for w in ws], 1.0, (1.0,), out, np.asarray(bias, np.int64))
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
