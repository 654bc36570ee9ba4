"""The standard-domain (``ai.onnx``) Attention (opsets 23-25) and RotaryEmbedding (opset 23).

Not onnxruntime's ``com.microsoft.Attention`` (packed QKV weights, :mod:`ops_contrib`): the standard op takes
Q, K and V themselves and is lowered as its function body defines it::

    Q, K, V [B, S, H*D] -> [B, H, S, D]        Reshape + Transpose (3-D inputs; 4-D inputs are used as they are)
    K = Concat(past_key, K), V = ...           present_key / present_value (data movement)
    K, V heads repeated to Q's heads           grouped-query attention: a Take (data movement)
    s = (Q * scale) @ K^T                      the scale relabels Q's code type (an exact identity Soma),
                                               the product is a DecodeMAC
    s = softcap * tanh(s / softcap)            an ASNC tanh table between two exact relabelings
    s = s + attn_mask (float)                  a Soma (constant mask) or a two-input Soma (mask from an input)
    masked: bool mask, causal, windows,        a constant drop mask (Mask nodes inside the softmax), or 0/1 codes
      nonpad_kv_seqlen, -inf mask entries      computed from the inputs (``softmax_core``'s dynamic Mask Soma)
    p = softmax(s)                             ``cores.softmax_core`` (WTAMax, exp table, sum Soma, reciprocal)
    Y = p @ V                                  a DecodeMAC; 3-D: Transpose + Reshape back

A fully masked row gives a zero row, as the spec requires: every exp is masked to 0, so the product is 0.
Constant operands (K, V, past state: weights in an export) become codes on a zero-weight Soma whose bias is
the constant (:func:`const_codes`), so every product is the same DecodeMAC. The internal code types (scores,
capped scores, masked scores) are planned by running the float attention on the calibration samples of the
inputs (value class (c)), with a margin; ``qk_matmul_output`` is produced in its own calibrated type.

RotaryEmbedding: ``y = x * cos + rotate(x) * sin`` where ``rotate`` is the half/interleaved rotation
(a Take with the sign folded into the sin table), cos/sin rows selected by the position ids: constant caches
gathered by constant ids fold to constants (Soma weights), by computed/input ids to an IR Gather of the
cache quantized once (value class (b) index), and caches fed as activations by constant ids to a Take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    MASK_THRESHOLD,
    as01,
    broadcast_to,
    concat_acts,
    const_codes,
    ids_as_codes,
    int_of,
    logical_not,
    model_type,
    move,
    resolution_limit,
    rows_by_ids,
    take,
    union_type,
)
from lasercc.frontends.onnx.cores import softmax_core
from lasercc.frontends.onnx.emit import with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import attr, register
from lasercc.frontends.onnx.values import Act, Const, DynMask, Ids, Masked, QWeight, Val, code_type, range_type
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

MARGIN = 0.1  # planned internal ranges: the observed span widened by this fraction on each side


# ---- helpers ------------------------------------------------------------------------------------------


def _span(x: Act) -> tuple[float, float]:
    return x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)


def _planned(lo: float, hi: float, bits: int, shape: tuple[int, ...]) -> CodeType:
    pad = MARGIN * max(hi - lo, abs(hi), abs(lo), 1e-6)
    return range_type(lo - pad, hi + pad, bits, shape)


def const_codes_over(L: Lowerer, stem: str, c: np.ndarray, like: Act, bits: int) -> Act:
    """A compile-time constant as ``bits``-bit codes over its own range (:func:`common.const_codes`)."""
    c = np.asarray(c, np.float64)
    t = range_type(float(c.min()) if c.size else 0.0, float(c.max()) if c.size else 0.0, bits, c.shape)
    return const_codes(L, stem, like, c, t)


def relabel(L: Lowerer, stem: str, x: Act, factor: float) -> Act:
    """``x * factor`` (factor > 0) with the same codes: an identity Soma into x's type with the scale
    multiplied by ``factor`` (the requantization factor is 1 to float32 precision: codes are unchanged)."""
    t = code_type(x.type.bits, x.scale * factor, x.zp, x.shape)
    return L.b.soma_mul(stem, [x], [np.ones(1, np.int64)], x.scale, (float(t.scale[0]) / x.scale,), t)


def _as_act(L: Lowerer, stem: str, v: Val | None, like: Act, what: str) -> Act | None:
    if v is None:
        return None
    if isinstance(v, Act):
        if v.integer or v.boolean:
            raise FrontendError(f"{what} must be a float tensor, got integer/bool data")
        return v
    if isinstance(v, Const | QWeight):
        return const_codes_over(L, stem, np.asarray(L.const_value(v), np.float64), like,
                           max(L.opts.act_bits, L.opts.internal_bits, like.type.bits))
    raise FrontendError(f"{what} of {type(v).__name__} is not supported")


def _heads(L: Lowerer, n: onnx.NodeProto, x: Act, heads: int, stem: str) -> Act:
    """[B, S, H*D] -> [B, H, S, D]."""
    b, s, hd = x.shape
    if hd % heads:
        raise FrontendError(f"hidden size {hd} of {stem} is not a multiple of {heads} heads")
    r = move(L, _mv(stem), x, (b, s, heads, hd // heads))
    r = move(L, _mv(stem), r, (b, heads, s, hd // heads), (0, 2, 1, 3))
    assert isinstance(r, Act)
    return r


def _mv(stem: str) -> onnx.NodeProto:
    """A stand-in node naming the outputs of data movement (``common.move`` names results after it)."""
    return onnx.helper.make_node("Reshape", [], [stem])


def _samples(L: Lowerer, name: str, v: Val | None) -> np.ndarray | None:
    if v is None or not name:
        return None
    if isinstance(v, Const | QWeight):
        return np.asarray(L.const_value(v), np.float64)
    if isinstance(v, Act):
        s = L.stats.values(name)
        return None if s is None else np.asarray(s, np.float64)
    return None


def _rows(a: np.ndarray, rows: int) -> np.ndarray:
    """Samples (stacked along axis 0) or a constant brought to ``rows`` rows along axis 0."""
    if a.shape[0] == rows:
        return a
    if rows % a.shape[0] == 0:
        return np.concatenate([a] * (rows // a.shape[0]), axis=0)
    return a[:rows] if a.shape[0] > rows else a


# ---- Attention ---------------------------------------------------------------------------------------


@register("Attention", sampled=(0, 1, 2, 3, 4, 5))
def attention(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Scaled dot-product attention, ``ai.onnx`` opsets 23-25 (see the module docstring)."""
    get = lambda i: ins[i] if len(ins) > i else None  # noqa: E731
    q_in, k_in, v_in, mask_in, pk_in, pv_in, nonpad_in = (get(i) for i in range(7))
    stem = n.output[0]
    if not isinstance(q_in, Act) or q_in.integer or q_in.boolean:
        raise FrontendError("Attention Q must be a float activation (a constant Q with activation K/V is not "
                            "supported)")
    rank = len(q_in.shape)
    if rank not in (3, 4):
        raise FrontendError(f"Attention Q must be 3-D or 4-D, got shape {list(q_in.shape)}")
    if (pk_in is None) != (pv_in is None):
        raise FrontendError("Attention past_key and past_value must be given together")
    if nonpad_in is not None and pk_in is not None:
        raise FrontendError("Attention nonpad_kv_seqlen cannot be combined with past_key/past_value")
    mode = int(attr(n, "qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        raise FrontendError(f"Attention qk_matmul_output_mode={mode} is not defined (0-3)")
    softcap = float(attr(n, "softcap", 0.0) or 0.0)
    if softcap < 0:
        raise FrontendError(f"Attention softcap={softcap} must be >= 0")
    left, right = int(attr(n, "left_window_size", -1)), int(attr(n, "right_window_size", -1))
    causal = bool(attr(n, "is_causal", 0))
    bits = L.opts.act_bits

    # ---- Q, K, V as [B, H, S, D] codes
    v_in = _drop_dead_values(L, n, v_in, mask_in, pk_in, rank)
    k_act = _as_act(L, stem + ".K", k_in, q_in, "Attention K")
    v_act = _as_act(L, stem + ".V", v_in, q_in, "Attention V")
    assert k_act is not None and v_act is not None
    if len(k_act.shape) != rank or len(v_act.shape) != rank:
        raise FrontendError("Attention Q, K and V must have the same rank")
    if rank == 3:
        hq, hkv = attr(n, "q_num_heads", None), attr(n, "kv_num_heads", None)
        if hq is None or hkv is None:
            raise FrontendError("Attention with 3-D inputs needs q_num_heads and kv_num_heads")
        q = _heads(L, n, q_in, int(hq), stem + ".Qh")
        k = _heads(L, n, k_act, int(hkv), stem + ".Kh")
        v = _heads(L, n, v_act, int(hkv), stem + ".Vh")
    else:
        q, k, v = q_in, k_act, v_act
    bsz, hq, sq, dq = q.shape
    hk, hv = k.shape[1], v.shape[1]
    if k.shape[3] != dq:
        raise FrontendError(f"Attention Q head size {dq} differs from K head size {k.shape[3]}")
    if hk != hv or hq % hk:
        raise FrontendError(f"Attention heads: {hq} query heads, {hk} key heads, {hv} value heads "
                            "(need equal K/V heads dividing the query heads)")

    # ---- past state: present = Concat(past, new) along the sequence axis
    past_len = 0
    outs: list = [None] * len(n.output)
    present = [(pk_in, k, 1), (pv_in, v, 2)]
    kv = []
    for past, cur, oi in present:
        if past is not None:
            p = _as_act(L, f"{stem}.past{oi}", past, q_in, "Attention past state")
            assert p is not None
            if len(p.shape) != 4 or p.shape[:2] != cur.shape[:2] or p.shape[3] != cur.shape[3]:
                raise FrontendError(f"Attention past state {list(p.shape)} does not fit {list(cur.shape)}")
            past_len = p.shape[2]
            shape = cur.shape[:2] + (p.shape[2] + cur.shape[2],) + cur.shape[3:]
            oname = n.output[oi] if len(n.output) > oi else ""
            t = L.out_type(oname, shape) if oname and L.stats.range(oname) is not None \
                else union_type([p, cur], shape, bits)
            cur = concat_acts(L, oname or f"{stem}.present{oi}", [p, cur], 2, t)
        elif len(n.output) > oi and n.output[oi]:
            oname = n.output[oi]
            if L.stats.range(oname) is not None:
                cur = L.b.requant_to(oname, cur, L.out_type(oname, cur.shape))
        if len(n.output) > oi and n.output[oi]:
            outs[oi] = cur
        kv.append(cur)
    k, v = kv
    skv = k.shape[2]
    if v.shape[2] != skv:
        raise FrontendError(f"Attention K and V sequence lengths differ ({skv}, {v.shape[2]})")
    if hq != hk:  # grouped-query attention: each K/V head serves hq/hk query heads, interleaved
        rep = np.repeat(np.arange(hk), hq // hk)
        k = take(L, stem + ".Krep", k, 1, rep)
        v = take(L, stem + ".Vrep", v, 1, rep)
    kt = move(L, _mv(stem + ".KT"), k, (bsz, hq, dq, skv), (0, 1, 3, 2))
    assert isinstance(kt, Act)
    scale = attr(n, "scale", None)
    scale = float(1.0 / np.sqrt(dq)) if scale is None else float(scale)
    if scale <= 0:
        raise FrontendError(f"Attention scale={scale} must be positive")
    sshape = (bsz, hq, sq, skv)

    # ---- masks: a constant drop mask, additive constant / activation, dynamic 0/1 drops
    drop_c = np.zeros((1, 1, sq, skv), bool)
    add_c: np.ndarray | None = None
    add_act: Act | None = None
    # 0/1 drop codes from the inputs, or (lengths codes [B,1,1,1], sign, bias): drop where sign*len + bias >= 0
    dyn: list = []
    if mask_in is not None:
        drop_c, add_c, add_act, dmask = _attn_mask(L, n, mask_in, sshape, drop_c)
        if dmask is not None:
            dyn.append(dmask)
    nonpad = None
    lengths = None
    if nonpad_in is not None:
        if isinstance(nonpad_in, Const | QWeight):
            nonpad = np.asarray(L.const_value(nonpad_in)).astype(np.int64).reshape(-1)
            if nonpad.size != bsz:
                raise FrontendError(f"Attention nonpad_kv_seqlen has {nonpad.size} entries for batch {bsz}")
        elif isinstance(nonpad_in, Ids) or (isinstance(nonpad_in, Act) and nonpad_in.integer):
            if isinstance(nonpad_in, Ids):
                lens = ids_as_codes(L, stem + ".nonpad", Ids(nonpad_in.name, (bsz, 1, 1, 1),
                                                              nonpad_in.base or nonpad_in.shape), skv)
            else:
                lens = move(L, _mv(stem + ".nonpad"), int_of(L, stem + ".nonpad", nonpad_in), (bsz, 1, 1, 1))
            assert isinstance(lens, Act)
            lengths = lens
        else:
            raise FrontendError("Attention nonpad_kv_seqlen must be integer data (an input or a constant)")
    i_idx = np.arange(sq).reshape(sq, 1)
    j_idx = np.arange(skv).reshape(1, skv)
    if nonpad is not None:
        off = (nonpad - sq).reshape(-1, 1, 1, 1)
        drop_c = drop_c | (j_idx >= nonpad.reshape(-1, 1, 1, 1))
    else:
        off = np.full((1, 1, 1, 1), past_len)
    # causal / windows: with input-dependent lengths, offset = len - sq (dynamic): drop where sign*len + bias >= 0
    diff_c = i_idx - j_idx  # i + offset - j = diff_c + offset
    if lengths is not None:
        dyn.append((lengths, -1, np.broadcast_to(j_idx, (sq, skv)).reshape(1, 1, sq, skv)))  # j >= len
        base = diff_c - sq  # i - j + len - sq
        if causal:  # drop j > i + off  <=>  -(base + len) - 1 >= 0
            dyn.append((lengths, -1, (-base - 1).reshape(1, 1, sq, skv)))
        if left >= 0:  # drop base + len > left  <=>  len + base - left - 1 >= 0
            dyn.append((lengths, 1, (base - left - 1).reshape(1, 1, sq, skv)))
        if right >= 0:  # drop -(base + len) > right  <=>  -len - base - right - 1 >= 0
            dyn.append((lengths, -1, (-base - right - 1).reshape(1, 1, sq, skv)))
    else:
        d = diff_c + off
        if causal:
            drop_c = drop_c | (d < 0)
        if left >= 0:
            drop_c = drop_c | (d > left)
        if right >= 0:
            drop_c = drop_c | (-d > right)

    # ---- plan the internal types from the float attention on the samples
    plan = _plan(L, n, [q_in, k_in, v_in, pk_in, pv_in], mask_in, scale, softcap, rank, hq, hk, dq)
    raw_r, cap_r, biased_r = plan if plan is not None else (None, None, None)
    qk_out = n.output[3] if len(n.output) > 3 and n.output[3] else ""

    def stage_type(r: tuple[float, float] | None, exposed: bool, fallback: tuple[float, float]) -> CodeType:
        if exposed and L.stats.range(qk_out) is not None:
            return L.out_type(qk_out, sshape)
        lo, hi = r if r is not None else fallback
        return _planned(lo, hi, max(bits, L.opts.internal_bits if bits < 16 else bits), sshape)

    # ---- scores
    qs = relabel(L, stem + ".Qscaled", q, scale)
    qlo, qhi = _span(qs)
    klo, khi = _span(kt)
    m = max(abs(qlo), abs(qhi)) * max(abs(klo), abs(khi)) * dq
    s = L.b.decode_mac(stem + ".scores", qs, kt, "matmul", stage_type(raw_r, mode == 0, (-m, m)))
    if mode == 0 and qk_out:
        outs[3] = s
    if softcap > 0:
        x = relabel(L, stem + ".capin", s, 1.0 / softcap)
        lo, hi = cap_r if cap_r is not None else (-softcap, softcap)
        tt = stage_type((lo / softcap, hi / softcap), False, (-1.0, 1.0))
        th = L.b.asnc_lut(stem + ".tanh", x, "tanh", (), tt, None)
        s = relabel(L, stem + ".capped", th, softcap)
        if mode == 1 and qk_out:
            outs[3] = L.b.requant_to(qk_out, s, L.out_type(qk_out, sshape)) \
                if L.stats.range(qk_out) is not None else s
    elif mode == 1 and qk_out:
        outs[3] = s
    if add_c is not None or add_act is not None:
        lo, hi = _span(s)
        fb = (lo - 1.0, hi + 1.0)
        if add_act is not None:
            alo, ahi = _span(add_act)
            fb = (lo + alo, hi + ahi)
        t = stage_type(biased_r, mode == 2, fb)
        if add_act is not None:
            s = L.b.add_acts(stem + ".biased", s, add_act, 1, t)
            if add_c is not None:
                s = L.b.affine_const(stem + ".biased_c", s, None, add_c, t)
        else:
            full = np.broadcast_to(add_c, sshape) if tuple(np.broadcast_shapes(add_c.shape, sshape)) == sshape \
                else add_c
            s = L.b.affine_const(stem + ".biased", s, None, np.ascontiguousarray(full), t)
    if mode == 2 and qk_out:
        if drop_c.any() or dyn:
            raise FrontendError("Attention qk_matmul_output_mode=2 with masked (-inf) entries has no finite "
                                "value to output")
        outs[3] = s

    # ---- softmax with the drop masks
    drop: np.ndarray | Act | None = None
    if dyn:
        drop = _dyn_drop(L, stem + ".drop", dyn, drop_c, sshape)
    elif drop_c.any():
        drop = np.broadcast_to(drop_c, sshape)
    sm_in: Act | Masked = s if drop is None else Masked(s, drop)
    ssamp = None
    if plan is not None and not isinstance(drop, Act):
        ssamp = _score_samples(L, n, [q_in, k_in, pk_in], mask_in, scale, softcap, rank, hq, hk, dq, drop_c)
    # probabilities lie in [0, 1] whatever calibration saw (onnxruntime's causal offset with a past differs from
    # the spec's when K is longer than Q): the fixed grid, unless a QDQ model chose the output's type
    probs_t = code_type(max(bits, 8), 1.0 / ((1 << max(bits, 8)) - 1), 0, sshape)
    if mode == 3 and qk_out:
        probs_t = model_type(L, qk_out, sshape) or probs_t
    probs = softmax_core(L, stem + ".softmax", sm_in, probs_t, ssamp, masked_rows="zero")
    if mode == 3 and qk_out:
        outs[3] = probs

    # ---- context
    dv = v.shape[3]
    yshape = (bsz, sq, hq * dv) if rank == 3 else (bsz, hq, sq, dv)
    yt = model_type(L, n.output[0], yshape)
    ctx_f = _float_context(L, n, ssamp, v_in, pv_in, rank, hq, hk)
    if yt is None:
        yt = _covering(L.out_type(n.output[0], yshape), None if ctx_f is None else
                       (float(ctx_f[2].min()), float(ctx_f[2].max())))
    if ctx_f is not None:
        _check_context(ctx_f, probs_t, v, yt)
    if rank == 3:
        ctx = L.b.decode_mac(stem + ".context", probs, v, "matmul", with_shape(yt, (bsz, hq, sq, dv)))
        ctx = move(L, _mv(stem + ".ctxT"), ctx, (bsz, sq, hq, dv), (0, 2, 1, 3))
        y = move(L, _mv(stem), ctx, (bsz, sq, hq * dv))
    else:
        y = L.b.decode_mac(stem + ".context", probs, v, "matmul", yt)
    outs[0] = y
    return outs


def _float_context(L: Lowerer, n: onnx.NodeProto, ssamp: np.ndarray | None, v_in: Val | None, pv_in: Val | None,
                   rank: int, hq: int, hk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(p, V, Y)``: the spec's float attention on the samples (softmax of the planned score samples, V's samples
    as heads, their product), or None. Why: calibration runs onnxruntime, whose causal offset with a past differs
    from the spec when K is longer than Q; a type from its range alone could saturate the spec's values."""
    if ssamp is None:
        return None
    vs = _samples(L, n.input[2], v_in)
    if vs is None:
        return None
    vh = _float_heads(_rows(vs, ssamp.shape[0]), rank, hk)
    if pv_in is not None:
        pvs = _samples(L, n.input[5], pv_in)
        if pvs is None:
            return None
        vh = np.concatenate([_rows(pvs, vh.shape[0]), vh], axis=2)
    vh = np.repeat(vh, hq // max(vh.shape[1], 1), axis=1)
    mx = np.max(ssamp, axis=-1, keepdims=True)
    e = np.where(np.isfinite(ssamp), np.exp(ssamp - np.where(np.isfinite(mx), mx, 0.0)), 0.0)
    tot = e.sum(axis=-1, keepdims=True)
    p = e / np.where(tot > 0, tot, 1.0)
    try:
        y = p @ vh
    except ValueError:
        return None
    return p, vh, y


def _check_context(ctx: tuple[np.ndarray, np.ndarray, np.ndarray], probs_t: CodeType, v: Act, yt: CodeType) -> None:
    """Refuse a context ``Y = p @ V`` that the probabilities' and V's code grids alone cannot resolve.

    ``Y`` is a weighted average of V's rows, so it carries V's rounding and every probability's rounding times
    the value it weights. Where ``Y`` spans a small range at a large offset (ONNX's softcap "poison" case: rows of
    V = 1000 weighted ~1/6 each, so ``Y`` lies in [332.8, 337.8]), those roundings alone are hundreds of steps of
    that range at 16 bits -- a wrong answer, however the rest is computed. Measured on the calibration samples,
    exactly as the lowering rounds (both grids, then the float product), against :func:`common.resolution_limit`
    of the range ``Y`` takes there (its code type also covers 0, so its own grid may be far coarser)."""
    from lasercc.semantics.quant import dequantize, quantize

    p, vh, y = ctx
    if not y.size:
        return
    pq = np.asarray(dequantize(quantize(p.astype(np.float32), probs_t.scale, probs_t.zero_point, probs_t.bits),
                               probs_t.scale, probs_t.zero_point), np.float64)
    vq = np.asarray(dequantize(quantize(vh.astype(np.float32), v.scale, v.zp, v.type.bits), v.scale, v.zp),
                    np.float64)
    s, z = float(yt.scale[0]), float(yt.zero_point[0])
    lo, hi = s * (yt.lo - z), s * (yt.hi - z)
    try:
        err = float(np.max(np.abs(np.clip(pq @ vq, lo, hi) - np.clip(y, lo, hi))))
    except ValueError:
        return
    ylo, yhi = float(y.min()), float(y.max())
    mag = max(abs(ylo), abs(yhi))
    # a (nearly) constant output has no range to resolve: its magnitude stands in (float rounding noise is ~2^-24)
    span = max(yhi - ylo if yhi - ylo > mag * 2.0 ** -20 else mag, 1e-6)
    limit = resolution_limit(span, yt.bits)
    if err > limit:
        step = span / ((1 << yt.bits) - 1)
        raise FrontendError(
            f"the attention output cannot be resolved to {yt.bits} bits of its range [{ylo:.4g}, {yhi:.4g}]: "
            f"rounding the probabilities ({probs_t.bits}-bit) and V ({v.type.bits}-bit, step {v.scale:.3g}) alone "
            f"moves it by {err:.3g} on the calibration samples, {err / step:.0f} steps of that range (limit "
            f"{limit / step:.0f}); V reaches {float(np.max(np.abs(vh))):.4g}. The output is a small range at a large "
            "offset: narrow V's range (it is averaged into the output) or use more bits")


def _covering(t: CodeType, r: tuple[float, float] | None) -> CodeType:
    """``t`` widened (same bits) to cover the real range ``r``."""
    if r is None:
        return t
    s, z = float(t.scale[0]), int(t.zero_point[0])
    lo, hi = s * (t.lo - z), s * (t.hi - z)
    if r[0] >= lo and r[1] <= hi:
        return t
    return range_type(min(lo, r[0]), max(hi, r[1]), t.bits, tuple(t.shape))


def _drop_dead_values(L: Lowerer, n: onnx.NodeProto, v_in: Val | None, mask_in: Val | None, pk_in: Val | None,
                      rank: int) -> Val | None:
    """A constant V with the rows of keys that a constant mask drops for every query set to 0.

    Why: those rows are multiplied by probability 0, so their values cannot matter; left in, an outlier
    there (a padding value) would set V's code range and coarsen every attended value."""
    if not isinstance(v_in, Const | QWeight) or not isinstance(mask_in, Const) or pk_in is not None:
        return v_in
    if len(n.output) > 2 and n.output[2]:
        return v_in  # present_value is V itself: keep it whole
    vv = np.asarray(L.const_value(v_in), np.float64)
    m = np.asarray(mask_in.value)
    skv = vv.shape[2 if rank == 4 else 1]
    if m.ndim == 0 or m.shape[-1] > skv:
        return v_in
    dead = ~m if m.dtype == np.bool_ else (~np.isfinite(m.astype(np.float64)) | (m <= MASK_THRESHOLD))
    cols = np.ones(skv, bool)
    cols[:m.shape[-1]] = dead.reshape(-1, m.shape[-1]).all(axis=0)
    if not cols.any():
        return v_in
    vv = vv.copy()
    if rank == 4:
        vv[:, :, cols, :] = 0.0
    else:
        vv[:, cols, :] = 0.0
    return Const(vv.astype(np.float32))


def _attn_mask(L: Lowerer, n: onnx.NodeProto, m: Val, sshape: tuple[int, ...],
               drop_c: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, Act | None, Act | None]:
    """(constant drop mask, additive constant, additive activation, 0/1 drop codes) for ``attn_mask``."""
    skv = sshape[-1]
    if isinstance(m, Const | QWeight):
        c = np.asarray(m.value if isinstance(m, Const) else m.real())
        if c.ndim == 0 or c.ndim > 4:
            raise FrontendError(f"Attention attn_mask of rank {c.ndim} is not supported")
        if c.shape[-1] < skv:  # shorter masks are padded with 'not attended'
            pad = [(0, 0)] * (c.ndim - 1) + [(0, skv - c.shape[-1])]
            c = np.pad(c, pad, constant_values=False if c.dtype == np.bool_ else -np.inf)
        if c.dtype == np.bool_:
            return _bcast(drop_c, ~c, sshape), None, None, None
        c = c.astype(np.float64)
        dead = ~np.isfinite(c) | (c <= MASK_THRESHOLD)
        add = np.where(dead, 0.0, c)
        return _bcast(drop_c, dead, sshape), (add if np.any(add) else None), None, None
    if isinstance(m, DynMask):  # (1 - mask) * finfo.min computed from an input: src > 0 marks dropped keys
        if m.factor >= 0:
            raise FrontendError("Attention attn_mask is a large positive multiple of an input; only -inf style "
                                "masks (large negative factors) are supported")
        src = as01(L, n.output[0] + ".drop", m.src)
        if src.shape[-1] != skv:
            raise FrontendError(f"Attention attn_mask from an input with {src.shape[-1]} keys for {skv} keys "
                                "(padding an input mask is not supported)")
        if len(src.shape) < 4:
            src = move(L, _mv(n.output[0] + ".dropr"), src, (1,) * (4 - len(src.shape)) + src.shape)  # type: ignore
        return drop_c, None, None, src
    if isinstance(m, Ids) or (isinstance(m, Act) and (m.boolean or m.integer)):
        shape = m.shape
        if shape[-1] != skv:
            raise FrontendError(f"Attention attn_mask from an input with {shape[-1]} keys for {skv} keys "
                                "(padding an input mask is not supported)")
        keep = ids_as_codes(L, n.output[0] + ".keep", m, 1) if isinstance(m, Ids) else m
        return drop_c, None, None, _dyn_bool(L, n, keep, sshape)
    if isinstance(m, Act):
        if m.shape[-1] != skv:
            raise FrontendError(f"Attention attn_mask from an input with {m.shape[-1]} keys for {skv} keys "
                                "(padding an input mask is not supported)")
        r = L.stats.range(n.input[3])
        if r is not None and r[0] <= MASK_THRESHOLD:
            raise FrontendError("Attention float attn_mask from an input holds -inf/large negative values; feed "
                                "it as a bool mask")
        return drop_c, None, m, None
    raise FrontendError(f"Attention attn_mask of {type(m).__name__} is not supported")


def _dyn_bool(L: Lowerer, n: onnx.NodeProto, keep: Act, sshape: tuple[int, ...]) -> Act:
    """A bool keep mask from the inputs as 0/1 drop codes (value class (b)), rank-aligned to the scores."""
    drop = logical_not(L, n.output[0] + ".drop", keep)
    if len(drop.shape) < 4:
        drop = move(L, _mv(n.output[0] + ".dropr"), drop, (1,) * (4 - len(drop.shape)) + drop.shape)  # type: ignore
    return drop


def _bcast(drop_c: np.ndarray, extra: np.ndarray, sshape: tuple[int, ...]) -> np.ndarray:
    try:
        r = drop_c | np.asarray(extra, bool)
        np.broadcast_shapes(r.shape, sshape)
    except ValueError:
        raise FrontendError(f"Attention attn_mask of shape {list(np.shape(extra))} does not broadcast to the "
                            f"scores {list(sshape)}") from None
    if r.ndim > 4 or tuple(np.broadcast_shapes(r.shape, sshape)) != tuple(sshape):
        raise FrontendError(f"Attention attn_mask of shape {list(np.shape(extra))} does not broadcast to the "
                            f"scores {list(sshape)}")
    return r


def _dyn_drop(L: Lowerer, stem: str, dyn: list, drop_c: np.ndarray, sshape: tuple[int, ...]) -> Act:
    """Sum of 0/1 drop codes (positive = drop) for input-dependent masks; constant drops join as a bias."""
    terms: list[Act] = []
    for k, item in enumerate(dyn):
        if isinstance(item, Act):
            terms.append(item)
            continue
        lens, sign, bias = item
        full = broadcast_to(L, f"{stem}.len{k}", lens, sshape)
        lo = int(bias.min()) + (-sshape[-1] if sign > 0 else -sshape[-1]) - 1
        hi = int(bias.max()) + sshape[-1] + 1
        zp = max(0, -lo)
        nb = max(2, (hi + zp).bit_length())
        t = code_type(nb, 1.0, zp, sshape)
        v = L.b.soma_mul(f"{stem}.t{k}", [full], [np.array([sign], np.int64)], 1.0, (1.0,), t,
                         np.ascontiguousarray(np.broadcast_to(bias, sshape)).astype(np.int64))
        terms.append(L.b.asnc_lut(f"{stem}.step{k}", v, "step", (), code_type(2, 1.0, 0, sshape), None))
    if len(terms) == 1 and not drop_c.any():
        return terms[0]
    total = len(terms) + 1
    t = code_type(max(2, total.bit_length()), 1.0, 0, sshape)
    full = [broadcast_to(L, f"{stem}.b{k}", x, sshape) if x.shape != sshape else x for k, x in enumerate(terms)]
    bias = np.ascontiguousarray(np.broadcast_to(drop_c, sshape)).astype(np.int64)
    return L.b.soma_mul(stem, full, [np.ones(1, np.int64)] * len(full), 1.0, (1.0,), t, bias)


# ---- planning ----------------------------------------------------------------------------------------


def _float_heads(a: np.ndarray, rank: int, heads: int) -> np.ndarray:
    if rank == 4:
        return a
    b, s, hd = a.shape
    return a.reshape(b, s, heads, hd // heads).transpose(0, 2, 1, 3)


def _float_scores(L: Lowerer, n: onnx.NodeProto, vals: list, scale: float, rank: int, hq: int, hk: int,
                  dq: int) -> np.ndarray | None:
    q_in, k_in, pk_in = vals
    qs = _samples(L, n.input[0], q_in)
    ks = _samples(L, n.input[1], k_in)
    if qs is None or ks is None:
        return None
    pks = _samples(L, n.input[4] if len(n.input) > 4 else "", pk_in) if pk_in is not None else None
    if pk_in is not None and pks is None:
        return None
    rows = qs.shape[0]
    ks = _rows(ks, rows)
    qh = _float_heads(qs, rank, hq)
    kh = _float_heads(ks, rank, hk)
    if pks is not None:
        kh = np.concatenate([_rows(pks, rows), kh], axis=2)
    if qh.shape[0] != kh.shape[0]:
        return None
    kh = np.repeat(kh, qh.shape[1] // kh.shape[1], axis=1)
    return (qh @ kh.transpose(0, 1, 3, 2)) * scale


def _plan(L: Lowerer, n: onnx.NodeProto, vals: list, mask_in: Val | None, scale: float, softcap: float, rank: int,
          hq: int, hk: int, dq: int):  # noqa: ANN202
    """(raw, capped, biased) score ranges from the samples, or None."""
    q_in, k_in, _, pk_in, _ = vals
    sc = _float_scores(L, n, [q_in, k_in, pk_in], scale, rank, hq, hk, dq)
    if sc is None:
        return None
    raw = (float(sc.min()), float(sc.max()))
    cap = sc if softcap <= 0 else softcap * np.tanh(sc / softcap)
    capr = (float(cap.min()), float(cap.max()))
    biased = capr
    if mask_in is not None and not isinstance(mask_in, Ids) and not (isinstance(mask_in, Act) and
                                                                      (mask_in.boolean or mask_in.integer)):
        ms = _samples(L, n.input[3], mask_in)
        if ms is not None and ms.dtype != np.bool_:
            ms = np.where(np.isfinite(ms) & (ms > MASK_THRESHOLD), ms, 0.0)
            if ms.shape[-1] < cap.shape[-1]:
                ms = np.pad(ms, [(0, 0)] * (ms.ndim - 1) + [(0, cap.shape[-1] - ms.shape[-1])])
            try:
                if isinstance(mask_in, Act) and ms.ndim == 4 and ms.shape[0] != cap.shape[0]:
                    ms = _rows(ms, cap.shape[0])
                bsum = cap + ms
                biased = (float(bsum.min()), float(bsum.max()))
            except ValueError:
                return None
    return raw, capr, biased


def _score_samples(L: Lowerer, n: onnx.NodeProto, vals: list, mask_in: Val | None, scale: float, softcap: float,
                   rank: int, hq: int, hk: int, dq: int, drop_c: np.ndarray) -> np.ndarray | None:
    """Samples of the softmax input (masked entries -inf) for planning its internals, or None."""
    sc = _float_scores(L, n, vals, scale, rank, hq, hk, dq)
    if sc is None:
        return None
    if softcap > 0:
        sc = softcap * np.tanh(sc / softcap)
    if mask_in is not None and not isinstance(mask_in, Ids):
        ms = _samples(L, n.input[3], mask_in)
        if ms is not None and ms.dtype != np.bool_:
            ms = np.where(np.isfinite(ms) & (ms > MASK_THRESHOLD), ms, 0.0)
            if ms.shape[-1] < sc.shape[-1]:
                ms = np.pad(ms, [(0, 0)] * (ms.ndim - 1) + [(0, sc.shape[-1] - ms.shape[-1])])
            try:
                sc = sc + (_rows(ms, sc.shape[0]) if ms.ndim == 4 else ms)
            except ValueError:
                return None
    try:
        dead = np.broadcast_to(drop_c, sc.shape) if drop_c.shape[0] in (1, sc.shape[0]) else None
    except ValueError:
        dead = None
    if dead is None:
        return None
    return np.where(dead, -np.inf, sc)


# ---- RotaryEmbedding ---------------------------------------------------------------------------------


def _rope_cache(L: Lowerer, n: onnx.NodeProto, cache: Val, pos: Val | None, like: Act, half: int,
                what: str) -> np.ndarray | Act:
    """The cos or sin rows for each (batch, position): [B, S, half], a constant or codes."""
    stem = f"{n.output[0]}.{what}"
    if isinstance(cache, Const | QWeight):
        c = np.asarray(L.const_value(cache), np.float64)
        if pos is None:
            return c
        if isinstance(pos, Const | QWeight):
            p = np.asarray(L.const_value(pos)).astype(np.int64)
            return c[p]
        ib = max(L.opts.internal_bits, like.type.bits)
        t = range_type(float(c.min()), float(c.max()), ib, ())
        table = np.clip(np.rint(c / float(t.scale[0])) + t.zero_point[0], 0, t.hi).astype(np.int64)
        if isinstance(pos, Ids):
            from lasercc.ir.nodes import Gather

            base = pos.base or pos.shape
            name = L.b.fresh(stem)
            gt = code_type(ib, float(t.scale[0]), int(t.zero_point[0]), tuple(base) + (c.shape[-1],))
            L.b.add(Gather(name=name, inputs=(pos.name,), type=gt, table=L.b.const(name + ".table", table)))
            r = Act(name, gt)
            if tuple(base) != tuple(pos.shape):
                r = move(L, _mv(stem + ".view"), r, tuple(pos.shape) + (c.shape[-1],))  # type: ignore[assignment]
            return r
        if isinstance(pos, Act) and pos.integer:
            from lasercc.frontends.onnx.common import gather_by_codes

            return gather_by_codes(L, _mv(stem), Const(c.astype(np.float32)), pos)
        raise FrontendError(f"RotaryEmbedding position_ids of {type(pos).__name__} is not supported")
    if not isinstance(cache, Act) or cache.integer or cache.boolean:
        raise FrontendError(f"RotaryEmbedding {what}_cache of {type(cache).__name__} is not supported")
    if pos is None:
        return cache
    if isinstance(pos, Const | QWeight):
        p = np.asarray(L.const_value(pos)).astype(np.int64)
        rows = take(L, stem + ".rows", cache, 0, p.reshape(-1) % cache.shape[0])
        return move(L, _mv(stem), rows, tuple(p.shape) + tuple(cache.shape[1:]))  # type: ignore[return-value]
    if isinstance(pos, Ids):
        return rows_by_ids(L, stem, cache, pos)
    raise FrontendError(f"RotaryEmbedding position_ids of {type(pos).__name__} with an activation cache is not "
                        "supported")


@register("RotaryEmbedding", sampled=(0,))
def rotary_embedding(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``y = x * cos + rotate(x) * sin`` on the first ``rotary_embedding_dim`` features of each head.

    Input [B, H, S, D] (4-D) or [B, S, H*D] (3-D, ``num_heads``); caches [max_pos, R/2] indexed by
    ``position_ids`` [B, S], or [B, S, R/2] without them. The halves (or even/odd features, ``interleaved``)
    are Takes of x; with constant cos/sin each output half is one two-input Soma whose per-element weights
    are the cos/sin values (``real = cos*x1 - sin*x2``, ``imag = sin*x1 + cos*x2``); with cos/sin as codes
    (caches fed as inputs, or gathered by input ids) the products are DecodeMACs and the sums Somas. The
    halves are put back by a Concat (and a Take to interleave); unrotated features pass through.
    """
    get = lambda i: ins[i] if len(ins) > i else None  # noqa: E731
    x, cos_c, sin_c, pos = get(0), get(1), get(2), get(3)
    if not isinstance(x, Act) or x.integer or x.boolean:
        raise FrontendError("RotaryEmbedding input must be a float activation")
    if cos_c is None or sin_c is None:
        raise FrontendError("RotaryEmbedding needs cos_cache and sin_cache")
    shape = x.shape
    stem = n.output[0]
    interleaved = bool(attr(n, "interleaved", 0))
    if len(shape) == 4:
        bsz, heads, seq, d = shape
        x4 = x
    elif len(shape) == 3:
        heads = int(attr(n, "num_heads", 0) or 0)
        if heads <= 0 or shape[2] % heads:
            raise FrontendError(f"RotaryEmbedding of a 3-D input {list(shape)} needs num_heads dividing the "
                                "hidden size")
        bsz, seq, d = shape[0], shape[1], shape[2] // heads
        x4 = move(L, _mv(stem + ".heads"), x, (bsz, seq, heads, d))
        assert isinstance(x4, Act)
    else:
        raise FrontendError(f"RotaryEmbedding input must be 3-D or 4-D, got {list(shape)}")
    rdim = int(attr(n, "rotary_embedding_dim", 0) or 0) or d
    if rdim > d or rdim % 2:
        raise FrontendError(f"RotaryEmbedding rotary_embedding_dim={rdim} does not fit head size {d}")
    half = rdim // 2
    cos = _rope_cache(L, n, cos_c, pos, x4, half, "cos")
    sin = _rope_cache(L, n, sin_c, pos, x4, half, "sin")
    for c in (cos, sin):
        cs = c.shape
        if tuple(cs) != (bsz, seq, half):
            raise FrontendError(f"RotaryEmbedding cos/sin rows of shape {list(cs)}; expected {[bsz, seq, half]}")
    # cos/sin broadcast against x4: [B, 1, S, half] (4-D input) or [B, S, 1, half] (3-D input)
    cshape = (bsz, 1, seq, half) if len(shape) == 4 else (bsz, seq, 1, half)
    i1 = np.arange(0, rdim, 2) if interleaved else np.arange(half)
    i2 = np.arange(1, rdim, 2) if interleaved else np.arange(half, rdim)
    x1 = take(L, stem + ".x1", x4, 3, i1)
    x2 = take(L, stem + ".x2", x4, 3, i2)
    out = L.out_type(n.output[0], shape)
    pshape = x1.shape
    if isinstance(cos, np.ndarray) and isinstance(sin, np.ndarray):
        from lasercc.frontends.onnx.emit import quantize_const_symmetric

        w, sw = quantize_const_symmetric(np.stack([cos.reshape(cshape), sin.reshape(cshape)]))
        wc, ws = w[0], w[1]
        real = L.b.soma_mul(stem + ".real", [x1, x2], [wc, -ws], x4.scale, (sw,), with_shape(out, pshape))
        imag = L.b.soma_mul(stem + ".imag", [x1, x2], [ws, wc], x4.scale, (sw,), with_shape(out, pshape))
    else:
        ca = cos if isinstance(cos, Act) else const_codes_over(L, stem + ".cosc", cos, x4, L.opts.internal_bits)
        sa = sin if isinstance(sin, Act) else const_codes_over(L, stem + ".sinc", sin, x4, L.opts.internal_bits)
        ca = move(L, _mv(stem + ".cosv"), ca, cshape)
        sa = move(L, _mv(stem + ".sinv"), sa, cshape)
        assert isinstance(ca, Act) and isinstance(sa, Act)
        ib = max(L.opts.internal_bits, x4.type.bits)
        (xl, xh), (cl, ch), (sl, sh) = _span(x4), _span(ca), _span(sa)
        mc = max(abs(xl), abs(xh)) * max(abs(cl), abs(ch))
        ms = max(abs(xl), abs(xh)) * max(abs(sl), abs(sh))
        tc = range_type(-mc, mc, ib, pshape, symmetric=True)
        ts = range_type(-ms, ms, ib, pshape, symmetric=True)
        c1, s2 = L.b.decode_mac(stem + ".c1", x1, ca, "mul", tc), L.b.decode_mac(stem + ".s2", x2, sa, "mul", ts)
        s1, c2 = L.b.decode_mac(stem + ".s1", x1, sa, "mul", ts), L.b.decode_mac(stem + ".c2", x2, ca, "mul", tc)
        real = L.b.add_acts(stem + ".real", c1, s2, -1, with_shape(out, pshape))
        imag = L.b.add_acts(stem + ".imag", s1, c2, 1, with_shape(out, pshape))
    rot = concat_acts(L, stem + ".rot", [real, imag], 3, out)
    if interleaved:  # [r0..r_{h-1}, i0..i_{h-1}] -> [r0, i0, r1, i1, ...]
        rot = take(L, stem + ".interleave", rot, 3, np.stack([np.arange(half), half + np.arange(half)], 1).reshape(-1))
    if rdim < d:
        rest = take(L, stem + ".pass", x4, 3, np.arange(rdim, d))
        rot = concat_acts(L, stem + ".full", [rot, rest], 3, out)
    return [move(L, _mv(stem), rot, shape)]
