"""Convolutions and pooling (vision and audio stems): Conv, ConvInteger, QLinearConv, AveragePool, MaxPool,
GlobalAveragePool / GlobalMaxPool, onnxruntime's QLinearAveragePool / QLinearGlobalAveragePool, and
InstanceNormalization (what exporters write for GroupNorm).

One lowering serves every convolution form (:func:`conv_codes`), in 1, 2 or N spatial dimensions, for every
attribute value ONNX allows (kernel, ``strides``, ``dilations``, ``pads`` / ``auto_pad``, ``group``):

1. **padding** with the code of real 0 (the input's zero point -- exactly what QLinearConv pads with, and what
   a float Conv's zeros quantize to): per padded axis a strip ``Take`` of the input times 0 in a Soma whose
   bias is the code (:func:`pad_codes`), concatenated around it -- no new node kind;
2. **im2col by data movement**: per kernel offset one ``Take`` per spatial axis (strided, dilated indices),
   the offsets concatenated on the channel axis, then one ``Transpose`` to channels-last;
3. **one Soma per group**: the model's integer weights ``[kernel offsets x C_in/group, C_out/group]`` (zero point
   removed), per-output-channel scales, the bias in accumulator units; groups concatenated, transposed back.

Per form only the weights, the bias and the result type differ:

* ``Conv`` with float weights: quantized here, symmetric per output channel at ``weight_bits``
  (:func:`cores.weight_ints`); with ``DequantizeLinear`` weights (a QDQ model): the model's integers and scales
  and its int32 bias exactly, the result in the following QuantizeLinear's type -- so the Soma's ``ort``
  requantization is onnxruntime's QLinearConv (the fusion it applies to a QDQ Conv) to the bit;
* ``QLinearConv``: the model's integers, int32 bias, output (scale, zero point) -- bit-exact with onnxruntime;
* ``Conv`` whose weights are an activation (computed at run time): the same im2col, the weights moved to the
  matmul layout, a DecodeMAC per group;
* ``ConvInteger``: the input's codes viewed as the integers ``x - x_zero_point`` (scale 1), weights
  ``w - w_zero_point``, requantization scale exactly 1: the int32 result exactly, its width from interval
  arithmetic (at most 24 bits: an exact float32 requantization).

Pooling reuses steps 1-2 and keeps each kernel offset's slice separate:

* ``AveragePool``: one multi-input mul-form Soma over the ``K`` slices, ``sum_j w_j(p) * x_j(p)`` with integer
  per-position weights ``lcm / count(p)`` (0 on padding that does not count) and scale ``1 / lcm`` -- exact
  divisors for ``count_include_pad`` 0 or 1, ``ceil_mode`` windows running off the end, dilations; a single
  rounding (the requantization);
* ``MaxPool``: the slices stacked on a new last axis and ``WTAMax`` (a maximum is one of its input codes: no
  rounding); padding is code 0, never larger than a real entry. The ``Indices`` output is refused;
* ``GlobalAveragePool`` / ``GlobalMaxPool``: the spatial axes merged (a Reshape) and a Soma with an all-ones
  column (scale ``1/S``) or a ``WTAMax``;
* ``QLinearAveragePool`` / ``QLinearGlobalAveragePool`` (com.microsoft, NCHW or ``channels_last``): the same Somas
  on the input codes, requantized into the output's (scale, zero point). onnxruntime's kernels round their own
  way (MLAS's global pool scale is ``s_x / (s_y * S)``, the Soma's ``s_x * (1/S) / s_y``), so a code may differ
  by 1, as for QLinearAdd -- measured: 0 of 32 global-pool codes, 0.6 % and 2.8 % of windowed-pool codes;
* ``InstanceNormalization``: the spatial axes merged and :func:`cores.layernorm_core` per (N, C) row, then
  ``scale`` / ``B`` per channel in one Soma.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    broadcast_to,
    concat_acts,
    const_codes,
    int_of,
    int_type,
    is_const,
    move,
    pad_codes,
    q_input,
    retype,
    take,
)
from lasercc.frontends.onnx.cores import bias_units, layernorm_core, weight_ints
from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.nbits import widen_int
from lasercc.frontends.onnx.registry import MS, attr, register
from lasercc.frontends.onnx.values import Act, Const, DynScale, Ids, IntAcc, QWeight, Val, code_type, range_type
from lasercc.ir.nodes import Concat, Reshape, WTAMax
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

# AveragePool's exact per-position divisors share one integer scale 1/lcm(counts); above this many the weights
# become round(2^AVG_FINE_BITS / count) instead (one relative rounding of 2^-AVG_FINE_BITS per weight)
AVG_MAX_LCM = 1 << 14
AVG_FINE_BITS = 14


# ---- geometry: kernel, strides, dilations, pads / auto_pad ------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where each output position reads: ``pads`` before / after per spatial axis, the output sizes."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    out: tuple[int, ...]

    def offsets(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(k) for k in self.kernel)))

    def index(self, d: int, off: int) -> np.ndarray:
        """Indices into the padded axis ``d`` read by kernel offset ``off`` at every output position."""
        return np.arange(self.out[d]) * self.strides[d] + off * self.dilations[d]


def _ints_attr(n: onnx.NodeProto, name: str, nd: int, default: int) -> tuple[int, ...]:
    v = attr(n, name, None)
    vals = tuple(int(x) for x in v) if v is not None and len(v) else (default,) * nd
    if len(vals) != nd:
        raise FrontendError(f"{n.op_type} {name} {list(vals)} has {len(vals)} values for {nd} spatial axes")
    return vals


def window(n: onnx.NodeProto, spatial: tuple[int, ...], kernel: tuple[int, ...], ceil_mode: bool = False) -> Window:
    """The window of a Conv / pooling node over input ``spatial`` sizes (ONNX's output-size formulas; SAME_*
    pads split ``total // 2`` on the light side, as onnxruntime does)."""
    nd = len(spatial)
    if len(kernel) != nd or any(k < 1 for k in kernel):
        raise FrontendError(f"{n.op_type} kernel {list(kernel)} does not fit {nd} spatial axes")
    strides = _ints_attr(n, "strides", nd, 1)
    dil = _ints_attr(n, "dilations", nd, 1)
    if any(s < 1 for s in strides) or any(d < 1 for d in dil):
        raise FrontendError(f"{n.op_type} strides {list(strides)} and dilations {list(dil)} must be positive")
    pads = list(_ints_attr(n, "pads", 2 * nd, 0))
    auto_pad = attr(n, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for d in range(nd):
            want = -(-spatial[d] // strides[d])
            total = max((want - 1) * strides[d] + span[d] - spatial[d], 0)
            small, big = total // 2, total - total // 2
            pads[d], pads[nd + d] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    elif auto_pad != "NOTSET":
        raise FrontendError(f"{n.op_type} auto_pad {auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if any(p < 0 for p in pads):
        raise FrontendError(f"{n.op_type} with negative pads {pads}")
    out = []
    for d in range(nd):
        room = spatial[d] + pads[d] + pads[nd + d] - span[d]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-spatial[d] // strides[d])
        elif ceil_mode:
            o = -(-room // strides[d]) + 1
            if (o - 1) * strides[d] >= spatial[d] + pads[d]:  # a last window starting in the end padding: dropped
                o -= 1
        else:
            o = room // strides[d] + 1
        if room < 0 or o <= 0:
            raise FrontendError(f"{n.op_type} kernel {list(kernel)} (dilations {list(dil)}) is larger than the "
                                f"padded input {list(spatial)} + pads {pads}")
        out.append(o)
    return Window(tuple(kernel), strides, dil, tuple(pads[:nd]), tuple(pads[nd:]), tuple(out))


# ---- padding and windows as data movement ----------------------------------------------------------------------


def _padded(L: Lowerer, stem: str, x: Act, win: Window, code: int, extra: tuple[int, ...] | None = None) -> Act:
    """x with the window's pads (plus ``extra`` after each axis: ceil_mode windows) of ``code``."""
    nd = len(win.kernel)
    for d in range(nd):
        after = win.after[d] + (extra[d] if extra else 0)
        if win.before[d] or after:
            x = pad_codes(L, stem + ".padded", x, 2 + d, win.before[d], after, code)
    return x


def _slices(L: Lowerer, stem: str, x: Act, win: Window) -> list[Act]:
    """Per kernel offset, the [N, C, out...] slice of the (padded) input it reads: one Take per spatial axis
    whose indices are not already the identity."""
    parts = []
    for off in win.offsets():
        xo = x
        for d, o in enumerate(off):
            idx = win.index(d, o)
            if idx.size != xo.shape[2 + d] or np.any(idx != np.arange(idx.size)):
                xo = take(L, stem + ".im2col", xo, 2 + d, idx)
        parts.append(xo)
    return parts


def _overhang(win: Window, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """How far the last window reaches past the padded input on each axis (ceil_mode)."""
    return tuple(max(0, int(win.index(d, win.kernel[d] - 1)[-1]) + 1 - (spatial[d] + win.before[d] + win.after[d]))
                 for d in range(len(spatial)))


# ---- the convolution core ----------------------------------------------------------------------------------------


def conv_codes(L: Lowerer, n: onnx.NodeProto, x: Act, q: np.ndarray, sw: np.ndarray, bias: np.ndarray | None,
               out: CodeType, group: int) -> Act:
    """``conv(x, q)`` with integer weights ``q`` [C_out, C_in/group, k...] (zero point removed), per-output-channel
    weight scales ``sw`` (one or C_out), ``bias`` in accumulator units (C_out, or None), the result in ``out``'s
    (per-tensor) quantization: padding with x's zero point, im2col, one Soma per group (module docstring)."""
    rank = len(x.shape)
    k = tuple(int(d) for d in q.shape[2:])
    nd = len(k)
    c_out, cin_g = int(q.shape[0]), int(q.shape[1])
    if rank != nd + 2 or group < 1 or cin_g * group != x.shape[1] or c_out % group:
        raise FrontendError(f"{n.op_type} weights {list(q.shape)} (group {group}) do not fit input {list(x.shape)}")
    win = window(n, x.shape[2:], k)
    xt = _im2col_last(L, n, x, win)
    inv = tuple(int(i) for i in np.argsort((0, *range(2, rank), 1)))
    n_off = int(np.prod(k))
    cout_g = c_out // group
    sw = np.broadcast_to(np.asarray(sw, np.float32).reshape(-1), (c_out,)) if np.size(sw) > 1 else \
        np.asarray(sw, np.float32).reshape(1)
    lead = xt.shape[:-1]
    outs = []
    for g in range(group):
        # columns of this group: offset-major, then its C_in/group channels
        cols_g = (np.arange(n_off)[:, None] * x.shape[1] + g * cin_g + np.arange(cin_g)[None, :]).reshape(-1)
        xg = xt if group == 1 else take(L, n.output[0] + f".g{g}", xt, rank - 1, cols_g)
        wg = q[g * cout_g:(g + 1) * cout_g]
        w2 = wg.transpose(*range(2, 2 + nd), 1, 0).reshape(-1, cout_g)  # [kernel offsets x C_in/group, C_out/g]
        sl = slice(g * cout_g, (g + 1) * cout_g) if sw.size > 1 else slice(0, 1)
        b = None if bias is None else bias[g * cout_g:(g + 1) * cout_g]
        outs.append(L.b.soma_matmul(n.output[0] + (f".g{g}" if group > 1 else ""), xg, w2,
                                    tuple(float(s) for s in sw[sl]), with_shape(out, lead + (cout_g,)), b))
    y = outs[0] if group == 1 else concat_acts(L, n.output[0] + ".groups", outs, rank - 1,
                                               with_shape(out, lead + (c_out,)))
    r = move(L, n, y, tuple(y.shape[p] for p in inv), inv)
    assert isinstance(r, Act)
    return r


def _conv_weights(L: Lowerer, w: Val) -> tuple[np.ndarray, np.ndarray]:
    """A Conv weight [C_out, C_in/group, k...] as integers (zero point removed) and per-output-channel scales:
    a ``DequantizeLinear`` weight's own integers (per tensor or along axis 0), else the float weight quantized
    symmetric per output channel (:func:`cores.weight_ints` on the [C_in/group x k, C_out] view)."""
    if isinstance(w, QWeight):
        shape = w.q.shape
        if len(shape) < 3:
            raise FrontendError(f"Conv weight of shape {list(shape)}: needs [C_out, C_in/group, kernel...]")
        if w.scale.size == 1 or w.axis == 0:
            q2 = QWeight(w.q.reshape(shape[0], -1).T, w.scale.reshape(-1), w.zero_point.reshape(-1),
                         None if w.scale.size == 1 else 1)
            q, sw = weight_ints(L, q2, "Conv weight")
            return q.astype(np.int64).T.reshape(shape), np.asarray(sw, np.float32)  # conv_codes works in int64
    if not isinstance(w, Const | QWeight):
        raise FrontendError(f"Conv weight is a {type(w).__name__}; only constant weights have a spiking form "
                            "(synaptic weights are fixed when the program is built)")
    real = np.asarray(L.const_value(w), np.float64)
    if real.ndim < 3:
        raise FrontendError(f"Conv weight of shape {list(real.shape)}: needs [C_out, C_in/group, kernel...]")
    q, sw = weight_ints(L, Const(real.reshape(real.shape[0], -1).T), "Conv weight")
    return q.T.reshape(real.shape), np.asarray(sw, np.float32)


def _activation(n: onnx.NodeProto, x: Val | None, what: str = "X") -> Act:
    if isinstance(x, Act) and not x.integer:
        return x
    if isinstance(x, Ids) or (isinstance(x, Act) and x.integer):
        raise FrontendError(f"{n.op_type} of integer data computed from graph inputs (value class b) is not "
                            "supported; cast it to float in the model")
    raise FrontendError(f"{n.op_type} input {what} is a {type(x).__name__}; it must be an activation")


def _kernel_of(n: onnx.NodeProto, wshape: tuple[int, ...]) -> None:
    ks = attr(n, "kernel_shape", None)
    if ks is not None and len(ks) and tuple(int(v) for v in ks) != tuple(wshape[2:]):
        raise FrontendError(f"{n.op_type} kernel_shape {list(ks)} differs from the weight's {list(wshape[2:])}")


def _im2col_last(L: Lowerer, n: onnx.NodeProto, x: Act, win: Window) -> Act:
    """x padded with its zero point, one slice per kernel offset concatenated on channels, channels last:
    [N, out..., offsets x C] (offset-major)."""
    rank = len(x.shape)
    xp = _padded(L, n.output[0], x, win, x.zp)
    parts = _slices(L, n.output[0], xp, win)
    cols = concat_acts(L, n.output[0] + ".cols", parts, 1, xp.type) if len(parts) > 1 else parts[0]
    perm = (0, *range(2, rank), 1)
    xt = move(L, n, cols, tuple(cols.shape[p] for p in perm), perm)
    assert isinstance(xt, Act)
    return xt


def _conv_by_activation(L: Lowerer, n: onnx.NodeProto, x: Act, w: Act, bias: Val | None) -> Act:
    """Conv whose weights are an activation (computed at run time): the same im2col of x, the weights moved to
    [offsets x C_in/group, C_out/group] per group (Take, Transpose, Reshape), one DecodeMAC matmul per group
    (exact integer products, one requantization); a constant bias is added by one more Soma (the product is
    then carried at ``internal_bits`` over the range the calibrated output minus the bias implies)."""
    rank = len(x.shape)
    c_out, cin_g = w.shape[0], w.shape[1]
    k = tuple(w.shape[2:])
    nd = len(k)
    group = int(attr(n, "group", 1))
    if rank != nd + 2 or group < 1 or cin_g * group != x.shape[1] or c_out % group:
        raise FrontendError(f"Conv weights {list(w.shape)} (group {group}) do not fit input {list(x.shape)}")
    _kernel_of(n, w.shape)
    if bias is not None and not is_const(bias):
        raise FrontendError("Conv bias computed at run time is not supported (it must be a constant)")
    win = window(n, x.shape[2:], k)
    xt = _im2col_last(L, n, x, win)
    lead = xt.shape[:-1]
    p_flat = (x.shape[0], int(np.prod(win.out)))
    out = L.out_type(n.output[0], (x.shape[0], c_out, *win.out))
    bv = None if bias is None else np.broadcast_to(np.asarray(L.const_value(bias), np.float64).reshape(-1), (c_out,))
    prod_t = out
    if bv is not None and np.any(bv):
        lo, hi = out.scale[0] * (out.lo - out.zero_point[0]), out.scale[0] * (out.hi - out.zero_point[0])
        prod_t = range_type(lo - float(bv.max()), hi - float(bv.min()), max(L.opts.internal_bits, out.bits), ())
    cout_g = c_out // group
    n_off = int(np.prod(k))
    outs = []
    for g in range(group):
        cols_g = (np.arange(n_off)[:, None] * x.shape[1] + g * cin_g + np.arange(cin_g)[None, :]).reshape(-1)
        xg = xt if group == 1 else take(L, n.output[0] + f".g{g}", xt, rank - 1, cols_g)
        xg2 = move(L, n, xg, p_flat + (n_off * cin_g,))
        wg = w if group == 1 else take(L, n.output[0] + f".w{g}", w, 0, np.arange(g * cout_g, (g + 1) * cout_g))
        wperm = (*range(2, 2 + nd), 1, 0)
        wt = move(L, n, wg, tuple(wg.shape[p] for p in wperm), wperm)
        w2 = move(L, n, wt, (n_off * cin_g, cout_g))
        assert isinstance(xg2, Act) and isinstance(w2, Act)
        outs.append(L.b.decode_mac(n.output[0] + (f".g{g}" if group > 1 else ""), xg2, w2, "matmul",
                                   with_shape(prod_t, p_flat + (cout_g,))))
    y = outs[0] if group == 1 else \
        concat_acts(L, n.output[0] + ".groups", outs, 2, with_shape(prod_t, p_flat + (c_out,)))
    if prod_t is not out:
        assert bv is not None
        y = L.b.affine_const(n.output[0] + ".bias", y, None, bv, with_shape(out, y.shape))
    yl = move(L, n, y, lead + (c_out,))
    inv = tuple(int(i) for i in np.argsort((0, *range(2, rank), 1)))
    assert isinstance(yl, Act)
    r = move(L, n, yl, tuple(yl.shape[p] for p in inv), inv)
    assert isinstance(r, Act)
    return r


@register("Conv")
def conv(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Float or QDQ Conv with constant weights (module docstring); weights computed at run time: a DecodeMAC."""
    x = _activation(n, ins[0])
    w = ins[1]
    if isinstance(w, Act) and not w.integer:
        return [_conv_by_activation(L, n, x, w, ins[2] if len(ins) > 2 else None)]
    q, sw = _conv_weights(L, w)
    _kernel_of(n, q.shape)
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None and not is_const(bias):
        raise FrontendError("Conv bias computed at run time is not supported (it must be a constant)")
    b = bias_units(L, bias, x.scale, tuple(float(s) for s in sw), int(q.shape[0]))
    group = int(attr(n, "group", 1))
    # the result's shape first (the calibrated type only depends on the tensor's name)
    win = window(n, x.shape[2:], tuple(q.shape[2:]))
    out = L.out_type(n.output[0], (x.shape[0], int(q.shape[0]), *win.out))
    return [conv_codes(L, n, x, q, sw, b, out, group)]


@register("QLinearConv")
def qlinear_conv(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """QLinearConv: the model's integer weights and int32 bias, output in (y_scale, y_zero_point)."""
    for k in (1, 2, 4, 5, 6, 7):
        if k < len(ins) and ins[k] is not None and not is_const(ins[k]):
            raise FrontendError(f"QLinearConv input {k} ({n.input[k]!r}, a scale or zero point) is computed at run "
                                "time; quantization parameters must be constants in a static spiking graph")
    x, sx, zx, w, sw, zw, sy, zy = ins[:8]
    bias = ins[8] if len(ins) > 8 else None
    X = q_input(L, x, sx, zx)
    if not isinstance(X, Act) or not isinstance(w, Const):
        raise FrontendError("QLinearConv needs an activation x and constant integer weights w")
    wv = widen_int(w.value).astype(np.int64)
    _kernel_of(n, wv.shape)
    if wv.ndim < 3:
        raise FrontendError(f"QLinearConv weight of shape {list(wv.shape)}: needs [C_out, C_in/group, kernel...]")
    c_out = wv.shape[0]
    svw = np.asarray(L.const_value(sw), np.float32).reshape(-1)
    zvw = np.zeros(1, np.int64) if zw is None else widen_int(np.asarray(L.const_value(zw))).astype(np.int64).reshape(-1)
    if svw.size not in (1, c_out) or zvw.size not in (1, c_out):
        raise FrontendError(f"QLinearConv weight scale ({svw.size}) / zero point ({zvw.size}) must be per tensor or "
                            f"per output channel ({c_out})")
    q = wv - zvw.reshape((-1,) + (1,) * (wv.ndim - 1))
    bv = None
    if bias is not None:
        bv = np.broadcast_to(np.asarray(L.const_value(bias, "bias")).astype(np.int64).reshape(-1), (c_out,)).copy()
    out, signed = L.q_type(sy, zy, ())
    r = conv_codes(L, n, X, q, svw, bv, out, int(attr(n, "group", 1)))
    return [Act(r.name, r.type, True, signed)]


@register("ConvInteger")
def conv_integer(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """ConvInteger: exact int32 ``conv(x - x_zero_point, w - w_zero_point)`` (module docstring)."""
    ins = list(ins) + [None] * (4 - len(ins))
    x, w, xz, wz = ins[:4]
    if isinstance(xz, DynScale) and xz.what == "zero_point" and isinstance(x, Act) and isinstance(w, Const):
        dyn = _dynamic_conv(L, n, x, w, wz)
        if dyn is not None:
            return [dyn]
    for k in (2, 3):
        if ins[k] is not None and not is_const(ins[k]):
            raise FrontendError(f"ConvInteger zero point {n.input[k]!r} is computed at run time; it must be a "
                                "constant (or DynamicQuantizeLinear's, followed by Cast and Mul by its scale)")
    if not (isinstance(x, Act) and x.quantized):
        raise FrontendError(f"ConvInteger input x must be an 8-bit integer tensor (quantized codes), got "
                            f"{type(x).__name__}")
    if not isinstance(w, Const) or np.asarray(w.value).dtype.kind not in "iu":
        raise FrontendError("ConvInteger needs constant integer weights")
    shift = (1 << (x.type.bits - 1)) if x.signed else 0
    zx = np.zeros(1, np.int64) if xz is None else np.asarray(L.const_value(xz)).astype(np.int64).reshape(-1)
    if zx.size != 1:
        raise FrontendError("ConvInteger x_zero_point must be a scalar")
    z = int(zx[0]) + shift
    X = retype(L, n.output[0] + ".x", x, code_type(x.type.bits, 1.0, z, x.shape))
    wv = widen_int(w.value).astype(np.int64)
    _kernel_of(n, wv.shape)
    zw = np.zeros(1, np.int64) if wz is None else widen_int(np.asarray(L.const_value(wz))).astype(np.int64).reshape(-1)
    if zw.size not in (1, wv.shape[0]):
        raise FrontendError(f"ConvInteger w_zero_point of {zw.size} values for {wv.shape[0]} output channels")
    q = wv - zw.reshape((-1,) + (1,) * (wv.ndim - 1))
    alo, ahi = -z, x.type.hi - z
    flat = q.reshape(q.shape[0], -1)
    lo = int(min(0, np.minimum(flat * alo, flat * ahi).sum(axis=1).min()))
    hi = int(max(0, np.maximum(flat * alo, flat * ahi).sum(axis=1).max()))
    group = int(attr(n, "group", 1))
    win = window(n, x.shape[2:], tuple(q.shape[2:]))
    out = int_type(lo, hi, (x.shape[0], q.shape[0], *win.out))
    r = conv_codes(L, n, X, q, np.ones(1, np.float32), None, out, group)
    return [Act(r.name, r.type, int_range=(lo, hi))]


def _dynamic_conv(L: Lowerer, n: onnx.NodeProto, x: Act, w: Const, wz: Val | None) -> IntAcc | None:
    """quantize_dynamic's Conv: DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul(x_scale * w_scale). The
    accumulator stays symbolic (:class:`IntAcc`: the im2col columns, channels last, and the [offsets x C_in,
    C_out] weights; groups as a block-diagonal matrix) until the Mul gives its scale (:func:`cores.mul_dynamic`:
    one Soma, then the Transpose back to NC...). None when the result is read otherwise (then exact int32)."""
    cons = L.consumers.get(n.output[0], [])
    if not cons or any(c.op_type != "Cast" for c in cons) or n.output[0] in {o.name for o in L.model.graph.output}:
        return None
    wv = widen_int(w.value).astype(np.int64)
    _kernel_of(n, wv.shape)
    zw = np.zeros(1, np.int64) if wz is None else widen_int(np.asarray(L.const_value(wz))).astype(np.int64).reshape(-1)
    if zw.size not in (1, wv.shape[0]) or wv.ndim < 3:
        raise FrontendError(f"ConvInteger weights {list(wv.shape)} / zero point of {zw.size} values")
    q = wv - zw.reshape((-1,) + (1,) * (wv.ndim - 1))
    group = int(attr(n, "group", 1))
    c_out, cin_g = q.shape[0], q.shape[1]
    if len(x.shape) != q.ndim or group < 1 or cin_g * group != x.shape[1] or c_out % group:
        raise FrontendError(f"ConvInteger weights {list(q.shape)} (group {group}) do not fit input {list(x.shape)}")
    win = window(n, x.shape[2:], tuple(q.shape[2:]))
    xt = _im2col_last(L, n, x, win)
    n_off, cout_g = int(np.prod(q.shape[2:])), c_out // group
    w2 = np.zeros((n_off, x.shape[1], c_out), np.int64)  # block-diagonal over groups
    for g in range(group):
        wg = q[g * cout_g:(g + 1) * cout_g]
        w2[:, g * cin_g:(g + 1) * cin_g, g * cout_g:(g + 1) * cout_g] = \
            wg.transpose(*range(2, q.ndim), 1, 0).reshape(n_off, cin_g, cout_g)
    rank = len(x.shape)
    inv = tuple(int(i) for i in np.argsort((0, *range(2, rank), 1)))
    return IntAcc(xt, w2.reshape(n_off * x.shape[1], c_out), layout=inv, source=x.name)


# ---- pooling ----------------------------------------------------------------------------------------------------


def _pool_window(n: onnx.NodeProto, x: Act) -> Window:
    ks = attr(n, "kernel_shape", None)
    if ks is None or len(ks) != len(x.shape) - 2:
        raise FrontendError(f"{n.op_type} needs kernel_shape with one entry per spatial axis of {list(x.shape)}")
    return window(n, x.shape[2:], tuple(int(v) for v in ks), bool(attr(n, "ceil_mode", 0)))


def _counts(win: Window, spatial: tuple[int, ...], include_pad: bool) -> list[np.ndarray]:
    """Per kernel offset, a [out...] 0/1 array: does this window position count (real input, or padding when
    ``include_pad``; never the overhang of a ceil_mode window past the padded input)?"""
    nd = len(spatial)
    res = []
    for off in win.offsets():
        m = np.ones(win.out, bool)
        for d in range(nd):
            i = win.index(d, off[d])
            lo, hi = (0, spatial[d] + win.before[d] + win.after[d]) if include_pad else \
                (win.before[d], win.before[d] + spatial[d])
            ok = (i >= lo) & (i < hi)
            shape = [1] * nd
            shape[d] = win.out[d]
            m = m & ok.reshape(shape)
        res.append(m)
    return res


@register("AveragePool")
def average_pool(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Mean over each window: one multi-input Soma with per-position integer weights (module docstring)."""
    x = _activation(n, ins[0])
    return [_avg_pool(L, n, x, None)]


def _avg_pool(L: Lowerer, n: onnx.NodeProto, x: Act, out: CodeType | None) -> Act:
    """AveragePool of ``x`` into ``out``'s quantization (None: the calibrated type of the node's output)."""
    win = _pool_window(n, x)
    spatial = x.shape[2:]
    xp = _padded(L, n.output[0], x, win, x.zp, _overhang(win, spatial))
    parts = _slices(L, n.output[0], xp, win)
    valid = _counts(win, spatial, bool(attr(n, "count_include_pad", 0)))
    count = np.sum(valid, axis=0)
    if np.any(count == 0):
        raise FrontendError(f"{n.op_type}: a window covers only padding (pads {list(win.before + win.after)} are "
                            f"not smaller than the kernel {list(win.kernel)})")
    lcm = math.lcm(*(int(c) for c in np.unique(count)))
    if lcm <= AVG_MAX_LCM:
        per, sw = (lcm // count).astype(np.int64), 1.0 / lcm
    else:
        per, sw = np.rint((1 << AVG_FINE_BITS) / count).astype(np.int64), 2.0 ** -AVG_FINE_BITS
    shape1 = (1, 1, *win.out)
    ws = [np.where(v, per, 0).reshape(shape1) for v in valid]
    if all(np.all(w == w.reshape(-1)[0]) for w in ws):
        ws = [w.reshape(-1)[:1] for w in ws]
    keep = [(p, w) for p, w in zip(parts, ws) if np.any(w)]
    out = L.out_type(n.output[0], parts[0].shape) if out is None else with_shape(out, parts[0].shape)
    return L.b.soma_mul(n.output[0], [p for p, _ in keep], [w for _, w in keep], x.scale, (sw,), out)


def _stack_max(L: Lowerer, stem: str, parts: list[Act]) -> Act:
    """The elementwise maximum of same-type slices: stacked on a new last axis, WTAMax over it."""
    if len(parts) == 1:
        return parts[0]
    t0 = parts[0].type
    shape1 = parts[0].shape + (1,)
    views = []
    for p in parts:
        name = L.b.fresh(stem + ".slot")
        tv = code_type(t0.bits, t0.scale[0], t0.zero_point[0], shape1)
        L.b.add(Reshape(name=name, inputs=(p.name,), type=tv))
        views.append(name)
    name = L.b.fresh(stem + ".stack")
    ts = code_type(t0.bits, t0.scale[0], t0.zero_point[0], parts[0].shape + (len(parts),))
    L.b.add(Concat(name=name, inputs=tuple(views), type=ts, axis=len(shape1) - 1))
    m = L.b.fresh(stem + ".max")
    tm = code_type(t0.bits, t0.scale[0], t0.zero_point[0], shape1)
    L.b.add(WTAMax(name=m, inputs=(name,), type=tm, axis=len(shape1) - 1))
    r = L.b.fresh(stem)
    tr = code_type(t0.bits, t0.scale[0], t0.zero_point[0], parts[0].shape)
    L.b.add(Reshape(name=r, inputs=(m,), type=tr))
    return parts[0].moved(r, tr)


@register("MaxPool")
def max_pool(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Maximum over each window (WTAMax over the stacked window slots); padding is code 0 (module docstring)."""
    if len(n.output) > 1 and n.output[1]:
        raise FrontendError("MaxPool's Indices output (flat positions of the maxima) is not supported")
    if int(attr(n, "storage_order", 0)):
        raise FrontendError("MaxPool storage_order=1 only changes the Indices output, which is not supported")
    x = int_of(L, n.output[0] + ".int", ins[0]) if isinstance(ins[0], Ids) else ins[0]
    if not isinstance(x, Act):
        raise FrontendError(f"MaxPool input is a {type(x).__name__}; it must be an activation")
    win = _pool_window(n, x)
    spatial = x.shape[2:]
    xp = _padded(L, n.output[0], x, win, x.type.lo, _overhang(win, spatial))
    valid = _counts(win, spatial, include_pad=False)
    if np.any(np.sum(valid, axis=0) == 0):
        raise FrontendError(f"MaxPool: a window covers only padding (pads {list(win.before + win.after)}, kernel "
                            f"{list(win.kernel)})")
    return [_stack_max(L, n.output[0], _slices(L, n.output[0], xp, win))]


def _merged_spatial(L: Lowerer, n: onnx.NodeProto, x: Act) -> Act:
    if len(x.shape) < 3:
        raise FrontendError(f"{n.op_type} needs an [N, C, spatial...] input, got {list(x.shape)}")
    r = move(L, n, x, (x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))))
    assert isinstance(r, Act)
    return r


@register("GlobalAveragePool", "GlobalMaxPool")
def global_pool(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    x = ins[0]
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} input is a {type(x).__name__}; it must be an activation")
    final = x.shape[:2] + (1,) * (len(x.shape) - 2)
    xf = _merged_spatial(L, n, x)
    if n.op_type == "GlobalMaxPool":
        name = L.b.fresh(n.output[0] + ".max")
        t = with_shape(xf.type, xf.shape[:2] + (1,))
        L.b.add(WTAMax(name=name, inputs=(xf.name,), type=t, axis=2))
        y = xf.moved(name, t)
    else:
        y = _global_avg(L, n, xf, L.out_type(n.output[0], xf.shape[:2] + (1,)))
    r = move(L, n, y, final)
    return [r]


def _global_avg(L: Lowerer, n: onnx.NodeProto, xf: Act, out: CodeType) -> Act:
    """The mean over the last axis of [N, C, S]: a Soma with an all-ones column, scale 1/S."""
    s = xf.shape[-1]
    return L.b.soma_matmul(n.output[0], xf, np.ones((s, 1), np.int64), (1.0 / s,), with_shape(out, xf.shape[:2] + (1,)))


# ---- onnxruntime's QOperator pooling (com.microsoft) ------------------------------------------------------------


def _q_pool_input(L: Lowerer, n: onnx.NodeProto, ins: list) -> tuple[Act, CodeType, bool, tuple[int, ...] | None]:
    """(X as codes in NC... layout, the output code type, signed, the permutation back to NHWC or None)."""
    for k in range(1, 5):
        if k < len(ins) and ins[k] is not None and not is_const(ins[k]):
            raise FrontendError(f"{n.op_type} input {k} ({n.input[k]!r}, a scale or zero point) is computed at run "
                                "time; quantization parameters must be constants in a static spiking graph")
    x = q_input(L, ins[0], ins[1], ins[2] if len(ins) > 2 else None)
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} needs an activation input")
    out, signed = L.q_type(ins[3], ins[4] if len(ins) > 4 else None, ())
    back = None
    if int(attr(n, "channels_last", 0)) and len(x.shape) > 2:
        rank = len(x.shape)
        perm = (0, rank - 1, *range(1, rank - 1))
        moved = move(L, n, x, tuple(x.shape[p] for p in perm), perm)
        assert isinstance(moved, Act)
        x, back = moved, tuple(int(i) for i in np.argsort(perm))
    return x, out, signed, back


def _q_result(L: Lowerer, n: onnx.NodeProto, y: Act, signed: bool, back: tuple[int, ...] | None) -> Act:
    if back is not None:
        moved = move(L, n, y, tuple(y.shape[p] for p in back), back)
        assert isinstance(moved, Act)
        y = moved
    return Act(y.name, y.type, True, signed)


@register("QLinearAveragePool", domain=MS)
def qlinear_average_pool(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """onnxruntime's QLinearAveragePool: AveragePool's Soma on the codes, requantized into (y_scale, y_zero_point)
    (NHWC with ``channels_last``)."""
    x, out, signed, back = _q_pool_input(L, n, ins)
    return [_q_result(L, n, _avg_pool(L, n, x, out), signed, back)]


@register("QLinearGlobalAveragePool", domain=MS)
def qlinear_global_average_pool(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """onnxruntime's QLinearGlobalAveragePool: the all-ones Soma on the codes, requantized into (y_scale, y_zp)."""
    x, out, signed, back = _q_pool_input(L, n, ins)
    xf = _merged_spatial(L, n, x)
    y = _global_avg(L, n, xf, out)
    r = move(L, n, y, x.shape[:2] + (1,) * (len(x.shape) - 2))
    assert isinstance(r, Act)
    return [_q_result(L, n, r, signed, back)]


# ---- InstanceNormalization (GroupNorm's export) -----------------------------------------------------------------


@register("InstanceNormalization", sampled=(0,))
def instance_norm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Normalise each (N, C) row over the spatial axes (:func:`cores.layernorm_core` on the merged view),
    then ``scale[c] * y + B[c]`` in one Soma."""
    x = _activation(n, ins[0])
    if len(x.shape) < 3:
        raise FrontendError(f"InstanceNormalization needs an [N, C, spatial...] input, got {list(x.shape)}")
    scale = ins[1] if len(ins) > 1 else None
    b = ins[2] if len(ins) > 2 else None
    c = x.shape[1]
    xf = _merged_spatial(L, n, x)
    samples = L.stats.values(n.input[0])
    if samples is not None:
        samples = np.asarray(samples).reshape(-1, xf.shape[-1])
    out = L.out_type(n.output[0], xf.shape)
    eps = float(attr(n, "epsilon", 1e-5))
    nrm = layernorm_core(L, n.output[0] + ".norm", xf, None, None, eps, None, samples)
    if is_const(scale) and is_const(b):
        sv = np.broadcast_to(np.asarray(L.const_value(scale), np.float64).reshape(-1), (c,))
        bv = np.broadcast_to(np.asarray(L.const_value(b), np.float64).reshape(-1), (c,))
        y = L.b.affine_const(n.output[0], nrm, sv.reshape(c, 1), bv.reshape(c, 1) if np.any(bv) else None, out)
    else:
        y = _affine_by_activations(L, n, nrm, scale, b, out)
    r = move(L, n, y, x.shape)
    return [r]


def _affine_by_activations(L: Lowerer, n: onnx.NodeProto, nrm: Act, scale: Val | None, b: Val | None,
                           out: CodeType) -> Act:
    """``nrm * scale[c] + B[c]`` with scale / B fed at run time ([C] activations): a DecodeMAC product (carried at
    ``internal_bits`` over the range the operands' types bound) and a two-input Soma."""
    c = nrm.shape[1]
    vals = []
    for v, what in ((scale, "scale"), (b, "B")):
        if is_const(v):
            v = Act(*_const_act(L, n, nrm, v, what))
        if not isinstance(v, Act) or v.integer or int(np.prod(v.shape)) != c:
            raise FrontendError(f"InstanceNormalization {what} must be a constant or a float activation of {c} values")
        col = move(L, n, v, (c, 1))
        assert isinstance(col, Act)
        vals.append(col)
    sc, bb = vals

    def span(a: Act) -> float:
        return max(abs(a.scale * (a.type.lo - a.zp)), abs(a.scale * (a.type.hi - a.zp)))

    m = span(nrm) * span(sc)
    p = L.b.decode_mac(n.output[0] + ".scaled", nrm, sc, "mul",
                       range_type(-m, m, max(L.opts.internal_bits, out.bits), nrm.shape, symmetric=True))
    return L.b.add_acts(n.output[0], p, broadcast_to(L, n.output[0] + ".B", bb, nrm.shape), 1, out)


def _const_act(L: Lowerer, n: onnx.NodeProto, like: Act, v: Val | None, what: str) -> tuple[str, CodeType]:
    """A constant scale / B as codes (:func:`common.const_codes`) so it can meet the activation one."""
    a = np.asarray(L.const_value(v, what), np.float64).reshape(-1)
    lo, hi = float(a.min()), float(a.max())
    r = const_codes(L, n.output[0] + f".{what}", like, a, range_type(lo, hi, L.opts.internal_bits, a.shape))
    return r.name, r.type
