"""Data movement (no code value changes, no spikes) and the embedding Gather.

Reshape-like ops (Reshape, Squeeze, Unsqueeze, Flatten) -> Reshape; Transpose; Slice/Split -> Slice;
Concat -> Concat after bringing inputs to one code type; Gather of a constant table by token ids ->
Gather with a *code* table (the table quantized once: its own integers for a quantized table, else
per-tensor over the table's range); Gather of an activation by constant indices -> Take. Masks ride
along through movement ops so a Reshape/Transpose between the mask and the Softmax is harmless.
"""

from __future__ import annotations

import numpy as np
import onnx

from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.lower import Lowerer, attr, register
from lasercc.frontends.onnx.values import Act, Const, Ids, Masked, QWeight, Val, code_type, onnx_int_bits, range_type
from lasercc.frontends.onnx.weights import quantize_rows, table_range
from lasercc.ir.nodes import Concat, Gather, Reshape, Slice, Take, Transpose
from lasercc.ir.types import CodeType


def _move(L: Lowerer, n: onnx.NodeProto, x: Val, shape: tuple[int, ...], perm: tuple[int, ...] | None = None) -> Val:
    if isinstance(x, Masked):
        m = np.transpose(x.mask, perm) if perm else np.reshape(x.mask, shape)
        inner = _move(L, n, x.act, shape, perm)
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


def _shape(x: Val) -> tuple[int, ...]:
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


