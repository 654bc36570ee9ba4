"""Resize (opsets 10-19) and Upsample (opsets 7-9): interpolation of an activation, from the op's semantics.

Every mode ONNX defines is separable: output position ``p`` along a resized axis ``d`` reads a few input positions
(taps) with fixed real weights -- one tap for ``nearest``, two for ``linear``, four for ``cubic`` -- and the N-D
result is the sum over every combination of per-axis taps of the product of their weights. Both the indices and
the weights depend only on the shapes and the attributes, never on the data, so on an activation:

* ``nearest``: one Take per resized axis (data movement, exact: the codes are copied);
* ``linear`` / ``cubic``: per tap combination, the input gathered by one Take per resized axis, and one
  multi-input mul-form Soma ``sum_t w_t(p) * x_t(p)`` with integer per-position weights ``round(w * 2^14)``
  (scale ``2^-14``) -- a single rounding, the requantization, as AveragePool's Soma.

The per-axis geometry follows the ONNX operator text: ``coordinate_transformation_mode`` (half_pixel,
half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, tf_crop_and_resize with
``roi`` and ``extrapolation_value``), ``nearest_mode`` (round_prefer_floor, round_prefer_ceil, floor, ceil),
``cubic_coeff_a``, ``exclude_outside``, ``axes`` and ``keep_aspect_ratio_policy`` (opset 18), ``scales`` or
``sizes``; neighbours outside the input are clamped to the edge (onnxruntime and the reference implementation).
``antialias=1`` with a downscaled axis (a wider, scale-dependent filter) is refused by name. Opset 10's Resize and
Upsample have no transformation attribute: they are ``asymmetric``, and ``nearest`` truncates when upsampling and
rounds up when downsampling (onnxruntime's rule for them). A constant input is folded before this handler;
integer data (value class b) is moved by ``nearest`` and refused by the other modes (their results are fractions).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import is_const, take
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register
from lasercc.frontends.onnx.values import Act, Ids, Val

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

FINE_BITS = 14  # tap weights are round(w * 2^FINE_BITS): a relative rounding of 2^-15 per weight


def _str_attr(n: onnx.NodeProto, name: str, default: str) -> str:
    v = attr(n, name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float]) -> np.ndarray:
    """The input coordinate of every output position along one axis (the ONNX formulas)."""
    x = np.arange(out_len, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        offset = in_len / 2.0 * (1.0 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "align_corners":
        return x * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_len > 1:
            return start * (in_len - 1) + x * (end - start) * (in_len - 1) / (out_len - 1)
        return np.full(out_len, 0.5 * (start + end) * (in_len - 1))
    raise FrontendError(f"Resize coordinate_transformation_mode {mode!r} is not one ONNX defines")


def _nearest(coords: np.ndarray, rule: str) -> np.ndarray:
    if rule == "round_prefer_floor":
        return np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    if rule == "round_prefer_ceil":
        return np.where(coords - np.floor(coords) == 0.5, np.ceil(coords), np.round(coords))
    if rule == "floor":
        return np.floor(coords)
    if rule == "ceil":
        return np.ceil(coords)
    raise FrontendError(f"Resize nearest_mode {rule!r} is not one of round_prefer_floor, round_prefer_ceil, "
                        "floor, ceil")


def _cubic(r: np.ndarray, a: float) -> np.ndarray:
    """The four cubic-convolution weights (Keys, coefficient ``a``) of neighbours -1, 0, 1, 2 at fraction r."""
    def near(t: np.ndarray) -> np.ndarray:
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t: np.ndarray) -> np.ndarray:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    return np.stack([far(r + 1), near(r), near(1 - r), far(2 - r)], axis=-1)


def axis_taps(mode: str, ctm: str, nearest_rule: str, cubic_a: float, exclude_outside: bool, out_len: int,
              in_len: int, scale: float, roi: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(index [out, T], weight [out, T], outside [out])`` of one axis: output ``p`` is
    ``sum_t weight[p, t] * x[index[p, t]]``, or the extrapolation value where ``outside`` (tf_crop_and_resize
    coordinates beyond the input)."""
    coords = _source_coords(ctm, out_len, in_len, scale, roi)
    outside = np.zeros(out_len, bool)
    if ctm == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > in_len - 1)
    if mode == "nearest":
        idx = np.clip(_nearest(coords, nearest_rule), 0, in_len - 1).astype(np.int64)[:, None]
        return idx, np.ones((out_len, 1)), outside
    base = np.floor(coords)
    r = coords - base
    if mode == "linear":
        offs, w = np.array([0, 1]), np.stack([1 - r, r], axis=-1)
    elif mode == "cubic":
        offs, w = np.array([-1, 0, 1, 2]), _cubic(r, cubic_a)
    else:
        raise FrontendError(f"Resize mode {mode!r} is not one of nearest, linear, cubic")
    raw = base[:, None].astype(np.int64) + offs[None, :]
    if exclude_outside:
        w = np.where((raw >= 0) & (raw < in_len), w, 0.0)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-30)
    return np.clip(raw, 0, in_len - 1), w, outside


