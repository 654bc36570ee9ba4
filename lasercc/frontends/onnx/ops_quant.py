"""Quantization operations: QuantizeLinear / DequantizeLinear, the QOperator ops, MatMulInteger and
DynamicQuantizeLinear.

An ONNX integer tensor of quantized codes (a QuantizeLinear or QLinear output, or a uint8/int8/uint16/int16
graph input that only quantized ops read) is an :class:`Act` with ``quantized=True``: its codes are the ONNX
integers (plus ``2^(bits-1)`` when signed) and its real value is read through whichever (scale, zero point)
the consumer states -- the same codes under another type, never a requantization (:func:`common.retype`).
A graph output of such a tensor is its integer view (real value = the ONNX integer).

* ``QuantizeLinear`` of an activation is free when the activation already has the code type (the usual
  QDQ case: the producer was lowered straight into the Q node's type), else an identity Soma. Per-axis
  scales on an activation: one slice per channel, each requantized to its own (scale, zero point) and
  viewed as integers, concatenated (exact integer data). ``block_size`` on an activation is refused.
* ``DequantizeLinear`` of quantized codes is free (same codes, float view), per axis a slice per channel;
  of an integer constant it keeps the integers (:class:`QWeight`, :mod:`nbits` for 4-bit / blocked);
  of an integer constant by a *scale computed at run time* it is a Soma multiplying that scale.
* ``QLinearMatMul`` / ``QGemm``: constant integer weights -> Soma with the model's integers; two activations
  -> DecodeMAC. ``MatMulInteger``: exact integer accumulation (Soma or DecodeMAC, scale 1, width from
  interval arithmetic); the dynamic-quantization pattern (+ Cast + Mul by the dynamic scale) stays symbolic
  (:class:`IntAcc`, :func:`cores.mul_dynamic`).
* ``DynamicQuantizeLinear``: a runtime scale cannot exist in a static spiking graph; the scale onnxruntime
  would compute ((max(0,x) - min(0,x)) / 255) is computed once from the calibration range of x
  (:func:`common.dynamic_qparams`); as graph outputs, scale and zero point are constant codes.
* ``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat`` (com.microsoft; onnxruntime's fusions of the dynamic
  pattern, in files it saves with its graph optimisations on): A quantized with its calibrated dynamic scale (or
  read under its stated one), one Soma with the model's integer B and the float bias.
* ``QLinearConv`` and ``ConvInteger``: with the other convolutions in :mod:`ops_conv`.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    broadcast_to,
    concat_acts,
    dynamic_qparams,
    int_result,
    int_type,
    is_const,
    move,
    q_input,
    retype,
    take,
)
from lasercc.frontends.onnx.cores import matmul_acts, soma_linear
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.nbits import dequantize_weight, widen_int
from lasercc.frontends.onnx.registry import MS, attr, register
from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynMask,
    DynScale,
    IntAcc,
    Masked,
    QWeight,
    Val,
    code_type,
    onnx_int_bits,
)
from lasercc.ir.nodes import BSEEncode, Concat, Input, Reshape, Soma
from lasercc.ir.types import CodeType, TensorType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

MAX_CHANNELS = 256  # per-axis quantization of an activation: one slice per channel, at most this many


def _const(L: Lowerer, v: Val | None, what: str, n: onnx.NodeProto, k: int) -> np.ndarray | None:
    """A quantization parameter's value; a run-time one is refused in the user's terms."""
    if v is None:
        return None
    if not is_const(v):
        name = n.input[k] if k < len(n.input) else what
        raise FrontendError(f"{what} {name!r} is computed at run time ({type(v).__name__}); quantization "
                            "parameters must be constants in a static spiking graph")
    return np.asarray(L.const_value(v, what))


def _qdtype(n: onnx.NodeProto, zv: np.ndarray | None) -> np.dtype:
    """The integer type of a Q/DQ node: its zero point's, else ``output_dtype`` (opset 21), else uint8."""
    if zv is not None:
        dt = widen_int(zv).dtype
    else:
        od = attr(n, "output_dtype", 0)
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(od)) if od else np.dtype(np.uint8)
    if dt.kind not in "iu" or dt.itemsize > 2:
        raise FrontendError(f"{n.op_type} to {dt} activations is not supported (codes are 8- or 16-bit "
                            "integers; int32 only for constant biases)")
    return dt