@register("Reshape")
def reshape(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, s = ins
    src = _shape(x)
    want = [int(d) for d in L.const_value(s).reshape(-1)]
    if not attr(n, "allowzero", 0):
        want = [src[i] if d == 0 else d for i, d in enumerate(want)]
    shape = np.empty(src, dtype=np.bool_).reshape(want).shape if src else tuple(want)
    return [_move(L, n, x, tuple(shape))]


@register("Flatten")
def flatten(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = _shape(ins[0])
    ax = attr(n, "axis", 1) % (len(src) + 1) if src else 0
    return [_move(L, n, ins[0], (int(np.prod(src[:ax])), int(np.prod(src[ax:]))))]


def _axes(L: Lowerer, n: onnx.NodeProto, ins: list) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(a) for a in L.const_value(ins[1]).reshape(-1)]
    a = attr(n, "axes", None)
    return None if a is None else [int(v) for v in a]


@register("Squeeze")
def squeeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = _shape(ins[0])
    axes = _axes(L, n, ins)
    axes = [i for i, d in enumerate(src) if d == 1] if axes is None else [a % len(src) for a in axes]
    return [_move(L, n, ins[0], tuple(d for i, d in enumerate(src) if i not in axes))]


@register("Unsqueeze")
def unsqueeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = list(_shape(ins[0]))
    axes = sorted(a % (len(src) + len(_axes(L, n, ins) or [])) for a in (_axes(L, n, ins) or []))
    for a in axes:
        src.insert(a, 1)
    return [_move(L, n, ins[0], tuple(src))]


@register("Transpose")
def transpose(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = _shape(ins[0])
    perm = attr(n, "perm", None)
    perm = tuple(range(len(src)))[::-1] if perm is None else tuple(int(p) for p in perm)
    return [_move(L, n, ins[0], tuple(src[p] for p in perm), perm)]


def _slice(L: Lowerer, stem: str, x: Act, axes, starts, stops, steps) -> Act:  # noqa: ANN001
    from lasercc.ir.nodes import slice_shape

    shape = slice_shape(x.shape, tuple(axes), tuple(starts), tuple(stops), tuple(steps))
    if shape == x.shape:
        return x
    name = L.b.fresh(stem)
    t = code_type(x.type.bits, x.scale, x.zp, shape)
    L.b.add(Slice(name=name, inputs=(x.name,), type=t, axes=tuple(axes), starts=tuple(starts), stops=tuple(stops),
                  steps=tuple(steps)))
    return x.moved(name, t)


def _clamp(d: int, b: int, e: int, s: int) -> tuple[int, int, int]:
    start, stop, step = slice(b, e, s).indices(d)
    if step < 0 and stop < 0:
        stop = -d - 1  # python slice: run to the very start
    return start, stop, step


@register("Slice")
def slice_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if isinstance(x, Masked):
        raise FrontendError("Slice of a masked tensor is not supported")
    starts = [int(v) for v in L.const_value(ins[1]).reshape(-1)]
    ends = [int(v) for v in L.const_value(ins[2]).reshape(-1)]
    axes = [int(v) for v in L.const_value(ins[3]).reshape(-1)] if len(ins) > 3 and ins[3] is not None \
        else list(range(len(starts)))
    steps = [int(v) for v in L.const_value(ins[4]).reshape(-1)] if len(ins) > 4 and ins[4] is not None \
        else [1] * len(starts)
    axes = [a % len(x.shape) for a in axes]
    cl = [_clamp(x.shape[a], b, e, s) for a, b, e, s in zip(axes, starts, ends, steps)]
    return [_slice(L, n.output[0], x, axes, [c[0] for c in cl], [c[1] for c in cl], [c[2] for c in cl])]


@register("Split")
def split(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    ax = attr(n, "axis", 0) % len(x.shape)
    if len(ins) > 1 and ins[1] is not None:
        sizes = [int(v) for v in L.const_value(ins[1]).reshape(-1)]
    elif attr(n, "split", None) is not None:
        sizes = [int(v) for v in attr(n, "split")]
    else:
        k = len(n.output)
        d = x.shape[ax]
        c = -(-d // k)
        sizes = [min(c, d - i * c) for i in range(k)]
    outs, start = [], 0
    for o, s in zip(n.output, sizes):
        outs.append(_slice(L, o, x, [ax], [start], [start + s], [1]))
        start += s
    return outs


def concat_acts(L: Lowerer, stem: str, xs: list[Act], axis: int, out) -> Act:  # noqa: ANN001
    xs = [L.b.requant_to(stem + ".in", x, code_type(out.bits, out.scale[0], out.zero_point[0], x.shape)) for x in xs]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    t = code_type(out.bits, out.scale[0], out.zero_point[0], tuple(shape))
    name = L.b.fresh(stem)
    L.b.add(Concat(name=name, inputs=tuple(x.name for x in xs), type=t, axis=axis))
    return Act(name, t)


@register("Concat")
def concat(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    xs = [v for v in ins if v is not None]
    if not all(isinstance(v, Act) for v in xs):
        raise FrontendError("Concat of activations with constants is not supported")
    axis = attr(n, "axis") % len(xs[0].shape)
    if all(x.type.same_quant(xs[0].type) for x in xs):
        out = xs[0].type
        r = concat_acts(L, n.output[0], xs, axis, out)
        return [Act(r.name, r.type, xs[0].quantized, xs[0].signed)]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    from lasercc.frontends.onnx.ops_elementwise import model_type

    out = model_type(L, n.output[0], tuple(shape)) or union_type(xs, tuple(shape), L.opts.act_bits)
    return [concat_acts(L, n.output[0], xs, axis, out)]


def union_type(xs: list[Act], shape: tuple[int, ...], bits: int) -> CodeType:
    """The code type spanning every input's whole real range, at ``bits`` or the widest input's bits.

    Why not the calibration range: a concatenation holds exactly its inputs' values, so their types
    bound it; a narrower calibrated range would saturate held-out rows (rotate_half's Concat(-x2, x1)).
    """
    lo = min(x.scale * (x.type.lo - x.zp) for x in xs)
    hi = max(x.scale * (x.type.hi - x.zp) for x in xs)
    return range_type(lo, hi, max(bits, *(x.type.bits for x in xs)), shape)


@register("QLinearConcat")
def qlinear_concat(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    from lasercc.frontends.onnx.ops_elementwise import _qin

    sy, zy = ins[0], ins[1]
    xs = [_qin(L, ins[i], ins[i + 1], ins[i + 2]) for i in range(2, len(ins), 3)]
    axis = attr(n, "axis") % len(xs[0].shape)  # type: ignore[union-attr]
    out, signed = L.q_type(sy, zy, ())
    r = concat_acts(L, n.output[0], xs, axis, out)  # type: ignore[arg-type]
    return [Act(r.name, r.type, True, signed)]


@register("Gather")
def gather(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    data, idx = ins
    axis = attr(n, "axis", 0)
    if isinstance(idx, Ids) and isinstance(data, Const | QWeight):
        if idx.base is not None and idx.base != idx.shape:
            raise FrontendError("token-id Gather of reshaped ids is not supported")
        if axis != 0:
            raise FrontendError("token-id Gather must be along axis 0")
        table, t, signed = _code_table(L, n, data)
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
        r = _take(L, n.output[0] + (".take" if iv.ndim != 1 else ""), data, ax, iv.reshape(-1))
        if iv.ndim != 1:
            shape = data.shape[:ax] + iv.shape + data.shape[ax + 1:]
            r = _move(L, n, r, shape)  # type: ignore[assignment]
        return [r]
    raise FrontendError(f"Gather of {type(data).__name__} by {type(idx).__name__} is not supported")


@register("GatherND")
def gather_nd(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Elements of an activation at constant multi-indices (the dynamo exporter's ``padding_mask[b, kv]``):
    the first ``k`` axes flattened by a Reshape, one ``Take`` of the flat indices, a Reshape to the result
    shape -- data movement only."""
    data, idx = ins
    if not isinstance(data, Act) or not isinstance(idx, Const):
        raise FrontendError(f"GatherND of {type(data).__name__} by {type(idx).__name__} is not supported "
                            "(an activation by constant indices is)")
    if attr(n, "batch_dims", 0):
        raise FrontendError("GatherND with batch_dims > 0 is not supported")
    iv = np.asarray(idx.value).astype(np.int64)
    k = iv.shape[-1]
    lead, rest = data.shape[:k], data.shape[k:]
    flat_idx = np.ravel_multi_index(tuple(np.mod(iv[..., j], lead[j]) for j in range(k)), lead).reshape(-1)
    flat = _move(L, n, data, (int(np.prod(lead)),) + tuple(rest))
    assert isinstance(flat, Act)
    r = _take(L, n.output[0] + ".take", flat, 0, flat_idx)
    return [_move(L, n, r, tuple(iv.shape[:-1]) + tuple(rest))]


def _take(L: Lowerer, stem: str, x: Act, axis: int, idx: np.ndarray) -> Act:
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
            x = _take(L, stem, x, ax, np.zeros(want, np.int64))
    return x


def _code_table(L: Lowerer, n: onnx.NodeProto, data: Val):  # noqa: ANN202
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


# ---- lookups indexed by integers computed in the model (position ids) ---------------------------------


def gather_by_codes(L: Lowerer, n: onnx.NodeProto, data: Const | QWeight, idx: Act, table_rows=None) -> Act:  # noqa: ANN001
    """``data[idx]`` (axis 0) for an exact integer activation ``idx``: an IR Gather whose index is the code.

    The code of ``idx`` is ``value + zero_point``, so the table is re-indexed by code: row ``c`` holds
    ``data[c - zp]``, negative values wrapping like ONNX's Gather (``-1`` is the last row). An integer table
    that no DequantizeLinear reads (a buffer of ids) gives an exact integer result; any other table is
    quantized once as an embedding table (:func:`_code_table`). ``table_rows`` overrides the table
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
        table, t, signed = _code_table(L, n, data)
    if zp:  # code c selects value c - zp; negative values wrap (ONNX Gather semantics)
        table = table[(np.arange(zp + min(hi, rows - 1) + 1) - zp) % rows]
    name = L.b.fresh(n.output[0])
    out = code_type(t.bits, t.scale[0], t.zero_point[0], idx.shape + tuple(table.shape[1:]))
    L.b.add(Gather(name=name, inputs=(idx.name,), type=out, table=L.b.const(name + ".table", table)))
    if integer:
        return Act(name, out, int_range=(vlo, vhi))
    return Act(name, out, isinstance(data, Const) and raw.dtype.kind in "iu", signed)


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


@register("GatherElements")
def gather_elements(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``data[..., idx[i, j], ...]`` along ``axis`` for a constant ``data`` that varies only along that axis
    (the ``token_type_ids`` buffer RoBERTa gathers by position ids): a lookup in that one row -- a constant
    when the row is uniform (the usual all-zero buffer), else a Gather by the index codes."""
    data, idx = ins
    if not isinstance(data, Const) or not (isinstance(idx, Ids) or (isinstance(idx, Act) and idx.integer)):
        raise FrontendError(f"GatherElements of {type(data).__name__} by {type(idx).__name__} is not supported "
                            "(a constant by integer indices is)")
    d = np.asarray(data.value)
    ax = attr(n, "axis", 0) % d.ndim
    rows = np.moveaxis(d, ax, -1).reshape(-1, d.shape[ax])
    if not np.all(rows == rows[:1]):
        raise FrontendError("GatherElements of a constant that varies along more than the gather axis")
    row = rows[0]
    shape = _shape(idx)
    if np.all(row == row[0]):
        return [Const(np.full(shape, row[0], dtype=d.dtype))]
    if isinstance(idx, Ids):
        from lasercc.frontends.onnx.ops_elementwise import int_of

        idx = int_of(L, n.output[0] + ".idx", idx)
    return [gather_by_codes(L, n, data, idx, table_rows=row)]
