"""Data movement (no code value changes, no spikes) and lookups.

Every op here lowers for each value class of its data: (a) constants never reach a handler (lower.py folds
them); (b) exact integer data computed from inputs (``Ids``, ``Act`` with ``int_range``) and (c) activations
are moved by the same IR nodes -- Reshape-like ops (Reshape, Squeeze, Unsqueeze, Flatten) -> Reshape;
Transpose; Slice/Split -> Slice; Concat -> Concat after bringing every part (constant parts too) to one code
type; Expand -> Take of repeated index 0; Gather/GatherElements/GatherND by constant indices -> Take. Masks ride
along through movement ops so a Reshape/Transpose between the mask and the Softmax is harmless.

Shapes, axes, starts/ends/steps and split sizes must be compile-time constants: a spiking graph has static
shapes, so such an operand fed as a graph input is refused by name (:func:`_static`).

Indices computed at run time (an integer graph input, or exact integer data derived from inputs) select
elements by their codes: the (flattened, wrapped) element number becomes one exact integer code (a Soma with
integer weights, :func:`_flat_index`); a constant source is then a ``Gather`` of a code table by that code, and
an activation source is ``one_hot(code) @ source`` -- a Gather of 0/1 rows and a DecodeMAC whose requantization
is exactly 1, so the selected codes come back unchanged. No node carries an empty tensor: an empty Slice / Split
result (Phi-3's ``q[..., rotary_dim:]`` at full rotary) holds no values, so it is an empty constant, which Concat
drops; other zero-size results are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from lasercc.frontends.onnx.common import (
    broadcast_to,
    concat_acts,
    const_codes,
    full_mask,
    gather,
    gather_by_codes,
    ids_lookup,
    int_of,
    int_result,
    int_type,
    model_type,
    move,
    pad_codes,
    take,
    union_type,
    val_shape,
)
from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer
from lasercc.frontends.onnx.values import Act, Const, DynMask, Ids, Masked, QWeight, Val, code_type, range_type
from lasercc.ir.nodes import Slice, slice_shape


def _static(L: Lowerer, n: onnx.NodeProto, k: int, what: str) -> np.ndarray | None:
    """Input ``k`` of ``n`` (a shape, axes, starts, ...) as a constant array; None when absent."""
    v = L.env.get(n.input[k]) if k < len(n.input) and n.input[k] else None
    if v is None:
        return None
    if isinstance(v, Const | QWeight):
        return np.asarray(L.const_value(v))
    raise FrontendError(f"{what} ({n.input[k]!r}) must be a compile-time constant (an initializer or computed from "
                        "constants and shapes): a spiking graph has static shapes, and here it is computed from "
                        "graph inputs")


def _ints(a: np.ndarray | None) -> list[int] | None:
    return None if a is None else [int(v) for v in np.asarray(a).reshape(-1)]


def _nonempty(n: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, ...]:
    if any(d == 0 for d in shape):
        raise FrontendError(f"the result has zero size (shape {list(shape)}); lasercc does not carry empty tensors "
                            "-- remove the op or its empty output from the model")
    return shape


def empty_like(x: Val, shape: tuple[int, ...]) -> Const:
    """A result with a zero-size dimension (Slice past the end, a zero-size Split piece): it holds no values, so
    it *is* the empty array of its shape -- a constant. Its consumers fold it or drop it (Concat skips empty parts);
    no IR value carries it. The dtype only matters to a folded Cast or an output: the ONNX kind of ``x``."""
    if isinstance(x, Ids):
        return Const(np.zeros(shape, np.int64))
    a = x.act if isinstance(x, Masked) else x
    if not isinstance(a, Act):
        return Const(np.zeros(shape, np.float32))
    dt = np.bool_ if a.boolean else np.int64 if (a.integer or a.quantized) else np.float32
    return Const(np.zeros(shape, dt))


def _act(L: Lowerer, n: onnx.NodeProto, x: Val | None) -> Act:
    """Data to be moved, as codes: an activation, or exact integer data (an integer input becomes codes)."""
    if isinstance(x, Act):
        return x
    if isinstance(x, Ids):
        return int_of(L, n.output[0] + ".int", x)
    raise FrontendError(f"{n.op_type} of a {type(x).__name__} is not supported")


def _axis(a: int, rank: int, what: str = "axis") -> int:
    if not -rank <= a < rank:
        raise FrontendError(f"{what} {a} is out of range for rank {rank}")
    return a % rank


@register("Reshape")
def reshape(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    src = val_shape(x)
    want = _ints(_static(L, n, 1, "the Reshape shape")) or []
    if not attr(n, "allowzero", 0):
        want = [src[i] if d == 0 and i < len(src) else d for i, d in enumerate(want)]
    if want.count(-1) > 1:
        raise FrontendError(f"Reshape shape {want} has more than one -1")
    if -1 in want:
        rest = int(np.prod([d for d in want if d != -1]))
        total = int(np.prod(src))
        if rest == 0 or total % rest:
            raise FrontendError(f"cannot reshape {list(src)} to {want}")
        want[want.index(-1)] = total // rest
    if int(np.prod(want)) != int(np.prod(src)):
        raise FrontendError(f"cannot reshape {list(src)} to {want}")
    return [move(L, n, x, _nonempty(n, tuple(want)))]


@register("Flatten")
def flatten(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = val_shape(ins[0])
    r = len(src)
    a = int(attr(n, "axis", 1))
    if not -r <= a <= r:
        raise FrontendError(f"Flatten axis {a} is out of range for rank {r}")
    ax = a + r if a < 0 else a
    return [move(L, n, ins[0], (int(np.prod(src[:ax])), int(np.prod(src[ax:]))))]


def _axes(L: Lowerer, n: onnx.NodeProto, ins: list) -> list[int] | None:
    if len(ins) > 1 and n.input[1]:
        return _ints(_static(L, n, 1, f"the {n.op_type} axes"))
    a = attr(n, "axes", None)
    return None if a is None else [int(v) for v in a]


@register("Squeeze")
def squeeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = val_shape(ins[0])
    axes = _axes(L, n, ins)
    axes = [i for i, d in enumerate(src) if d == 1] if axes is None else [_axis(a, len(src)) for a in axes]
    bad = [a for a in axes if src[a] != 1]
    if bad:
        raise FrontendError(f"Squeeze axes {bad} of shape {list(src)} are not of size 1")
    return [move(L, n, ins[0], tuple(d for i, d in enumerate(src) if i not in axes))]


@register("Unsqueeze")
def unsqueeze(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    src = list(val_shape(ins[0]))
    given = _axes(L, n, ins) or []
    r = len(src) + len(given)
    axes = sorted(_axis(a, r) for a in given)
    if len(set(axes)) != len(axes):
        raise FrontendError(f"Unsqueeze axes {given} repeat an axis")
    for a in axes:
        src.insert(a, 1)
    return [move(L, n, ins[0], tuple(src))]


@register("Transpose")
def transpose(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    src = val_shape(x)
    perm = attr(n, "perm", None)
    perm = tuple(range(len(src)))[::-1] if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(range(len(src))):
        raise FrontendError(f"Transpose perm {list(perm)} is not a permutation of rank {len(src)}")
    if isinstance(x, Ids) and perm != tuple(range(len(src))):
        x = _act(L, n, x)
    return [move(L, n, x, tuple(src[p] for p in perm), perm)]


def _slice(L: Lowerer, n: onnx.NodeProto, stem: str, x: Act, axes, starts, stops, steps) -> Act:  # noqa: ANN001
    shape = _nonempty(n, slice_shape(x.shape, tuple(axes), tuple(starts), tuple(stops), tuple(steps)))
    if shape == x.shape and all(s == 1 for s in steps):
        return x
    name = L.b.fresh(stem)
    t = code_type(x.type.bits, x.scale, x.zp, shape)
    L.b.add(Slice(name=name, inputs=(x.name,), type=t, axes=tuple(axes), starts=tuple(starts), stops=tuple(stops),
                  steps=tuple(steps)))
    return x.moved(name, t)


def _clamp(d: int, b: int, e: int, s: int) -> tuple[int, int, int]:
    """ONNX Slice bounds as a Python slice's start, stop, step: negative bounds count from the end, then
    starts clamp to [0, d] ([0, d-1] for negative steps) and ends to [0, d] ([-1, d-1]; -1 = before the
    first element, spelled -d-1 for a Python slice)."""
    b, e = b + d if b < 0 else b, e + d if e < 0 else e
    if s > 0:
        return min(max(b, 0), d), min(max(e, 0), d), s
    b, e = min(max(b, 0), d - 1), min(max(e, -1), d - 1)
    return b, (-d - 1 if e < 0 else e), s


@register("Slice")
def slice_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    xa = x.act if isinstance(x, Masked) else _act(L, n, x)
    starts = _ints(_static(L, n, 1, "the Slice starts")) or []
    ends = _ints(_static(L, n, 2, "the Slice ends")) or []
    axes = _ints(_static(L, n, 3, "the Slice axes")) or list(range(len(starts)))
    steps = _ints(_static(L, n, 4, "the Slice steps")) or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise FrontendError("Slice starts, ends, axes and steps differ in length")
    if any(s == 0 for s in steps):
        raise FrontendError("Slice step 0 is not allowed")
    axes = [_axis(a, len(xa.shape)) for a in axes]
    cl = [_clamp(xa.shape[a], b, e, s) for a, b, e, s in zip(axes, starts, ends, steps)]
    b_, e_, s_ = [c[0] for c in cl], [c[1] for c in cl], [c[2] for c in cl]
    shape = slice_shape(xa.shape, tuple(axes), tuple(b_), tuple(e_), tuple(s_))
    if 0 in shape:  # nothing selected (starts past the end): an empty constant, masked or not
        return [empty_like(xa, shape)]
    y = _slice(L, n, n.output[0], xa, axes, b_, e_, s_)
    if not isinstance(x, Masked):
        return [y]
    if isinstance(x.mask, Act):  # the mask moves with the scores
        return [Masked(y, _slice(L, n, n.output[0] + ".mask", full_mask(L, n.output[0], x), axes, b_, e_, s_))]
    idx = [slice(None)] * len(xa.shape)
    for a, b, e, s in zip(axes, b_, e_, s_):
        idx[a] = slice(b, None if e < -xa.shape[a] else e, s)
    return [Masked(y, np.broadcast_to(x.mask, xa.shape)[tuple(idx)])]


@register("Split")
def split(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = _act(L, n, ins[0])
    ax = _axis(int(attr(n, "axis", 0)), len(x.shape))
    d = x.shape[ax]
    if len(ins) > 1 and n.input[1]:
        sizes = _ints(_static(L, n, 1, "the Split sizes")) or []
    elif attr(n, "split", None) is not None:
        sizes = [int(v) for v in attr(n, "split")]
    else:
        k = int(attr(n, "num_outputs", len(n.output)))
        c = -(-d // k)
        sizes = [max(0, min(c, d - i * c)) for i in range(k)]  # ONNX: the last chunk is the smaller one
    if sum(sizes) != d or len(sizes) != len(n.output):
        raise FrontendError(f"Split sizes {sizes} do not cover axis {ax} of size {d} in {len(n.output)} outputs")
    outs, start = [], 0
    for o, s in zip(n.output, sizes):
        if o and s == 0:  # a zero-size piece (RotaryEmbedding's body splits off an empty pass-through part)
            outs.append(empty_like(x, x.shape[:ax] + (0,) + x.shape[ax + 1:]))
        else:
            outs.append(_slice(L, n, o, x, [ax], [start], [start + s], [1]) if o else None)
        start += s
    return outs


# ---- Concat: activations, exact integers and constants in one code type --------------------------------


@register("Concat")
def concat(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    parts = [v for v in ins if v is not None]
    shapes = [val_shape(v) if not isinstance(v, Const | QWeight) else np.shape(L.const_value(v)) for v in parts]
    rank = len(shapes[0])
    if attr(n, "axis", None) is None:
        raise FrontendError("Concat needs its axis attribute")
    axis = _axis(int(attr(n, "axis")), rank)
    keep = [(v, s) for v, s in zip(parts, shapes) if s[axis] != 0]  # empty parts add nothing
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for _, s in keep)
    _nonempty(n, tuple(shape))
    acts = [v for v, _ in keep if not isinstance(v, Const | QWeight)]
    if any(isinstance(v, Masked) for v in acts):
        raise FrontendError("Concat of a masked (-inf) tensor is not supported")
    ints = all(isinstance(v, Ids) or (isinstance(v, Act) and v.integer) for v in acts)
    consts = [np.asarray(L.const_value(v)) for v, _ in keep if isinstance(v, Const | QWeight)]
    if ints and all(c.dtype.kind in "iub" for c in consts):  # exact integers stay exact
        xs = [_act(L, n, v) for v in acts]
        lo = min([x.int_range[0] for x in xs] + [int(c.min()) for c in consts])  # type: ignore[index]
        hi = max([x.int_range[1] for x in xs] + [int(c.max()) for c in consts])  # type: ignore[index]
        out = int_type(lo, hi, tuple(shape))
        bits = [_part(L, n, v, out, xs, acts) for v, _ in keep]
        r = concat_acts(L, n.output[0], bits, axis, out)
        return [Act(r.name, r.type, boolean=all(x.boolean for x in xs), int_range=(lo, hi))]
    xs = [v for v in acts if isinstance(v, Act)]
    if len(xs) != len(acts):
        raise FrontendError("Concat of integer data computed from inputs with float activations is not supported")
    if not consts and all(x.type.same_quant(xs[0].type) for x in xs):
        r = concat_acts(L, n.output[0], xs, axis, xs[0].type)
        return [Act(r.name, r.type, xs[0].quantized, xs[0].signed)]
    out = model_type(L, n.output[0], tuple(shape))
    if out is None:
        u = union_type(xs, tuple(shape), L.opts.act_bits)
        lo, hi = u.scale[0] * (u.lo - u.zero_point[0]), u.scale[0] * (u.hi - u.zero_point[0])
        for c in consts:
            lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
        out = range_type(lo, hi, u.bits, tuple(shape)) if consts else u
    return [concat_acts(L, n.output[0], [_part(L, n, v, out, xs, acts) for v, _ in keep], axis, out)]


def _part(L: Lowerer, n: onnx.NodeProto, v: Val, out, xs: list[Act], acts: list) -> Act:  # noqa: ANN001
    if isinstance(v, Const | QWeight):
        return const_codes(L, n.output[0] + ".const", xs[0], np.asarray(L.const_value(v)), out)
    return xs[[id(a) for a in acts].index(id(v))]


@register("Expand")
def expand(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Broadcast to a shape (NumPy rules, both ways: the result is ``broadcast(x.shape, shape)``). A bool mask
    stays unexpanded (it is only ever used broadcast against the scores it masks); anything else is copied
    along each broadcast axis by a ``Take`` of repeated index 0 -- data movement, no spikes."""
    x = ins[0]
    want = tuple(_ints(_static(L, n, 1, "the Expand shape")) or ())
    if isinstance(x, Act) and x.boolean and n.output[0] not in {o.name for o in L.model.graph.output}:
        return [x]
    x = _act(L, n, x)
    shape = tuple(np.broadcast_shapes(x.shape, want))
    return [broadcast_to(L, n.output[0], x, _nonempty(n, shape))]