def _params(L: Lowerer, n: onnx.NodeProto, ins: list,
            shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int, int, int, bool]:
    """The (scale, zero point + shift) grid of a Q/DQ node on an activation of ``shape``: arrays of the
    activation's rank whose element ``g`` holds the parameters of the region ``g`` (size 1 along an axis means
    one region; ``block`` elements per region along ``axis``; 1 elsewhere) -- plus axis, block, bits, signed.
    Per tensor: a grid of 1s. Per axis: the scales along ``axis``. Blocked (opset 21): the scale tensor."""
    rank = len(shape)
    sv = np.asarray(_const(L, ins[1], "scale", n, 1), np.float32)
    z = ins[2] if len(ins) > 2 else None
    zv = _const(L, z, "zero point", n, 2)
    dt = _qdtype(n, zv)
    bits, signed = onnx_int_bits(dt)
    shift = (1 << (bits - 1)) if signed else 0
    zi = np.zeros(sv.shape, np.int64) if zv is None else widen_int(zv).astype(np.int64)
    if zi.shape != sv.shape and zi.size != 1:
        raise FrontendError(f"{n.op_type} zero point {list(zi.shape)} does not match scale {list(sv.shape)}")
    zi = np.broadcast_to(zi, sv.shape)
    if not np.all(sv > 0):
        raise FrontendError(f"{n.op_type} scales must be positive")
    one = (1,) * rank
    if sv.size == 1 or (np.all(sv == sv.reshape(-1)[0]) and np.all(zi == zi.reshape(-1)[0])):
        return sv.reshape(-1)[:1].reshape(one), zi.reshape(-1)[:1].reshape(one) + shift, 0, 1, bits, signed
    axis = int(attr(n, "axis", 1))
    if not -rank <= axis < rank:
        raise FrontendError(f"{n.op_type} axis {axis} out of range for a rank-{rank} tensor")
    axis %= rank
    block = int(attr(n, "block_size", 0) or 0)
    if block:
        ok = sv.ndim == rank and sv.shape[axis] == -(-shape[axis] // block) and all(
            sv.shape[d] in (1, shape[d]) for d in range(rank) if d != axis)
        if not ok:
            raise FrontendError(f"{n.op_type} block_size={block}: scale {list(sv.shape)} does not fit "
                                f"{list(shape)} on axis {axis}")
        return sv, zi + shift, axis, block, bits, signed
    if sv.ndim != 1 or sv.size != shape[axis]:
        raise FrontendError(f"{n.op_type} per-axis scale of {sv.size} values for axis {axis} of {list(shape)}")
    g = [1] * rank
    g[axis] = sv.size
    return sv.reshape(g), zi.reshape(g) + shift, axis, 1, bits, signed


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    shift = (1 << (bits - 1)) if signed else 0
    return -shift, (1 << bits) - 1 - shift


def _concat(L: Lowerer, stem: str, parts: list[Act], axis: int) -> tuple[str, object]:
    if len(parts) == 1:
        return parts[0].name, parts[0].type
    t = parts[0].type
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    tt = code_type(t.bits, t.scale[0], t.zero_point[0], tuple(shape))
    name = L.b.fresh(stem)
    L.b.add(Concat(name=name, inputs=tuple(p.name for p in parts), type=tt, axis=axis))
    return name, tt


def _select(L: Lowerer, stem: str, x: Act, sel: list[tuple[int, np.ndarray]]) -> Act:
    for d, idx in sel:
        x = take(L, stem, x, d, idx)
    return x


def _by_region(L: Lowerer, n: onnx.NodeProto, shape: tuple[int, ...], sv: np.ndarray, zv: np.ndarray, axis: int,
               block: int, leaf) -> tuple[str, object]:  # noqa: ANN001
    """Apply ``leaf(k, selection, scale, zero point)`` to every region of the parameter grid (one per channel,
    or per block) and concatenate the results back, axis by axis: data movement around per-region Somas."""
    regions = int(np.prod(sv.shape))
    if regions > MAX_CHANNELS:
        raise FrontendError(f"{n.op_type} with {regions} distinct (scale, zero point) regions on an activation: at "
                            f"most {MAX_CHANNELS} (one slice each: codes have one scale per tensor)")
    count = itertools.count()

    def rec(d: int, sel: list, g: tuple) -> Act:
        if d == len(shape):
            return leaf(next(count), sel, float(sv[g]), int(zv[g]))
        if sv.shape[d] == 1:
            return rec(d + 1, sel, g + (0,))
        size = block if d == axis else 1
        parts = [rec(d + 1, sel + [(d, np.arange(i * size, min((i + 1) * size, shape[d])))], g + (i,))
                 for i in range(sv.shape[d])]
        name, t = _concat(L, n.output[0], parts, d)
        return Act(name, t)  # type: ignore[arg-type]

    r = rec(0, [], ())
    return r.name, r.type


# ---- QuantizeLinear / DequantizeLinear --------------------------------------------------------------------