def _float_list(L: Lowerer, v: Val | None, what: str) -> list[float] | None:
    if v is None:
        return None
    if not is_const(v):
        raise FrontendError(f"Resize {what} is computed at run time; the output shape of a static spiking graph "
                            "must be known when it is compiled")
    a = np.asarray(L.const_value(v, what)).reshape(-1)
    return None if a.size == 0 else [float(t) for t in a]


def _geometry(L: Lowerer, n: onnx.NodeProto, ins: list, shape: tuple[int, ...], ctm: str
              ) -> tuple[list[int], list[float], list[tuple[float, float]]]:
    """Output sizes, per-axis scales (as the formulas use them) and roi (start, end) per axis; with scales, an
    output size is ``floor(in * scale)`` (times ``roi_end - roi_start`` for tf_crop_and_resize)."""
    rank = len(shape)
    if n.op_type == "Upsample" or L.opset.get("", 17) < 11:  # (X, scales): no roi, no sizes
        scales_v = _float_list(L, ins[1] if len(ins) > 1 else None, "scales") or \
            [float(s) for s in attr(n, "scales", [])]
        sizes_v = None
        roi_v = None
        axes = list(range(rank))
    else:
        roi_v = _float_list(L, ins[1] if len(ins) > 1 else None, "roi")
        scales_v = _float_list(L, ins[2] if len(ins) > 2 else None, "scales")
        sizes_v = _float_list(L, ins[3] if len(ins) > 3 else None, "sizes")
        axes_a = attr(n, "axes", None)
        axes = [int(a) % rank for a in axes_a] if axes_a is not None and len(axes_a) else list(range(rank))
        if axes_a is not None and any(not -rank <= int(a) < rank for a in axes_a):
            raise FrontendError(f"Resize axes {list(axes_a)} out of range for rank {rank}")
    if (scales_v is None) == (sizes_v is None):
        raise FrontendError("Resize needs exactly one of scales and sizes")
    k = len(axes)
    got = scales_v if scales_v is not None else sizes_v
    if len(got) != k:
        raise FrontendError(f"Resize {'scales' if sizes_v is None else 'sizes'} has {len(got)} values for "
                            f"{k} axes")
    roi = [(0.0, 1.0)] * rank
    if roi_v is not None:
        if len(roi_v) != 2 * k:
            raise FrontendError(f"Resize roi has {len(roi_v)} values for {k} axes (needs starts then ends)")
        for j, a in enumerate(axes):
            roi[a] = (roi_v[j], roi_v[k + j])
    scales, sizes = [1.0] * rank, list(shape)
    if scales_v is not None:
        if any(s <= 0 for s in scales_v):
            raise FrontendError(f"Resize scales {scales_v} must be positive")
        for a, s in zip(axes, scales_v):
            crop = roi[a][1] - roi[a][0] if ctm == "tf_crop_and_resize" else 1.0
            scales[a], sizes[a] = s, int(math.floor(shape[a] * crop * s))
    else:
        policy = _str_attr(n, "keep_aspect_ratio_policy", "stretch")
        want = [int(s) for s in sizes_v]  # type: ignore[union-attr]
        if policy == "stretch":
            for a, s in zip(axes, want):
                scales[a], sizes[a] = s / shape[a], s
        elif policy in ("not_larger", "not_smaller"):
            ratios = [s / shape[a] for a, s in zip(axes, want)]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                scales[a], sizes[a] = r, int(round(r * shape[a]))  # the spec rounds half up; sizes are positive
        else:
            raise FrontendError(f"Resize keep_aspect_ratio_policy {policy!r} is not one of stretch, not_larger, "
                                "not_smaller")
    if any(s < 1 for s in sizes):
        raise FrontendError(f"Resize to an empty output {sizes} from {list(shape)}")
    return sizes, scales, roi


