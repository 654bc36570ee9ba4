"""Data movement (no code value changes, no spikes) and the embedding Gather.

Reshape-like ops (Reshape, Squeeze, Unsqueeze, Flatten) -> Reshape; Transpose; Slice/Split -> Slice;
Concat -> Concat after bringing inputs to one code type; Gather of a constant table by token ids ->
Gather with a *code* table (the table quantized once: its own integers for a quantized table, else
per-tensor over the table's range); Gather of an activation by constant indices -> Take. Masks ride
along through movement ops so a Reshape/Transpose between the mask and the Softmax is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    concat_acts,
    gather,
    gather_by_codes,
    int_of,
    model_type,
    move,
    take,
    union_type,
    val_shape,
)
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer
from lasercc.frontends.onnx.values import Act, Const, Ids, Masked, code_type
from lasercc.ir.nodes import Slice


@register("Reshape")
def reshape(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, s = ins
    src = val_shape(x)
    want = [int(d) for d in L.const_value(s).reshape(-1)]
    if not attr(n, "allowzero", 0):
        want = [src[i] if d == 0 else d for i, d in enumerate(want)]
    shape = np.empty(src, dtype=np.bool_).reshape(want).shape if src else tuple(want)
    return [move(L, n, x, tuple(shape))]


@register("Flatten")
def flatten(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = val_shape(ins[0])
    ax = attr(n, "axis", 1) % (len(src) + 1) if src else 0
    return [move(L, n, ins[0], (int(np.prod(src[:ax])), int(np.prod(src[ax:]))))]


def _axes(L: Lowerer, n: onnx.NodeProto, ins: list) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(a) for a in L.const_value(ins[1]).reshape(-1)]
    a = attr(n, "axes", None)
    return None if a is None else [int(v) for v in a]


@register("Squeeze")
def squeeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = val_shape(ins[0])
    axes = _axes(L, n, ins)
    axes = [i for i, d in enumerate(src) if d == 1] if axes is None else [a % len(src) for a in axes]
    return [move(L, n, ins[0], tuple(d for i, d in enumerate(src) if i not in axes))]


@register("Unsqueeze")
def unsqueeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = list(val_shape(ins[0]))
    axes = sorted(a % (len(src) + len(_axes(L, n, ins) or [])) for a in (_axes(L, n, ins) or []))
    for a in axes:
        src.insert(a, 1)
    return [move(L, n, ins[0], tuple(src))]


@register("Transpose")
def transpose(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = val_shape(ins[0])
    perm = attr(n, "perm", None)
    perm = tuple(range(len(src)))[::-1] if perm is None else tuple(int(p) for p in perm)
    return [move(L, n, ins[0], tuple(src[p] for p in perm), perm)]


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


    out = model_type(L, n.output[0], tuple(shape)) or union_type(xs, tuple(shape), L.opts.act_bits)
    return [concat_acts(L, n.output[0], xs, axis, out)]


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
    flat = move(L, n, data, (int(np.prod(lead)),) + tuple(rest))
    assert isinstance(flat, Act)
    r = take(L, n.output[0] + ".take", flat, 0, flat_idx)
    return [move(L, n, r, tuple(iv.shape[:-1]) + tuple(rest))]


# ---- lookups indexed by integers computed in the model (position ids) ---------------------------------


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
    shape = val_shape(idx)
    if np.all(row == row[0]):
        return [Const(np.full(shape, row[0], dtype=d.dtype))]
    if isinstance(idx, Ids):


        idx = int_of(L, n.output[0] + ".idx", idx)
    return [gather_by_codes(L, n, data, idx, table_rows=row)]


register("Gather")(gather)