@register("QuantizeLinear", domain=MS)
@register("QuantizeLinear")
def quantize_linear(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if isinstance(x, Masked | DynMask):
        return [x]  # a -inf mask is never quantized as data: the Q parameters (scale ~1e36) are ignored
    if not isinstance(x, Act):
        raise FrontendError(f"QuantizeLinear of {type(x).__name__} (only activations are quantized)")
    sv, zv, axis, block, bits, signed = _params(L, n, ins, x.shape)
    raw = _real_input(L, x)
    if sv.size == 1:
        t = code_type(bits, float(sv.reshape(-1)[0]), int(zv.reshape(-1)[0]), x.shape)
        r = _encode(L, n.output[0], raw, t) if raw and not x.type.same_quant(t) else L.b.requant_to(n.output[0], x, t)
        return [Act(r.name, r.type, True, signed)]
    shift = (1 << (bits - 1)) if signed else 0

    def leaf(k: int, sel: list, s: float, z: int) -> Act:
        if raw:  # the real input encoded straight into this region's type, then the region taken: exact
            r = _select(L, n.output[0] + f".r{k}", _encode(L, n.output[0] + f".q{k}", raw,
                                                           code_type(bits, s, z, x.shape)), sel)
        else:
            xr = _select(L, n.output[0] + f".r{k}", x, sel)
            r = L.b.requant_to(n.output[0] + f".q{k}", xr, code_type(bits, s, z, xr.shape))
        return retype(L, n.output[0] + f".int{k}", r, code_type(bits, 1.0, shift, r.shape))

    name, t = _by_region(L, n, x.shape, sv, zv, axis, block, leaf)
    return [Act(name, t, True, signed, int_range=_int_range(bits, signed))]  # type: ignore[arg-type]


def _real_input(L: Lowerer, x: Act) -> str | None:
    """The real (f32) graph input that ``x`` encodes, if it is one: QuantizeLinear then encodes that input
    straight into its own code type -- BSEEncode is QuantizeLinear's rule, so the integers are exact."""
    by_name = {}
    for node in L.b.nodes:  # graph inputs are lowered first: Input / BSEEncode nodes lead the list
        if not isinstance(node, Input | BSEEncode):
            break
        by_name[node.name] = node
    node = by_name.get(x.name)
    if not isinstance(node, BSEEncode):
        return None
    src = by_name.get(node.inputs[0])
    ok = isinstance(src, Input) and isinstance(src.type, TensorType) and src.type.dtype == "f32"
    return node.inputs[0] if ok and x.shape == tuple(src.type.shape) else None


def _encode(L: Lowerer, stem: str, raw: str, t) -> Act:  # noqa: ANN001
    name = L.b.fresh(stem)
    L.b.add(BSEEncode(name=name, inputs=(raw,), type=t))
    return Act(name, t)


@register("DequantizeLinear", domain=MS)
@register("DequantizeLinear")
def dequantize_linear(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else None
    if isinstance(x, Masked | DynMask):
        return [x]
    if isinstance(x, Const) and isinstance(s, Act):
        return [_dequantize_by_scale(L, n, x, s, z)]
    if isinstance(x, Act) and x.quantized and isinstance(s, Act):
        return [_dequantize_dynamic(L, n, x, s, z)]
    if isinstance(x, Act):
        if not x.quantized:
            raise FrontendError("DequantizeLinear of a float activation (its input must be an integer tensor)")
        sv, zv, axis, block, bits, _ = _params(L, n, ins, x.shape)
        if bits != x.type.bits:
            raise FrontendError(f"DequantizeLinear reads {x.type.bits}-bit codes as {bits}-bit")
        if sv.size == 1:
            t = code_type(bits, float(sv.reshape(-1)[0]), int(zv.reshape(-1)[0]), x.shape)
            return [retype(L, n.output[0], x, t).as_float()]
        out = L.out_type(n.output[0], x.shape)

        def leaf(k: int, sel: list, s: float, z: int) -> Act:
            xr = _select(L, n.output[0] + f".r{k}", x, sel)
            r = retype(L, n.output[0] + f".dq{k}", xr, code_type(bits, s, z, xr.shape))
            return L.b.requant_to(n.output[0] + f".o{k}", r, code_type(out.bits, out.scale[0], out.zero_point[0],
                                                                       xr.shape))

        name, t = _by_region(L, n, x.shape, sv, zv, axis, block, leaf)
        return [Act(name, t)]  # type: ignore[arg-type]
    if isinstance(x, Const) and (attr(n, "block_size", 0) or x.value.dtype.kind not in "iu"):
        w = dequantize_weight(L, n, ins)  # int4/uint4 and/or block-wise (opset 21) weights: nbits
        if w is not None:
            return [w]
    if isinstance(x, Const) and x.value.dtype.kind in "iu":
        sv = np.asarray(_const(L, s, "scale", n, 1), np.float32)
        zv = np.zeros(sv.shape, x.value.dtype) if z is None else np.asarray(_const(L, z, "zero point", n, 2))
        axis = attr(n, "axis", 1) if sv.size > 1 else None
        if axis is not None:
            axis %= x.value.ndim
        return [QWeight(x.value, sv.reshape(-1), zv.reshape(-1), axis)]
    raise FrontendError(f"DequantizeLinear of {type(x).__name__} (an integer tensor: quantized codes or an integer "
                        "constant)")


def _dequantize_dynamic(L: Lowerer, n: onnx.NodeProto, x: Act, s: Act, z: Val | None) -> Act:
    """``(q - z) * scale`` with codes q and a scale given at run time (an activation): ``q - z`` exactly (a
    retype, or an integer Soma for a zero point given at run time), then a DecodeMAC product with the scale
    broadcast along ``axis`` (per axis) or repeated over each block (``block_size``) by data movement."""
    rank = len(x.shape)
    bits = x.type.bits
    shift = (1 << (bits - 1)) if x.signed else 0
    axis = int(attr(n, "axis", 1)) % max(rank, 1) if rank else 0
    block = int(attr(n, "block_size", 0) or 0)

    def expand(v: Act, what: str) -> Act:
        if int(np.prod(v.shape)) == 1 and len(v.shape) <= 1:
            shape: tuple[int, ...] = ()
        elif block:
            if len(v.shape) != rank or v.shape[axis] != -(-x.shape[axis] // block):
                raise FrontendError(f"blocked DequantizeLinear: {what} {list(v.shape)} does not fit {list(x.shape)} "
                                    f"with block_size {block}")
            return take(L, n.output[0] + f".{what}", v, axis, np.arange(x.shape[axis]) // block)
        elif len(v.shape) == 1 and v.shape[0] == x.shape[axis]:
            shape = tuple(v.shape[0] if d == axis else 1 for d in range(rank))
        else:
            raise FrontendError(f"DequantizeLinear {what} of shape {list(v.shape)} for data {list(x.shape)}")
        if shape == v.shape:
            return v
        name = L.b.fresh(n.output[0] + f".{what}")
        t = code_type(v.type.bits, v.scale, v.zp, shape)
        L.b.add(Reshape(name=name, inputs=(v.name,), type=t))
        return v.moved(name, t)

    xi = retype(L, n.output[0] + ".q", x, code_type(bits, 1.0, shift, x.shape))
    xlo, xhi = -shift, x.type.hi - shift
    if isinstance(z, Act) and z.integer and z.int_range is not None:
        ze = expand(z, "zero_point")
        lo, hi = xlo - z.int_range[1], xhi - z.int_range[0]
        d = int_result(L, n.output[0] + ".d", [xi, ze], [np.ones(1, np.int64), -np.ones(1, np.int64)], 0, lo, hi,
                       x.shape)
    elif z is None or is_const(z):
        zv = np.zeros((), np.int64) if z is None else widen_int(np.asarray(L.const_value(z, "zero point")))
        zv = zv.astype(np.int64)
        if zv.size != 1:
            raise FrontendError("DequantizeLinear with a run-time scale and a per-axis constant zero point")
        zc = int(zv.reshape(-1)[0])
        d = retype(L, n.output[0] + ".d", xi, code_type(bits, 1.0, shift + zc, x.shape)) \
            if 0 <= shift + zc <= x.type.hi else int_result(L, n.output[0] + ".d", [xi], [np.ones(1, np.int64)], -zc,
                                                            xlo - zc, xhi - zc, x.shape)
    else:
        raise FrontendError(f"DequantizeLinear zero point of {type(z).__name__}")
    se = expand(s, "scale")
    out = L.out_type(n.output[0], x.shape)
    return L.b.decode_mac(n.output[0], d, se, "mul", out)


def _dequantize_by_scale(L: Lowerer, n: onnx.NodeProto, x: Const, s: Act, z: Val | None) -> Act:
    """``(q - z) * scale`` with constant integers q and a scale computed at run time: a mul-form Soma of the
    scale activation with integer weights ``q - z`` (broadcast along ``axis`` when the scale is 1-D)."""
    q = widen_int(x.value).astype(np.int64)
    zv = _const(L, z, "zero point", n, 2)
    zi = np.zeros((), np.int64) if zv is None else widen_int(zv).astype(np.int64)
    sa = s
    block = int(attr(n, "block_size", 0) or 0)
    if block:  # element i along axis uses block i // block_size: the scale's blocks repeated (data movement)
        axis = int(attr(n, "axis", 1)) % max(q.ndim, 1)
        if len(s.shape) != q.ndim or s.shape[axis] != -(-q.shape[axis] // block):
            raise FrontendError(f"blocked DequantizeLinear: scale {list(s.shape)} does not fit data {list(q.shape)} "
                                f"with block_size {block}")
        idx = np.arange(q.shape[axis]) // block
        sa = take(L, n.output[0] + ".blocks", s, axis, idx)
        if zi.ndim == q.ndim:
            zi = np.take(zi, idx, axis=axis)
    elif len(s.shape) == 1 and s.shape[0] > 1 or (len(s.shape) == 1 and q.ndim > 0 and s.shape[0] == 1):
        axis = int(attr(n, "axis", 1)) % max(q.ndim, 1)
        shape = [1] * q.ndim
        shape[axis] = s.shape[0]
        sa = move(L, n, s, tuple(shape))  # type: ignore[assignment]
        if zi.size > 1:
            zi = zi.reshape(shape)
    elif s.shape != ():
        raise FrontendError(f"DequantizeLinear scale of shape {list(s.shape)} (a scalar or 1-D per-axis scale)")
    w = q - zi
    shape = tuple(np.broadcast_shapes(sa.shape, w.shape))
    out = L.out_type(n.output[0], shape)
    if not w.shape:
        w = w.reshape(1)
    return L.b.soma_mul(n.output[0], [sa], [w], sa.scale, (1.0,), out)  # type: ignore[arg-type]


# ---- QLinearMatMul / QGemm / MatMulInteger -------------------------------------------------------------


def _q_params_const(L: Lowerer, n: onnx.NodeProto, ins: list, slots: tuple[int, ...]) -> None:
    for k in slots:
        if k < len(ins) and ins[k] is not None and not is_const(ins[k]):
            raise FrontendError(f"{n.op_type} input {k} ({n.input[k]!r}, a scale or zero point) is computed at run "
                                "time; quantization parameters must be constants in a static spiking graph")


@register("QLinearMatMul")
def qlinear_matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    _q_params_const(L, n, ins, (1, 2, 4, 5, 6, 7))
    a, sa, za, b, sb, zb, sy = ins[:7]
    zy = ins[7] if len(ins) > 7 else None
    A, B = q_input(L, a, sa, za), q_input(L, b, sb, zb)
    out, signed = L.q_type(sy, zy, ())
    if not isinstance(A, Act):
        raise FrontendError("QLinearMatMul with a constant A and an activation B is not supported")
    if len(A.shape) < 2:
        raise FrontendError("QLinearMatMul of a 1-D A is not supported")
    if isinstance(B, Act):
        if len(B.shape) < 2:
            raise FrontendError("QLinearMatMul of a 1-D B is not supported")
        shape = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2])) + (A.shape[-2], B.shape[-1])
        r = matmul_acts(L, A, B, n.output[0], code_type(out.bits, out.scale[0], out.zero_point[0], shape))
    elif B.q.ndim == 2:  # type: ignore[union-attr]
        shape = A.shape[:-1] + (B.q.shape[1],)  # type: ignore[union-attr]
        r = soma_linear(L, n, A, B, None, n.output[0], out=code_type(out.bits, out.scale[0], out.zero_point[0], shape))
    else:
        r = _qlinear_batched_weight(L, n, A, B, out)  # type: ignore[arg-type]
    return [Act(r.name, r.type, True, signed)]


def _qlinear_batched_weight(L: Lowerer, n: onnx.NodeProto, A: Act, B: QWeight, out: CodeType) -> Act:
    """A [..., M, K] @ a constant B [..., K, N] with batch axes (exporters fold projections of constant
    tables into such weights, e.g. DeBERTa's relative-position keys; onnxruntime's quantizer gives them one
    per-tensor scale): one Soma per batch entry with that entry's integer weights, concatenated -- data
    movement around exact integer products, so each entry is what the 2-D lowering computes."""
    q = B.q
    k, nn = q.shape[-2:]
    if B.scale.size != 1 or B.zero_point.size != 1:
        raise FrontendError(f"QLinearMatMul with a constant B of rank {q.ndim} and {B.scale.size} scales "
                            "(a per-tensor scale only when B has batch axes)")
    lead = tuple(np.broadcast_shapes(A.shape[:-2], q.shape[:-2]))
    m = A.shape[-2]
    x: Val = A if A.shape[:-2] == lead else broadcast_to(L, n.output[0] + ".bcast", A, lead + A.shape[-2:])
    qb = np.broadcast_to(q, lead + (k, nn)).reshape((-1, k, nn))
    nb = qb.shape[0]
    xr = move(L, n, x, (nb, m, k))  # type: ignore[arg-type]

    def t(shape: tuple[int, ...]) -> CodeType:
        return code_type(out.bits, out.scale[0], out.zero_point[0], shape)

    parts = [soma_linear(L, n, take(L, n.output[0] + ".batch", xr, 0, np.array([i])),  # type: ignore[arg-type]
                         QWeight(qb[i], B.scale, B.zero_point, None), None, n.output[0], out=t((1, m, nn)))
             for i in range(nb)]
    y = concat_acts(L, n.output[0] + ".batches", parts, 0, t((nb, m, nn)))
    r = move(L, n, y, lead + (m, nn)) if lead != (nb,) else y
    assert isinstance(r, Act)
    return r


@register("QGemm", domain=MS)
def qgemm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    a, sa, za, b, sb, zb = ins[:6]
    c = ins[6] if len(ins) > 6 else None
    sy = ins[7] if len(ins) > 7 else None
    zy = ins[8] if len(ins) > 8 else None
    A = q_input(L, a, sa, za)
    if not isinstance(A, Act) or attr(n, "transA", 0):
        raise FrontendError("QGemm needs a (non-transposed) activation A")
    trans_b = bool(attr(n, "transB", 0))
    bv = b.value if isinstance(b, Const) else None
    if bv is None:
        raise FrontendError("QGemm B must be a constant")
    sv = np.asarray(L.const_value(sb), np.float32).reshape(-1)
    zv = np.asarray(L.const_value(zb)).reshape(-1) if zb is not None else np.zeros(sv.shape, bv.dtype)
    B = QWeight(bv, sv, zv, None if sv.size == 1 else (0 if trans_b else 1))
    if c is not None and isinstance(c, Const) and c.value.dtype.kind in "iu":
        unit = (np.float32(A.scale) * sv).astype(np.float32)
        c = QWeight(c.value, unit, np.zeros(unit.shape, np.int64), None if unit.size == 1 else 0)
    out = None
    signed = False
    if sy is not None:
        t, signed = L.q_type(sy, zy, ())
        n_out = bv.shape[0] if trans_b else bv.shape[1]
        out = code_type(t.bits, t.scale[0], t.zero_point[0], A.shape[:-1] + (n_out,))
    alpha = float(attr(n, "alpha", 1.0))
    r = soma_linear(L, n, A, B, c, n.output[0], out=out, trans_b=trans_b, alpha=alpha)
    return [Act(r.name, r.type, sy is not None, signed)]


def _int_codes(L: Lowerer, stem: str, x: Val, zp: Val | None, what: str) -> tuple[Act, int, int]:
    """A quantized operand's codes viewed as the integers ``q - zp`` (scale 1); with their range."""
    if not (isinstance(x, Act) and x.quantized):
        raise FrontendError(f"MatMulInteger {what} must be an integer tensor (quantized codes), got "
                            f"{type(x).__name__}")
    shift = (1 << (x.type.bits - 1)) if x.signed else 0
    if isinstance(zp, Act) and zp.integer and zp.int_range is not None:
        # a zero point given at run time (an integer input): x - zp by an exact 2-input Soma (broadcast)
        if len(zp.shape) > 0 and int(np.prod(zp.shape)) != 1:
            raise FrontendError(f"MatMulInteger with a per-row/per-column {what} zero point given at run time")
        if zp.shape:
            name = L.b.fresh(stem + ".zp")
            tz = code_type(zp.type.bits, zp.scale, zp.zp, ())
            L.b.add(Reshape(name=name, inputs=(zp.name,), type=tz))
            zp = zp.moved(name, tz)
        xi = retype(L, stem + ".int", x, code_type(x.type.bits, 1.0, shift, x.shape))
        xlo, xhi = -shift, x.type.hi - shift
        lo, hi = xlo - zp.int_range[1], xhi - zp.int_range[0]
        r = int_result(L, stem, [xi, zp], [np.ones(1, np.int64), -np.ones(1, np.int64)], 0, lo, hi, x.shape)
        return r, lo, hi
    if isinstance(zp, DynScale):
        z = x.zp  # DynamicQuantizeLinear's zero point: the code type's own
    else:
        zv = np.zeros((), np.int64) if zp is None else np.asarray(L.const_value(zp, "zero point")).astype(np.int64)
        if zv.size > 1 and not np.all(zv == zv.reshape(-1)[0]):
            raise FrontendError(f"MatMulInteger with a per-row/per-column {what} zero point on an activation")
        z = int(zv.reshape(-1)[0]) + shift
    t = code_type(x.type.bits, 1.0, z, x.shape)
    r = retype(L, stem, x, t)
    return r, -z, x.type.hi - z


@register("MatMulInteger")
def matmul_integer(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    ins = list(ins) + [None] * (4 - len(ins))
    a, b, az, bz = ins[:4]
    for k in (2, 3):
        v = ins[k]
        ok = v is None or is_const(v) or isinstance(v, DynScale) or (
            isinstance(v, Act) and v.integer and (k == 2 or not isinstance(b, Const)))
        if not ok:
            raise FrontendError(f"MatMulInteger zero point {n.input[k]!r} is computed at run time "
                                f"({type(v).__name__}); supported for A, and for B when B is not a constant")
    cons = L.consumers.get(n.output[0], [])
    outputs = {o.name for o in L.model.graph.output}
    if isinstance(a, Act) and a.quantized and not a.integer and isinstance(b, Const) \
            and (az is None or isinstance(az, DynScale)) \
            and cons and all(c.op_type == "Cast" for c in cons) and n.output[0] not in outputs:
        # dynamic quantization: Cast + Mul by the dynamic scale follow (cores.mul_dynamic)
        w = b.value.astype(np.int64)
        if bz is not None:
            zb = np.asarray(L.const_value(bz)).astype(np.int64)
            w = w - (zb.reshape(1, -1) if zb.size > 1 else int(zb.reshape(-1)[0]))
        return [IntAcc(a, w)]
    A, alo, ahi = _int_codes(L, n.output[0] + ".a", a, az, "A")
    if len(A.shape) < 2:
        raise FrontendError("MatMulInteger of a 1-D A is not supported")
    if isinstance(b, Const):
        w = widen_int(b.value).astype(np.int64)
        if w.ndim != 2:
            raise FrontendError(f"MatMulInteger with a constant B of rank {w.ndim} (2-D only)")
        if bz is not None:
            zb = np.asarray(L.const_value(bz)).astype(np.int64)
            w = w - (zb.reshape(1, -1) if zb.size > 1 else int(zb.reshape(-1)[0]))
        lo = int(np.minimum(w * alo, w * ahi).sum(axis=0).min())
        hi = int(np.maximum(w * alo, w * ahi).sum(axis=0).max())
        shape = A.shape[:-1] + (w.shape[1],)
        r = L.b.soma_matmul(n.output[0], A, w, (1.0,), int_type(lo, hi, shape))
        return [Act(r.name, r.type, int_range=(lo, hi))]
    B, blo, bhi = _int_codes(L, n.output[0] + ".b", b, bz, "B")
    if len(B.shape) < 2:
        raise FrontendError("MatMulInteger of a 1-D B is not supported")
    k = A.shape[-1]
    prods = [alo * blo, alo * bhi, ahi * blo, ahi * bhi]
    lo, hi = k * min(prods), k * max(prods)
    shape = tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2])) + (A.shape[-2], B.shape[-1])
    r = L.b.decode_mac(n.output[0], A, B, "matmul", int_type(lo, hi, shape))
    return [Act(r.name, r.type, int_range=(lo, hi))]