@register("Resize", "Upsample")
def resize(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Interpolate an activation (module docstring): Takes for nearest, one multi-input Soma otherwise."""
    x = ins[0]
    if isinstance(x, Ids):
        raise FrontendError(f"{n.op_type} of an integer graph input is not supported; cast it to float in the model")
    if not isinstance(x, Act):
        raise FrontendError(f"{n.op_type} input X is a {type(x).__name__}; it must be an activation")
    shape = x.shape
    old = n.op_type == "Upsample" or L.opset.get("", 17) < 11
    mode = _str_attr(n, "mode", "nearest")
    ctm = "asymmetric" if old else _str_attr(n, "coordinate_transformation_mode", "half_pixel")
    rule = _str_attr(n, "nearest_mode", "round_prefer_floor")
    if mode == "bilinear" and old:  # Upsample-7's spelling
        mode = "linear"
    sizes, scales, roi = _geometry(L, n, ins, shape, ctm)
    taps = []
    extrap: np.ndarray = np.zeros(tuple(sizes), bool)
    for d in range(len(shape)):
        if sizes[d] == shape[d] and scales[d] == 1.0 and ctm != "tf_crop_and_resize":
            taps.append(None)  # an untouched axis (every formula maps p to p at scale 1)
            continue
        if int(attr(n, "antialias", 0)) and mode != "nearest" and sizes[d] < shape[d]:
            raise FrontendError(f"{n.op_type} node {n.name!r}: antialias=1 on a downscaled axis (a filter widened by "
                                "1/scale) is not supported")
        if old:  # no nearest_mode yet: onnxruntime truncates when upsampling and rounds up when downsampling
            rule = "ceil" if scales[d] < 1 else "floor"
        idx, w, out_d = axis_taps(mode, ctm, rule, float(attr(n, "cubic_coeff_a", -0.75)),
                                  bool(attr(n, "exclude_outside", 0)), sizes[d], shape[d], scales[d], roi[d])
        if idx.shape[1] == 1 and sizes[d] == shape[d] and np.array_equal(idx[:, 0], np.arange(shape[d])) \
                and not out_d.any():
            taps.append(None)
            continue
        taps.append((idx, w))
        view = [1] * len(shape)
        view[d] = sizes[d]
        extrap = extrap | out_d.reshape(view)
    if x.integer and mode != "nearest":
        raise FrontendError(f"{n.op_type} mode {mode!r} of exact integer data has fractional results; only "
                            "mode 'nearest' (a copy) is supported on integers")
    active = [d for d, t in enumerate(taps) if t is not None]
    if not active:
        return [x]
    if mode == "nearest" and not extrap.any():
        y = x
        for d in active:
            y = take(L, n.output[0] + f".ax{d}", y, d, taps[d][0][:, 0])  # type: ignore[index]
        return [y]
    if x.quantized or x.boolean or x.integer:
        raise FrontendError(f"{n.op_type} mode {mode!r} of an integer ONNX tensor rounds as the runtime chooses; "
                            "only float activations are interpolated")
    out = L.out_type(n.output[0], tuple(sizes))
    parts, weights = [], []
    for combo in itertools.product(*(range(taps[d][0].shape[1]) for d in active)):  # type: ignore[index]
        wt = np.ones([1] * len(shape))
        y = x
        for d, t in zip(active, combo):
            idx, w = taps[d]  # type: ignore[misc]
            view = [1] * len(shape)
            view[d] = sizes[d]
            wt = wt * w[:, t].reshape(view)
        wt = np.where(extrap, 0.0, wt) if extrap.any() else wt
        wi = np.rint(wt * (1 << FINE_BITS)).astype(np.int64)
        if not np.any(wi):
            continue
        for d, t in zip(active, combo):
            y = take(L, n.output[0] + f".tap.ax{d}", y, d, taps[d][0][:, t])  # type: ignore[index]
        parts.append(y)
        weights.append(wi.reshape(-1)[:1] if np.all(wi == wi.reshape(-1)[0]) else wi)
    if not parts:  # every output position is the extrapolation value
        parts, weights = [take(L, n.output[0] + ".tap", x, active[0], np.zeros(sizes[active[0]], np.int64))], \
            [np.zeros(1, np.int64)]
        for d in active[1:]:
            parts[0] = take(L, n.output[0] + ".tap", parts[0], d, np.zeros(sizes[d], np.int64))
    bias = None
    if extrap.any():
        ev = float(attr(n, "extrapolation_value", 0.0))
        unit = float(np.float32(np.float32(x.scale) * np.float32(2.0 ** -FINE_BITS)))
        bias = np.where(extrap, np.rint(ev / unit), 0).astype(np.int64)
        # the Soma folds the input zero point per weight; positions outside read weight 0, so only ev remains
    return [L.b.soma_mul(n.output[0], parts, weights, x.scale, (2.0 ** -FINE_BITS,), out, bias)]