@register("Tile")
def tile(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``numpy.tile`` with one repeat count per axis (ONNX: ``repeats`` has the input's rank): each repeated axis is
    one ``Take`` of ``arange(d)`` repeated -- data movement, the same codes. A repeat of 0 empties the result
    (an empty constant). Funnel's decoder tiles the CLS position; a mask tiles with the scores it masks."""
    x = ins[0]
    reps = _ints(_static(L, n, 1, "the Tile repeats")) or []
    src = val_shape(x.act if isinstance(x, Masked) else x)
    if len(reps) != len(src) or any(r < 0 for r in reps):
        raise FrontendError(f"Tile repeats {reps} must be {len(src)} non-negative counts (the input's rank)")
    shape = tuple(d * r for d, r in zip(src, reps))
    if 0 in shape:
        return [empty_like(x, shape)]

    def rep(a: Act, stem: str) -> Act:
        for ax, (d, r) in enumerate(zip(src, reps)):
            if r != 1:
                a = take(L, stem, a, ax, np.tile(np.arange(d, dtype=np.int64), r))
        return a

    if isinstance(x, Masked):
        if isinstance(x.mask, Act):
            return [Masked(rep(x.act, n.output[0]), rep(full_mask(L, n.output[0], x), n.output[0] + ".mask"))]
        return [Masked(rep(x.act, n.output[0]), np.tile(np.broadcast_to(x.mask, x.act.shape), reps))]
    return [rep(_act(L, n, x), n.output[0])]


# ---- Pad: constant / reflect / edge / wrap, negative pads crop --------------------------------------------------

_NP_MODES = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad_value(L: Lowerer, n: onnx.NodeProto, ins: list) -> Val | float:
    """Pad's constant: input 2 (opset 11+; a constant or an activation fed at run time), else the ``value``
    attribute (opset < 11), else 0."""
    if len(ins) > 2 and ins[2] is not None:
        v = ins[2]
        if isinstance(v, Const | QWeight):
            a = np.asarray(L.const_value(v)).reshape(-1)
            return float(a[0]) if a.size else 0.0
        return v
    return float(attr(n, "value", 0.0))


@register("Pad")
def pad(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Pad along any axes (``axes`` input, opset 18), every mode: ``reflect`` / ``edge`` / ``wrap`` are one Take per
    axis whose indices are ``numpy.pad`` of ``arange`` (pure data movement, the same codes); ``constant`` pads
    with strips of the constant's code (:func:`common.pad_codes`), or with the run-time value broadcast;
    negative pads crop (a Take of the kept range). The result keeps the input's code type when it holds the
    constant (a zero always fits: every code type covers 0), else the type that covers both."""
    x = _act(L, n, ins[0])
    rank = len(x.shape)
    if len(n.input) > 1 and n.input[1]:
        pads = _ints(_static(L, n, 1, "the Pad pads")) or []
    else:
        pads = [int(v) for v in (attr(n, "pads", None) or [])]
    axes = _ints(_static(L, n, 3, "the Pad axes")) if len(n.input) > 3 and n.input[3] else None
    axes = list(range(rank)) if axes is None else [_axis(a, rank, "Pad axis") for a in axes]
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
        raise FrontendError(f"Pad pads {pads} do not give a begin and an end for each of the axes {axes}")
    mode = attr(n, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode != "constant" and mode not in _NP_MODES:
        raise FrontendError(f"Pad mode {mode!r} is not one of constant, reflect, edge, wrap")
    before, after = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[len(axes) + i]
    shape = _nonempty(n, tuple(d + b + e for d, b, e in zip(x.shape, before, after)))
    value = _pad_value(L, n, ins) if mode == "constant" else 0.0
    grows = mode == "constant" and any(b > 0 or e > 0 for b, e in zip(before, after))
    out = x.type
    if grows and isinstance(value, float):
        lo, hi = x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)
        if x.integer:
            if value != round(value):
                raise FrontendError(f"Pad of integer data with the non-integer constant {value}")
            lo_i, hi_i = min(x.int_range[0], int(value)), max(x.int_range[1], int(value))  # type: ignore[index]
            out = int_type(lo_i, hi_i, x.shape)
            x = Act(x.name, x.type, x.quantized, x.signed, x.boolean, (lo_i, hi_i))
        elif not lo - x.scale / 2 <= value <= hi + x.scale / 2:
            out = model_type(L, n.output[0], x.shape) or range_type(min(lo, value), max(hi, value), x.type.bits,
                                                                    x.shape)
    elif grows:
        v = value
        if not isinstance(v, Act) or v.integer or x.integer:
            raise FrontendError(f"Pad constant_value is a {type(v).__name__} computed at run time; a float scalar "
                                "activation (or a constant) is supported")
        out = model_type(L, n.output[0], x.shape) or union_type([x, v], x.shape, x.type.bits)
    if not out.same_quant(x.type):
        r = L.b.requant_to(n.output[0] + ".in", x, with_shape(out, x.shape))
        x = x.moved(r.name, r.type)
    for d in range(rank):
        b, e, size = before[d], after[d], x.shape[d]
        if not b and not e:
            continue
        src = np.arange(size)[max(-b, 0): size - max(-e, 0)]
        pb, pe = max(b, 0), max(e, 0)
        if mode != "constant":
            src = np.pad(src, (pb, pe), mode=_NP_MODES[mode])  # type: ignore[call-overload]
            pb = pe = 0
        if src.size != size or np.any(src != np.arange(size)):
            x = take(L, n.output[0] + ".idx", x, d, src)
        if not pb and not pe:
            continue
        if isinstance(value, float):
            from lasercc.semantics.quant import quantize

            code = int(np.asarray(quantize(np.float32(value), out.scale[0], out.zero_point[0], out.bits)))
            x = pad_codes(L, n.output[0] + ".pad", x, d, pb, pe, code)
        else:
            parts = []
            for k, cnt in enumerate((pb, pe)):
                if cnt:
                    strip = list(x.shape)
                    strip[d] = cnt
                    vb = broadcast_to(L, n.output[0] + ".value", value, tuple(strip))  # type: ignore[arg-type]
                    parts.append(L.b.requant_to(n.output[0] + ".value", vb, with_shape(out, tuple(strip))))
                if k == 0:
                    parts.append(x)
            r = concat_acts(L, n.output[0], parts, d, out)
            x = x.moved(r.name, r.type)
    assert x.shape == shape
    return [x]


# ---- lookups: Gather, GatherElements, GatherND -------------------------------------------------------


def _index_codes(L: Lowerer, n: onnx.NodeProto, idx: Val, d: int) -> Act:
    """Run-time indices into an axis of size ``d`` as exact integer codes (``int_range`` set)."""
    if isinstance(idx, Ids):
        r = L.stats.range(idx.name)
        if r is not None and r[0] < 0:
            raise FrontendError(f"index input {idx.name!r} holds negative indices (calibration saw {int(r[0])}): an "
                                "integer graph input is looked up from 0 on the host, so negative indices from a "
                                "graph input are not supported -- add the axis size to them in the model")
        bits = max(2, (d - 1).bit_length())
        a = ids_lookup(L, n.output[0] + ".idx", idx, np.arange(d, dtype=np.int64), bits)
        return Act(a.name, a.type, int_range=(0, d - 1))
    if isinstance(idx, Act) and idx.integer:
        return idx
    raise FrontendError(f"{n.op_type} indices must be integers (a constant, an integer input or integer data "
                        f"computed from inputs), got {type(idx).__name__}")


def _flat_index(L: Lowerer, n: onnx.NodeProto, comps: list[tuple[Act, int]], pos: np.ndarray,
                shape: tuple[int, ...]) -> tuple[Act, list[np.ndarray]]:
    """``f = sum_j e_j * S_j + pos`` exactly, for index components ``(idx_j, d_j)`` (``idx_j`` in [-d_j, d_j)):
    ``e_j = idx_j`` (``+ d_j`` when idx_j may be negative) on an extended axis of E_j = d_j (or 2 d_j) entries,
    S_j the strides of the extended grid times ``pos``'s period. Returns f and, per grid axis, the element
    coordinate each grid entry stands for (negative indices wrap, as ONNX's)."""
    if not shape:  # a scalar index: computed as [1], viewed as a scalar
        one = [(move(L, n, x, (1,)), d) for x, d in comps]
        f1, coords = _flat_index(L, n, one, np.asarray(pos).reshape(1), (1,))  # type: ignore[arg-type]
        f0 = move(L, n, f1, ())
        assert isinstance(f0, Act)
        return f0, coords
    ext = [2 * d if x.int_range[0] < 0 else d for x, d in comps]  # type: ignore[index]
    period = int(pos.max()) + 1 if pos.size else 1
    strides, s = [], period
    for e in reversed(ext):
        strides.insert(0, s)
        s *= e
    off = sum(st * (e - d) for st, e, (_, d) in zip(strides, ext, comps))
    lo = off + int(pos.min()) + sum(st * x.int_range[0] for st, (x, _) in zip(strides, comps))  # type: ignore[index]
    hi = off + int(pos.max()) + sum(st * x.int_range[1] for st, (x, _) in zip(strides, comps))  # type: ignore[index]
    f = int_result(L, n.output[0] + ".flat", [x for x, _ in comps], [np.array([st]) for st in strides],
                   np.broadcast_to(pos + off, shape), lo, hi, shape)
    coords = [np.arange(e) % d for e, (_, d) in zip(ext, comps)]
    return f, coords


def _select(L: Lowerer, n: onnx.NodeProto, src: Val, f: Act, rows: np.ndarray) -> Act:
    """``src_rows[rows[f]]`` for an exact integer code ``f``: rows of a constant or an activation [R, ...]."""
    if isinstance(src, Const | QWeight):
        table = np.asarray(src.value if isinstance(src, Const) else src.q)
        if isinstance(src, QWeight):
            raise FrontendError("a lookup of a per-axis quantized constant by computed indices is not supported")
        return gather_by_codes(L, n, Const(table[rows]), f) if table.dtype.kind != "b" else \
            gather_by_codes(L, n, Const(table[rows].astype(np.int64)), f)
    assert isinstance(src, Act)
    r = src.shape[0]
    if rows.size * r > 1 << 26:
        raise FrontendError(f"a lookup of an activation by run-time indices needs a {rows.size} x {r} one-hot table; "
                            "more than 2^26 entries is not supported")
    rest = src.shape[1:]
    oh = gather_by_codes(L, n, Const(np.zeros(1)), f, table_rows=np.eye(r, dtype=np.int64)[rows])
    i = int(np.prod(f.shape))
    ohr = move(L, n, oh, (i, r))
    sr = move(L, n, src, (r, int(np.prod(rest))))
    assert isinstance(ohr, Act) and isinstance(sr, Act)
    y = L.b.decode_mac(n.output[0] + ".select", ohr, sr, "matmul", with_shape(src.type, (i, sr.shape[1])))
    res = move(L, n, src.moved(y.name, y.type), f.shape + rest)
    assert isinstance(res, Act)
    return res


@register("Gather")
def gather_op(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``np.take(data, indices, axis)`` for every value class: embedding tables by token ids (common.gather);
    an activation by constant indices (Take); anything by run-time indices (:func:`_select`)."""
    data, idx = ins
    if isinstance(idx, Const | QWeight):
        iv = np.asarray(L.const_value(idx))
        if iv.dtype.kind not in "iu":
            raise FrontendError("Gather indices must be integers")
        data = _act(L, n, data) if isinstance(data, Ids) else data
        if isinstance(data, Act):
            ax = _axis(int(attr(n, "axis", 0)), len(data.shape))
            d = data.shape[ax]
            if iv.size and (iv.min() < -d or iv.max() >= d):
                raise FrontendError(f"Gather indices reach outside [-{d}, {d}) along axis {ax}")
            r = take(L, n.output[0] + ".take", data, ax, (iv.reshape(-1) % d) if iv.size else iv.reshape(-1))
            shape = _nonempty(n, data.shape[:ax] + iv.shape + data.shape[ax + 1:])
            return [move(L, n, r, shape) if r.shape != shape else r]
    if isinstance(data, Const | QWeight) and int(attr(n, "axis", 0)) % max(np.ndim(L.const_value(data)), 1) == 0:
        if isinstance(idx, Ids) and idx.base not in (None, idx.shape):
            return [_gather_runtime(L, n, data, idx)]
        if isinstance(idx, Ids) or (isinstance(idx, Act) and idx.integer):
            return gather(L, n, ins)  # the embedding lookup (token ids or computed positions)
    if isinstance(data, Masked):
        raise FrontendError("Gather of a masked (-inf) tensor is not supported")
    return [_gather_runtime(L, n, data, idx)]


def _gather_runtime(L: Lowerer, n: onnx.NodeProto, data: Val, idx: Val) -> Act:
    if isinstance(data, Ids):
        data = _act(L, n, data)
    if not isinstance(data, Act | Const | QWeight):
        raise FrontendError(f"Gather of a {type(data).__name__} is not supported")
    dshape = data.shape if isinstance(data, Act) else np.shape(L.const_value(data))
    ax = _axis(int(attr(n, "axis", 0)), len(dshape))
    d = dshape[ax]
    ix = _index_codes(L, n, idx, d)
    _nonempty(n, ix.shape)
    f, (rows,) = _flat_index(L, n, [(ix, d)], np.zeros((), np.int64), ix.shape)
    pre, post = tuple(dshape[:ax]), tuple(dshape[ax + 1:])
    if isinstance(data, Act):
        perm = (ax,) + tuple(i for i in range(len(dshape)) if i != ax)
        src = move(L, n, data, tuple(dshape[p] for p in perm), perm) if ax else data
    else:
        src = Const(np.moveaxis(np.asarray(data.value if isinstance(data, Const) else L.const_value(data)), ax, 0))
    y = _select(L, n, src, f, rows)  # ix.shape + pre + post
    if pre:
        k, m = len(ix.shape), len(pre)
        perm = tuple(range(k, k + m)) + tuple(range(k)) + tuple(range(k + m, k + m + len(post)))
        y = move(L, n, y, tuple(y.shape[p] for p in perm), perm)  # type: ignore[assignment]
    return y


@register("GatherElements")
def gather_elements(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``out[p] = data[p with p[axis] = idx[p]]``. Constant indices -> one Take of the flattened data; run-time
    indices -> the flat element number ``idx[p] * Q + q(p)`` as one exact code, then a lookup (:func:`_select`).
    A constant ``data`` that does not vary along the other axes (RoBERTa's ``token_type_ids`` buffer) is a
    constant when uniform, else a lookup in its one row."""
    data, idx = ins
    if isinstance(data, Ids):
        data = _act(L, n, data)
    dshape = data.shape if isinstance(data, Act) else np.shape(L.const_value(data))  # type: ignore[union-attr]
    ishape = val_shape(idx) if not isinstance(idx, Const | QWeight) else np.shape(L.const_value(idx))
    if len(ishape) != len(dshape):
        raise FrontendError(f"GatherElements indices {list(ishape)} and data {list(dshape)} differ in rank")
    ax = _axis(int(attr(n, "axis", 0)), len(dshape))
    if any(i > d for k, (i, d) in enumerate(zip(ishape, dshape)) if k != ax):
        raise FrontendError(f"GatherElements indices {list(ishape)} exceed data {list(dshape)} off axis {ax}")
    d = dshape[ax]
    _nonempty(n, tuple(ishape))
    if isinstance(data, Const | QWeight) and not isinstance(idx, Const | QWeight):
        dv = np.asarray(L.const_value(data))
        rows = np.moveaxis(dv, ax, -1).reshape(-1, d)
        if np.all(rows == rows[:1]) and np.all(rows[0] == rows[0][0]):
            return [Const(np.full(tuple(ishape), rows[0][0], dtype=dv.dtype))]
    # the region of data the indices address: the index's extent on every other axis
    region = tuple(slice(0, ishape[k]) if k != ax else slice(None) for k in range(len(dshape)))
    if isinstance(idx, Const | QWeight):
        iv = np.asarray(L.const_value(idx)).astype(np.int64)
        if iv.size and (iv.min() < -d or iv.max() >= d):
            raise FrontendError(f"GatherElements indices reach outside [-{d}, {d}) along axis {ax}")
        x = _act(L, n, data)
        grid = np.indices(iv.shape)
        grid[ax] = iv % d
        flat = np.ravel_multi_index(tuple(grid), x.shape).reshape(-1)
        fx = move(L, n, x, (int(np.prod(x.shape)),))
        assert isinstance(fx, Act)
        r = take(L, n.output[0] + ".take", fx, 0, flat)
        return [move(L, n, r, tuple(iv.shape))]
    ix = _index_codes(L, n, idx, d)
    # element (k along axis, q elsewhere) of the region is row k * Q + q of the flattened, axis-first region
    qshape = tuple(ishape[k] for k in range(len(ishape)) if k != ax)
    qn = int(np.prod(qshape))
    q = np.arange(qn).reshape(qshape)
    pos = np.expand_dims(q, ax) * np.ones(tuple(ishape), np.int64)
    f, (coords,) = _flat_index(L, n, [(ix, d)], pos, tuple(ishape))
    # f = e * Q + q (the extended axis first): row of the axis-first region
    rows = (coords[:, None] * qn + np.arange(qn)[None, :]).reshape(-1)
    if isinstance(data, Act):
        perm = (ax,) + tuple(k for k in range(len(dshape)) if k != ax)
        reg = data
        starts = [0] * len(dshape)
        if tuple(s.stop if s.stop is not None else dshape[k] for k, s in enumerate(region)) != tuple(dshape):
            reg = _slice(L, n, n.output[0] + ".region", data, list(range(len(dshape))), starts,
                         [ishape[k] if k != ax else dshape[k] for k in range(len(dshape))], [1] * len(dshape))
        src = move(L, n, reg, tuple(reg.shape[p] for p in perm), perm)
        src = move(L, n, src, (d * qn, 1))
    else:
        dv = np.asarray(L.const_value(data))[region]
        src = Const(np.moveaxis(dv, ax, 0).reshape(d * qn))
    y = _select(L, n, src, f, rows)
    return [move(L, n, y, tuple(ishape)) if y.shape != tuple(ishape) else y]


@register("GatherND")
def gather_nd(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Slices of ``data`` at multi-indices (the last axis of ``indices``), after ``batch_dims`` shared leading
    axes: the addressed axes are flattened into one; constant indices -> one Take of the flat positions
    (the dynamo exporter's ``padding_mask[b, kv]``); run-time indices -> the flat position as one exact code
    (a Soma with the strides as integer weights), then a lookup (:func:`_select`)."""
    data, idx = ins
    if isinstance(data, Ids):
        data = _act(L, n, data)
    dshape = tuple(data.shape if isinstance(data, Act) else np.shape(L.const_value(data)))  # type: ignore[union-attr]
    ishape = tuple(val_shape(idx) if not isinstance(idx, Const | QWeight) else np.shape(L.const_value(idx)))
    b = int(attr(n, "batch_dims", 0))
    if not ishape or ishape[-1] > len(dshape) - b or ishape[:b] != dshape[:b]:
        raise FrontendError(f"GatherND indices {list(ishape)} do not fit data {list(dshape)} with batch_dims {b}")
    k = ishape[-1]
    lead, rest = dshape[:b + k], dshape[b + k:]
    out_shape = _nonempty(n, ishape[:-1] + rest)
    bn = int(np.prod(dshape[:b]))
    if isinstance(idx, Const | QWeight):
        iv = np.asarray(L.const_value(idx)).astype(np.int64).reshape((bn, -1, k))
        dims = dshape[b:b + k]
        if iv.size and any(iv[..., j].min() < -dims[j] or iv[..., j].max() >= dims[j] for j in range(k)):
            raise FrontendError("GatherND indices reach outside the data")
        batch = np.broadcast_to(np.arange(bn)[:, None], iv.shape[:2])
        coords = np.unravel_index(batch, dshape[:b]) if b else ()
        flat = np.ravel_multi_index(tuple(coords) + tuple(np.mod(iv[..., j], dims[j]) for j in range(k)),
                                    lead).reshape(-1)
        x = _act(L, n, data)
        fx = move(L, n, x, (int(np.prod(lead)),) + tuple(rest))
        assert isinstance(fx, Act)
        r = take(L, n.output[0] + ".take", fx, 0, flat)
        return [move(L, n, r, out_shape)]
    if k == 0:
        raise FrontendError("GatherND with run-time indices of last dimension 0 is not supported")
    # codes from 0 to the largest addressed axis; a value past its own axis is a run-time input error
    ix = _index_codes(L, n, idx, max(dshape[b:b + k]))
    dims = dshape[b:b + k]
    comps = []
    for j in range(k):
        cj = take(L, n.output[0] + f".i{j}", ix, len(ishape) - 1, np.array([j]))
        comps.append((move(L, n, cj, ishape[:-1]), dims[j]))
    inner = int(np.prod(ishape[b:-1]))
    pos = np.repeat(np.arange(bn), inner).reshape(ishape[:-1]) if b else np.zeros(ishape[:-1], np.int64)
    f, coords = _flat_index(L, n, comps, pos, ishape[:-1])  # type: ignore[arg-type]
    grid = np.stack(np.meshgrid(*coords, indexing="ij"), -1).reshape(-1, k)
    # f = (grid entry) * bn + batch: the row of the batch-first source
    inner_rows = np.ravel_multi_index(tuple(grid.T), dims)
    rows = (inner_rows[:, None] + np.arange(bn)[None, :] * int(np.prod(dims))).reshape(-1)
    if isinstance(data, Act):
        src = move(L, n, data, (int(np.prod(lead)),) + tuple(rest))
    else:
        src = Const(np.asarray(L.const_value(data)).reshape((int(np.prod(lead)),) + tuple(rest)))
    y = _select(L, n, src, f, rows)
    return [move(L, n, y, out_shape) if y.shape != out_shape else y]


@register("ScatterND")
def scatter_nd(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``data`` with the slices at constant multi-indices replaced by ``updates`` (``reduction`` "none"; a
    repeated index takes its last update, as onnxruntime writes them in order). Pure data movement: data and
    updates, each flattened, are concatenated in one code type (Concat's rule, constants included) and one
    ``Take`` picks every output element from one of them. The dynamo exporter writes in-place slice assignments
    (``x[..., i] = y``, Funnel's attention) this way. Run-time indices and the accumulating reductions are
    refused."""
    data, idx, upd = ins[0], ins[1], ins[2]
    red = attr(n, "reduction", "none")
    red = red.decode() if isinstance(red, bytes) else red
    if red != "none":
        raise FrontendError(f"ScatterND with reduction {red!r} is not supported (only 'none')")
    if not isinstance(idx, Const | QWeight):
        raise FrontendError("ScatterND indices computed at run time are not supported (constant indices only)")
    for v in (data, upd):
        if isinstance(v, Masked | DynMask):
            raise FrontendError(f"ScatterND of a masked tensor ({type(v).__name__}) is not supported")
    shp = [tuple(np.shape(L.const_value(v))) if isinstance(v, Const | QWeight) else val_shape(v) for v in (data, upd)]
    dshape, ushape = shp
    iv = np.asarray(L.const_value(idx)).astype(np.int64)
    k = iv.shape[-1] if iv.ndim else 0
    if iv.ndim < 1 or k > len(dshape) or tuple(ushape) != iv.shape[:-1] + tuple(dshape[k:]):
        raise FrontendError(f"ScatterND indices {list(iv.shape)} and updates {list(ushape)} do not fit data "
                            f"{list(dshape)}")
    dims = np.array(dshape[:k], np.int64)
    pts = iv.reshape(-1, k)
    if pts.size and ((pts < -dims).any() or (pts >= dims).any()):
        raise FrontendError("ScatterND indices reach outside the data")
    size, inner = int(np.prod(dshape)), int(np.prod(dshape[k:]))
    src = np.arange(size, dtype=np.int64).reshape(-1, inner)  # each output row's source: data's own row ...
    rows = np.ravel_multi_index(tuple(np.mod(pts, dims).T), tuple(dshape[:k])) if k else np.zeros(len(pts), np.int64)
    for u, r in enumerate(rows):  # ... or, where an index names it, that update's row (the last one wins)
        src[r] = size + u * inner + np.arange(inner)

    def flat(v: Val, stem: str) -> Val:
        if isinstance(v, Const | QWeight):
            return Const(np.asarray(L.const_value(v)).reshape(-1))
        return move(L, n, _act(L, n, v) if isinstance(v, Ids) else v, (int(np.prod(val_shape(v))),))

    both = concat(L, helper.make_node("Concat", ["d", "u"], [n.output[0] + ".cat"], axis=0),
                  [flat(data, n.output[0] + ".d"), flat(upd, n.output[0] + ".u")])[0]
    r = take(L, n.output[0] + ".take", both, 0, src.reshape(-1))
    return [move(L, n, r, tuple(dshape))]