# ---- DynamicQuantizeLinear -------------------------------------------------------------------------------


def _const_code(L: Lowerer, stem: str, anchor: Act, code: int, scale: float) -> str:
    """A constant scalar code (``code`` under code<8, scale, 0>) computed from any element of ``anchor``:
    a Soma with weight 0 and bias ``code`` (requantization scale exactly 1)."""
    x = anchor
    if x.shape != (1,):
        flat = L.b.fresh(stem + ".flat")
        n_el = int(np.prod(x.shape)) if x.shape else 1
        t = code_type(x.type.bits, x.scale, x.zp, (n_el,))
        L.b.add(Reshape(name=flat, inputs=(x.name,), type=t))
        x = take(L, stem + ".one", Act(flat, t), 0, np.array([0])) if n_el != 1 else Act(flat, t)
    name = L.b.fresh(stem + ".c")
    t1 = code_type(8, scale, 0, (1,))
    L.b.add(Soma(name=name, inputs=(x.name,), type=t1, weights=(L.b.const(name + ".w", np.zeros(1, np.int64)),),
                 forms=("mul",), bias=L.b.const(name + ".b", np.array([code], np.int64)) if code else None,
                 scale_in=float(np.float32(scale)), scale_w=(1.0,), requant=L.b.requant))
    out = L.b.fresh(stem)
    L.b.add(Reshape(name=out, inputs=(name,), type=code_type(8, scale, 0, ())))
    return out


@register("DynamicQuantizeLinear")
def dynamic_quantize(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Runtime scales cannot exist in a static spiking graph: the scale onnxruntime would compute from each
    input ((max(0,x) - min(0,x)) / 255) is computed once from the calibration range of x."""
    (x,) = ins
    if not isinstance(x, Act):
        raise FrontendError(f"DynamicQuantizeLinear of {type(x).__name__} (an activation is quantized)")
    r = L.stats.range(n.input[0])
    if r is None:
        raise FrontendError(f"no calibration range for {n.input[0]!r}, the input of DynamicQuantizeLinear")
    s, z = dynamic_qparams(*r)
    q = L.b.requant_to(n.output[0], x, code_type(8, s, z, x.shape))
    act = Act(q.name, q.type, True, False)
    outs: list = [act, DynScale(act, np.ones(()), "scale"), DynScale(act, np.zeros(()), "zero_point")]
    graph_out = {o.name for o in L.model.graph.output}
    L.notes.append(f"DynamicQuantizeLinear {n.name or n.output[0]!r}: scale {s:.6g} and zero point {z} fixed "
                   "from calibration (a static spiking graph has no run-time scales)")
    if len(n.output) > 1 and n.output[1] in graph_out:
        name = _const_code(L, n.output[1], act, 1, s)
        outs[1] = Act(name, code_type(8, s, 0, ()))
    if len(n.output) > 2 and n.output[2] in graph_out:
        name = _const_code(L, n.output[2], act, z, 1.0)
        outs[2] = Act(name, code_type(8, 1.0, 0, ()), int_range=(z, z))
    return outs


# ---- QOperator unary ops and Concat ----------------------------------------------------------------------


@register("QLinearSigmoid", "QLinearLeakyRelu", domain=MS)
def qlinear_unary(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x, sx, zx, sy = ins[:4]
    zy = ins[4] if len(ins) > 4 else None
    X = q_input(L, x, sx, zx)
    if not isinstance(X, Act):
        raise FrontendError(f"{n.op_type} of a constant")
    out, signed = L.q_type(sy, zy, X.shape)
    fn, params = ("sigmoid", ()) if n.op_type == "QLinearSigmoid" else ("leaky_relu", (float(attr(n, "alpha", 0.01)),))
    r = L.b.asnc_lut(n.output[0], X, fn, params, out, None)
    return [Act(r.name, r.type, True, signed)]


@register("QLinearConcat", domain=MS)
def qlinear_concat(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    sy, zy = ins[0], ins[1]
    xs = [q_input(L, ins[i], ins[i + 1], ins[i + 2]) for i in range(2, len(ins), 3)]
    if not all(isinstance(x, Act) for x in xs):
        raise FrontendError("QLinearConcat of constants and activations is not supported")
    axis = attr(n, "axis") % len(xs[0].shape)  # type: ignore[union-attr]
    out, signed = L.q_type(sy, zy, ())
    r = concat_acts(L, n.output[0], xs, axis, out)  # type: ignore[arg-type]
    return [Act(r.name, r.type, True, signed)]


# ---- onnxruntime's fused dynamic-quantization MatMuls (com.microsoft) --------------------------------------


def _int_weight(L: Lowerer, n: onnx.NodeProto, b: Val, sb: Val, zb: Val | None) -> QWeight:
    """A constant integer B with its constant scale / zero point (per tensor or per column)."""
    if not (isinstance(b, Const) and b.value.dtype.kind in "iu"):
        raise FrontendError(f"{n.op_type} B must be a constant integer tensor, got {type(b).__name__}")
    w = widen_int(b.value)
    if w.ndim != 2:
        raise FrontendError(f"{n.op_type} with a constant B of rank {w.ndim} (2-D weights only)")
    sv = np.asarray(_const(L, sb, "B scale", n, 1), np.float32).reshape(-1)
    zv = np.zeros(sv.shape, np.int64) if zb is None else widen_int(np.asarray(L.const_value(zb))).astype(np.int64)
    zv = np.broadcast_to(zv.reshape(-1), sv.shape) if zv.size == 1 else zv.reshape(-1)
    if sv.size not in (1, w.shape[1]):
        raise FrontendError(f"{n.op_type} B scale of {sv.size} values for B {list(w.shape)} (per tensor or per column)")
    return QWeight(w, sv, zv, None if sv.size == 1 else 1)


def _bias(L: Lowerer, v: Val | None) -> Const | None:
    return None if v is None else Const(np.asarray(L.const_value(v, "bias"), np.float32))


@register("DynamicQuantizeMatMul", domain=MS)
def dynamic_quantize_matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``DequantizeLinear(DynamicQuantizeLinear(A)) @ dequant(B) + bias`` -- onnxruntime's fusion of the
    dynamic-quantization pattern (inputs A, B, b_scale, b_zero_point, bias; spec ContribOperators.md
    ``DynamicQuantizeMatMul``). A is quantized to uint8 with the scale and zero point onnxruntime would
    compute at run time, fixed from A's calibration range (:func:`common.dynamic_qparams`, as for
    ``DynamicQuantizeLinear``), then one Soma with the model's integer B and the float bias."""
    ins = list(ins) + [None] * (5 - len(ins))
    a, b, sb, zb, bias = ins[:5]
    if not isinstance(a, Act):
        raise FrontendError(f"DynamicQuantizeMatMul A must be an activation, got {type(a).__name__}")
    r = L.stats.range(n.input[0])
    if r is None:
        raise FrontendError(f"no calibration range for {n.input[0]!r}, the input of DynamicQuantizeMatMul")
    s, z = dynamic_qparams(*r)
    aq = L.b.requant_to(n.output[0] + ".a", a, code_type(8, s, z, a.shape)) if not a.type.same_quant(
        code_type(8, s, z, a.shape)) else a
    L.notes.append(f"DynamicQuantizeMatMul {n.name or n.output[0]!r}: A's scale {s:.6g} and zero point {z} fixed "
                   "from calibration (a static spiking graph has no run-time scales)")
    return [soma_linear(L, n, aq.as_float(), _int_weight(L, n, b, sb, zb), _bias(L, bias), n.output[0])]


@register("MatMulIntegerToFloat", domain=MS)
def matmul_integer_to_float(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``(A - a_zp) a_scale @ (B - b_zp) b_scale + bias`` in float (inputs A, B, a_scale, b_scale, a_zero_point,
    b_zero_point, bias; spec ContribOperators.md ``MatMulIntegerToFloat``): onnxruntime's fusion of
    MatMulInteger + Cast + Mul (+ Add). A's codes are read under its (scale, zero point) -- a
    DynamicQuantizeLinear's scale is its calibrated one -- and B is the model's integer weight."""
    ins = list(ins) + [None] * (7 - len(ins))
    a, b, sa, sb, za, zb, bias = ins[:7]
    if not (isinstance(a, Act) and a.quantized):
        raise FrontendError(f"MatMulIntegerToFloat A must be quantized codes, got {type(a).__name__}")
    if isinstance(sa, DynScale):
        if not isinstance(za, DynScale | None) or sa.act.name != a.name:
            raise FrontendError("MatMulIntegerToFloat: A's run-time scale is not its own DynamicQuantizeLinear's")
        x = a.as_float()
    else:
        _q_params_const(L, n, ins, (2, 4))
        xv = q_input(L, a, sa, za)
        assert isinstance(xv, Act)
        x = xv
    if not isinstance(b, Const):
        raise FrontendError("MatMulIntegerToFloat with a B computed at run time is not supported")
    return [soma_linear(L, n, x, _int_weight(L, n, b, sb, zb), _bias(L, bias), n.output[0])]
