"""onnxruntime's fused transformer ops (domain ``com.microsoft``), lowered to the IR their unfused graphs get.

Users often run ``onnxruntime.transformers.optimizer.optimize_model`` before quantizing; on BERT- and
GPT-2-style models it writes SkipLayerNormalization, EmbedLayerNormalization, Attention, BiasGelu,
FastGelu and Gelu (measured: see ``bench/ort_fused_quant.py``); ``quantize_dynamic`` of that turns Attention and
EmbedLayerNormalization into QAttention and QEmbedLayerNormalization, and the file onnxruntime saves with its own
graph optimisations holds FusedMatMul (DynamicQuantizeMatMul / MatMulIntegerToFloat live in ``ops_quant``). Each
is lowered here with the same pieces the unfused subgraph uses -- ``cores.layernorm_core`` / ``softmax_core``,
``ops_linear`` weights, ``asnc_lut`` tables, ``ops_move`` data movement -- so a fused model compiles to (nearly)
the same graph; the quantized forms reuse the float handlers with the model's integer weights.

What differs from the unfused graph, and why:

* a fused op hides intermediates that are not ONNX tensors (``input + skip + bias`` inside
  SkipLayerNormalization, ``x + bias`` inside BiasGelu, Q/K/V and the scores inside Attention), so
  calibration never sees them. Their code types are planned here: sums get a type that covers the
  extremes of their operands' code types (no saturation is possible) with extra bits
  (:func:`_bias_sum_type`); Attention's internals are planned by running the float attention on the
  calibration samples of its input (or, without samples, by interval bounds);
* the LayerNorm decompositions need calibration *samples* of the normalised sum (see
  :data:`SAMPLED_INPUTS`); EmbedLayerNormalization plans from the embedding tables themselves.

Semantics follow onnxruntime's ContribOperators.md (links in each handler); the forms the optimizer
does not emit for these models (past state, rotary, attention bias, left-padding mask formats) raise a
one-line :class:`FrontendError` naming the input or attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import (
    broadcast_to,
    gather,
    ids_as_codes,
    is_const,
    logical_not,
    move,
    q_input,
    retype,
)
from lasercc.frontends.onnx.cores import bias_units, layernorm_core, softmax_core, soma_linear, weight_ints
from lasercc.frontends.onnx.emit import code_span, common_scale, with_shape
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import MS, SAMPLED_INPUTS, attr, prepare_hook, register
from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynScale,
    Ids,
    Masked,
    MaskLengths,
    QWeight,
    Val,
    code_type,
    range_type,
)
from lasercc.ir.types import CodeType

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

DOC = "https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft."

# Calibration samples each handler reads (``L.stats.values``), by ONNX input index. The driver keeps
# values only for what it is told (``Lowerer.sample_requests``); without them the LayerNorm internals
# fall back to bounds from the input code range, far too loose for BERT's epsilon of 1e-12.
SAMPLED_INPUTS.update({
    (MS, "SkipLayerNormalization"): (0, 1),
    (MS, "SkipSimplifiedLayerNormalization"): (0, 1),
    (MS, "SimplifiedLayerNormalization"): (0,),
    ("", "SimplifiedLayerNormalization"): (0,),  # onnxruntime registers it in the ai.onnx domain
    (MS, "BiasGelu"): (0,),
    (MS, "FastGelu"): (0,),
    (MS, "QuickGelu"): (0,),
    (MS, "Attention"): (0,),
    (MS, "QAttention"): (),  # its samples are those of the float tensor its DynamicQuantizeLinear reads
})
# Attention internals planned from samples get this margin on each side of the observed span: the
# samples are the first KEEP_ROWS calibration rows, the other ranges come from all rows.
MARGIN = 0.1
EMBED_PLAN_ROWS = 4096  # embedding-table rows used to plan EmbedLayerNormalization's internals
EMBED_PLAN_TOP = 32  # plus every sum of the 32 words and 32 positions with the largest entries


# ---- shared pieces ---------------------------------------------------------------------------------


def _span(x: Act) -> tuple[float, float]:
    """Real extremes of x's code type (codes 0 and hi)."""
    return x.scale * (0 - x.zp), x.scale * (x.type.hi - x.zp)


def _sum_bits(L: Lowerer, xs: list[Act]) -> int:
    return max(L.opts.act_bits, L.opts.norm_input_bits or 0, *(x.type.bits for x in xs))


def _bias_sum_type(L: Lowerer, x: Act, bias: np.ndarray, bits: int | None = None) -> CodeType:
    """Code type for ``x + bias`` (a per-channel constant), not an ONNX tensor so never calibrated.

    Covers the extremes of x's code type plus the bias, with 4 more bits than x (capped at
    ``internal_bits``): the sum cannot saturate, and the bias keeps sub-code precision.
    """
    lo, hi = _span(x)
    b = np.asarray(bias, np.float64)
    nb = bits or max(x.type.bits, min(L.opts.internal_bits, x.type.bits + 4))
    shape = tuple(np.broadcast_shapes(x.shape, b.shape))
    return range_type(lo + float(b.min()), hi + float(b.max()), nb, shape)


def _sum_acts(L: Lowerer, stem: str, xs: list[Act], bias: np.ndarray | None, out: CodeType) -> Act:
    """``sum(xs) + bias`` in one mul-form Soma: the common fine scale rule of ``Builder.add_acts``
    (:func:`emit.common_scale`, integer weights ``round(s_i / s_c)``), the constant in units of s_c."""
    scales = [x.scale for x in xs]
    big = 0.0 if bias is None or not np.size(bias) else float(np.max(np.abs(bias)))
    sc = common_scale(scales, [code_span(x.type) for x in xs], float(out.scale[0]), big)
    ws = [np.array([int(round(s / sc))], np.int64) for s in scales]
    b = None if bias is None else np.rint(np.asarray(bias, np.float64) / sc).astype(np.int64)
    return L.b.soma_mul(stem, xs, ws, sc, (1.0,), out, b)


def _const_or_none(L: Lowerer, v: Val | None, what: str) -> np.ndarray | None:
    return None if v is None else np.asarray(L.const_value(v, what), np.float64)


def _used(L: Lowerer, tensor: str) -> bool:
    return bool(tensor) and (bool(L.consumers.get(tensor)) or tensor in {o.name for o in L.model.graph.output})


def _no_training_outputs(L: Lowerer, n: onnx.NodeProto, idx: tuple[int, ...]) -> None:
    for i in idx:
        if i < len(n.output) and _used(L, n.output[i]):
            raise FrontendError(f"{n.op_type} {n.name or n.output[0]!r}: output {i} (mean / inv_std_var, saved for "
                                "training) is used; only the normalised output and the sum are supported")


def _samples_sum(L: Lowerer, names: list[str], bias: np.ndarray | None) -> np.ndarray | None:
    """Calibration samples of ``sum(names) + bias`` when every term has samples of a compatible shape."""
    vals = [L.stats.values(t) for t in names]
    if any(v is None for v in vals):
        return None
    try:
        s = np.zeros(np.broadcast_shapes(*(v.shape for v in vals)), np.float64)  # type: ignore[union-attr]
    except ValueError:
        return None
    for v in vals:
        s = s + np.asarray(v, np.float64)
    return s if bias is None else s + bias


def _act(v: Val | None, what: str) -> Act:
    if not isinstance(v, Act):
        raise FrontendError(f"{what} must be an activation, got {type(v).__name__}")
    return v


# ---- activations -----------------------------------------------------------------------------------


def _biased_lut(L: Lowerer, n: onnx.NodeProto, ins: list, fn: str, params: tuple[float, ...]) -> list:
    x = _act(ins[0], f"{n.op_type} input")
    bias = _const_or_none(L, ins[1], f"{n.op_type} bias") if len(ins) > 1 and ins[1] is not None else None
    samples = L.stats.values(n.input[0])
    xin = x
    if bias is not None:
        xin = L.b.affine_const(n.output[0] + ".bias", x, None, bias, _bias_sum_type(L, x, bias))
        samples = None if samples is None else np.asarray(samples, np.float64) + bias
    out = L.out_type(n.output[0], xin.shape)
    return [L.b.asnc_lut(n.output[0], xin, fn, params, out, samples)]


@register("BiasGelu", domain=MS)
def bias_gelu(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``gelu(A + B)`` (erf form), B a 1-D bias: an exact-table ASNC ``gelu`` on ``A + B``.
    Spec: {DOC}BiasGelu"""
    return _biased_lut(L, n, ins, "gelu", ())


@register("FastGelu", domain=MS)
def fast_gelu(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``0.5 x (1 + tanh(0.797885 x + 0.035677 x^3))`` of ``X (+ bias)``: an ASNC ``gelu_tanh`` table.
    Spec: {DOC}FastGelu (replaces the bias-less handler in ops_elementwise; without a bias it is the same)."""
    return _biased_lut(L, n, ins, "gelu_tanh", ())


@register("QuickGelu", domain=MS)
def quick_gelu(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``x * sigmoid(alpha x)`` (alpha 1.702 by default): an ASNC ``quick_gelu`` table. Spec: {DOC}QuickGelu"""
    return _biased_lut(L, n, ins[:1], "quick_gelu", (float(attr(n, "alpha", 1.702)),))


@register("BiasAdd", domain=MS)
def bias_add(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``X + bias + skip`` (Stable Diffusion's fusion): one Soma in the output's type. Spec: {DOC}BiasAdd"""
    x, skip = _act(ins[0], "BiasAdd X"), _act(ins[2], "BiasAdd skip")
    bias = _const_or_none(L, ins[1], "BiasAdd bias")
    shape = tuple(np.broadcast_shapes(x.shape, skip.shape))
    return [_sum_acts(L, n.output[0], [x, skip], bias, L.out_type(n.output[0], shape))]


for _f in (bias_gelu, fast_gelu, quick_gelu, bias_add):
    _f.__doc__ = (_f.__doc__ or "").replace("{DOC}", DOC)


# ---- normalisations --------------------------------------------------------------------------------


def _skip_sum(L: Lowerer, n: onnx.NodeProto, x: Act, skip: Val, bias: np.ndarray | None, sum_idx: int) -> Act:
    """``input + skip (+ bias)``: in the type of the ``input_skip_bias_sum`` output when the model uses it
    (the residual stream of pre-LN models), else in a type covering the operands' extremes."""
    o = n.output[sum_idx] if len(n.output) > sum_idx else ""
    if is_const(skip):
        c = np.asarray(L.const_value(skip), np.float64) + (0.0 if bias is None else bias)
        t = L.out_type(o, tuple(np.broadcast_shapes(x.shape, c.shape)), bits=_sum_bits(L, [x])) if _used(L, o) \
            else _bias_sum_type(L, x, c, _sum_bits(L, [x]))
        return L.b.affine_const(n.output[0] + ".sum", x, None, c, t)
    s = _act(skip, f"{n.op_type} skip")
    shape = tuple(np.broadcast_shapes(x.shape, s.shape))
    if _used(L, o):
        t = L.out_type(o, shape, bits=_sum_bits(L, [x, s]))
    else:
        (lx, hx), (ls, hs) = _span(x), _span(s)
        b = np.zeros(1) if bias is None else bias
        t = range_type(lx + ls + float(b.min()), hx + hs + float(b.max()), _sum_bits(L, [x, s]), shape)
    return _sum_acts(L, n.output[0] + ".sum", [x, s], bias, t)


@register("SkipLayerNormalization", domain=MS)
def skip_layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``LayerNorm(input + skip + bias) * gamma + beta`` over the last axis (eps default 1e-12).

    Inputs: input, skip (same shape, or broadcast over batch), gamma, beta (optional), bias (optional).
    Outputs: output, mean and inv_std_var (training only: an error if used), input_skip_bias_sum
    (optional: the residual stream, an activation here). Spec: ``DOC`` + ``SkipLayerNormalization``.
    The sum is one Soma; the normalisation is ``cores.layernorm_core``, planned from the samples of
    input and skip (:data:`SAMPLED_INPUTS`).
    """
    x = _act(ins[0], "SkipLayerNormalization input")
    gamma = _const_or_none(L, ins[2], "gamma")
    beta = _const_or_none(L, ins[3], "beta") if len(ins) > 3 else None
    bias = _const_or_none(L, ins[4], "bias") if len(ins) > 4 else None
    _no_training_outputs(L, n, (1, 2))
    s = _skip_sum(L, n, x, ins[1], bias, 3)
    eps = float(attr(n, "epsilon", 1e-12))
    samples = _samples_sum(L, [n.input[0], n.input[1]], bias)
    y = layernorm_core(L, n.output[0], s, gamma, beta, eps, L.out_type(n.output[0], s.shape), samples)
    return [y, None, None, s][:len(n.output)]


def rmsnorm_core(L: Lowerer, stem: str, x: Act, gamma: np.ndarray | None, eps: float, out: CodeType,
                 samples: np.ndarray | None) -> Act:
    """``x * rsqrt(mean(x^2) + eps) * gamma`` -- the LayerNorm decomposition without the centring::

        q = DecodeMAC(x * x)   v = Soma(q @ ones/K)   r = ASNC rsqrt(v; eps)   n = DecodeMAC(x * r)
        y = Soma(gamma * n)

    Internal ranges are planned like ``layernorm_core``'s (same margins) from the samples, or from
    the input code range without them.
    """
    k = x.shape[-1]
    ib = max(L.opts.internal_bits, x.type.bits)
    shape1 = x.shape[:-1] + (1,)
    if samples is not None:
        s = np.asarray(samples, np.float64)
        v = (s * s).mean(axis=-1, keepdims=True)
        qmax, vmax, vmin = float((s * s).max()), float(v.max()), float(v.min())
        nmax = float(np.abs(s / np.sqrt(v + eps)).max())
        vsamp = v.reshape(-1)
    else:
        m = max(abs(v) for v in _span(x))
        qmax = vmax = m * m
        vmin, nmax, vsamp = 0.0, float(np.sqrt(k)), None
    q = L.b.decode_mac(stem + ".sq", x, x, "mul", range_type(0.0, 1.21 * qmax, ib, x.shape))
    var = L.b.soma_matmul(stem + ".ms", q, np.ones((k, 1), np.int64), (1.0 / k,),
                          range_type(0.0, 1.25 * vmax, ib, shape1))
    r = L.b.asnc_lut(stem + ".rsqrt", var, "rsqrt", (float(eps),),
                     range_type(0.0, 1.0 / np.sqrt(0.5 * vmin + eps), ib, shape1), vsamp)
    nrm = L.b.decode_mac(stem + ".norm", x, r, "mul", range_type(-1.1 * nmax, 1.1 * nmax, ib, x.shape, symmetric=True))
    if gamma is None:
        return L.b.requant_to(stem, nrm, with_shape(out, x.shape))
    return L.b.affine_const(stem, nrm, gamma, None, with_shape(out, x.shape))


@register("SimplifiedLayerNormalization", domain=MS)
@register("SimplifiedLayerNormalization")
def simplified_layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """RMSNorm ``x / sqrt(mean(x^2) + eps) * scale`` over the last axis (onnxruntime's ai.onnx-domain
    contrib op, written by its LLaMA fusion); output inv_std_var is training-only."""
    x = _act(ins[0], "SimplifiedLayerNormalization input")
    if attr(n, "axis", -1) % len(x.shape) != len(x.shape) - 1:
        raise FrontendError("SimplifiedLayerNormalization only over the last axis is supported")
    _no_training_outputs(L, n, (1,))
    gamma = _const_or_none(L, ins[1], "scale")
    y = rmsnorm_core(L, n.output[0], x, gamma, float(attr(n, "epsilon", 1e-5)), L.out_type(n.output[0], x.shape),
                     L.stats.values(n.input[0]))
    return [y] + [None] * (len(n.output) - 1)


@register("SkipSimplifiedLayerNormalization", domain=MS)
def skip_simplified_layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """RMSNorm of ``input + skip + bias``; inputs input, skip, gamma, bias (optional); outputs as
    SkipLayerNormalization's. Spec: ``DOC`` + ``SkipSimplifiedLayerNormalization``."""
    x = _act(ins[0], "SkipSimplifiedLayerNormalization input")
    gamma = _const_or_none(L, ins[2], "gamma")
    bias = _const_or_none(L, ins[3], "bias") if len(ins) > 3 else None
    _no_training_outputs(L, n, (1, 2))
    s = _skip_sum(L, n, x, ins[1], bias, 3)
    samples = _samples_sum(L, [n.input[0], n.input[1]], bias)
    y = rmsnorm_core(L, n.output[0], s, gamma, float(attr(n, "epsilon", 1e-12)), L.out_type(n.output[0], s.shape),
                     samples)
    return [y, None, None, s][:len(n.output)]


def _lookup(L: Lowerer, stem: str, table: Val, ids: Ids) -> Act:
    """An embedding lookup exactly as the unfused ``Gather(table, ids)`` is lowered (ops_move.gather)."""
    g = onnx.helper.make_node("Gather", ["", ""], [stem], name=stem)
    r = gather(L, g, [table, ids])[0]
    assert isinstance(r, Act)
    return r


def _embed_plan_samples(word: np.ndarray, pos: np.ndarray, seg: np.ndarray | None) -> np.ndarray:
    """Stand-in samples of the embedding sum for planning the LayerNorm internals: every word row (or
    EMBED_PLAN_ROWS of them) with positions and segments cycled. Why: calibration sees no sum (it is
    inside the fused op) and does not keep integer inputs; the tables bound what any input can reach."""
    v = word.shape[0]
    rows = np.arange(v) if v <= EMBED_PLAN_ROWS else np.random.default_rng(0).choice(v, EMBED_PLAN_ROWS, False)
    s = word[rows].astype(np.float64) + pos[rows % pos.shape[0]]
    if seg is not None:
        s = s + seg[rows % seg.shape[0]]
    # the extremes: the words and positions with the largest entries, every pair of them (BERT's [CLS] at
    # position 0 has the largest squared deviation of all: a random sample misses it and it saturated)
    top_w = np.argsort(-np.abs(word).max(axis=1))[:EMBED_PLAN_TOP]
    top_p = np.argsort(-np.abs(pos).max(axis=1))[:EMBED_PLAN_TOP]
    pairs = (word[top_w].astype(np.float64)[:, None, :] + pos[top_p][None, :, :]).reshape(-1, word.shape[-1])
    if seg is not None:
        pairs = np.concatenate([pairs + seg[k] for k in range(seg.shape[0])])
    return np.concatenate([s, pairs])


@register("EmbedLayerNormalization", domain=MS)
def embed_layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """BERT's embedding block: ``LayerNorm(word[ids] + position[pos] + segment[segment_ids])``.

    Inputs: input_ids, segment_ids (opt), word_embedding, position_embedding, segment_embedding (opt),
    gamma, beta, mask (opt), position_ids (opt; default 0..S-1). Outputs: output, mask_index (the number
    of ones per mask row, for Attention: a :class:`MaskLengths`), embedding_sum (opt). Spec: ``DOC`` +
    ``EmbedLayerNormalization``. Lookups are lowered as the unfused Gathers; constant position rows are
    added as a constant; the normalisation is ``cores.layernorm_core`` planned from the tables.
    """
    get = lambda i: ins[i] if len(ins) > i else None  # noqa: E731
    ids, seg_ids, word, pos, seg = get(0), get(1), get(2), get(3), get(4)
    mask, pos_ids = get(7), get(8)
    if not isinstance(ids, Ids):
        raise FrontendError("EmbedLayerNormalization input_ids must be an integer graph input")
    if ids.base is not None and ids.base != ids.shape:
        raise FrontendError("EmbedLayerNormalization of reshaped input_ids is not supported")
    b_, s_ = ids.shape
    word_t, pos_t = L.const_value(word, "word_embedding"), np.asarray(L.const_value(pos, "position_embedding"))
    seg_t = np.asarray(L.const_value(seg, "segment_embedding")) if seg is not None else None
    stem = n.output[0]
    terms = [_lookup(L, stem + ".word", word, ids)]
    const = None
    if isinstance(pos_ids, Ids):
        terms.append(_lookup(L, stem + ".pos", pos, pos_ids))
        pos_plan = pos_t
    else:
        p = np.arange(s_) if pos_ids is None else np.asarray(L.const_value(pos_ids, "position_ids")).astype(np.int64)
        const = pos_t[p].astype(np.float64).reshape((1,) * (3 - np.ndim(pos_t[p])) + pos_t[p].shape)
        pos_plan = pos_t[p].reshape(-1, pos_t.shape[-1])
    if seg_ids is not None and seg_t is not None:
        if not isinstance(seg_ids, Ids):
            raise FrontendError("EmbedLayerNormalization segment_ids must be an integer graph input")
        terms.append(_lookup(L, stem + ".segment", seg, seg_ids))
    shape = (b_, s_, word_t.shape[-1])
    o_sum = n.output[2] if len(n.output) > 2 else ""
    bits = _sum_bits(L, terms)
    if _used(L, o_sum):
        t = L.out_type(o_sum, shape, bits=bits)
    else:
        lo = sum(_span(a)[0] for a in terms) + (float(const.min()) if const is not None else 0.0)
        hi = sum(_span(a)[1] for a in terms) + (float(const.max()) if const is not None else 0.0)
        t = range_type(lo, hi, bits, shape)
    s = _sum_acts(L, stem + ".sum", terms, const, t)
    plan = _embed_plan_samples(np.asarray(word_t), pos_plan, seg_t if seg_ids is not None else None)
    gamma, beta = _const_or_none(L, get(5), "gamma"), _const_or_none(L, get(6), "beta")
    y = layernorm_core(L, stem, s, gamma, beta, float(attr(n, "epsilon", 1e-12)), L.out_type(n.output[0], shape), plan)
    idx = MaskLengths(mask) if isinstance(mask, Ids) else None
    if len(n.output) > 1 and _used(L, n.output[1]) and idx is None:
        raise FrontendError("EmbedLayerNormalization mask_index is used but the node has no mask input")
    return [y, idx, s][:len(n.output)]


# ---- attention -------------------------------------------------------------------------------------


def _lengths_drop(L: Lowerer, stem: str, lengths: Act, s: int) -> Act:
    """drop[b, j] = (j >= lengths[b]) exactly: t = j - length (one Soma, scale 1), then a ``step`` table."""
    bits = max(2, (2 * s - 1).bit_length())
    t = L.b.soma_mul(stem + ".pos", [lengths], [-np.ones((1, s), np.int64)], 1.0, (1.0,),
                     code_type(bits, 1.0, s, (lengths.shape[0], s)), np.arange(s, dtype=np.int64))
    return L.b.asnc_lut(stem, t, "step", (), code_type(2, 1.0, 0, (lengths.shape[0], s)), None)


def _mask_drop(L: Lowerer, n: onnx.NodeProto, m: Val | MaskLengths | None, b: int, s: int) -> np.ndarray | Act | None:
    """Attention's mask_index as a drop mask broadcastable to the scores [B, N, S, S]: a constant bool
    array, or 0/1 codes (nonzero = drop) from an input. Formats (ContribOperators.md, Attention):
    [B, S] raw 0/1, [B, S, S] raw, [B] right-padding lengths; [2B] and [3B+2] are not supported."""
    stem = n.output[0] + ".mask"
    if m is None:
        return None
    if isinstance(m, Const):
        v = np.asarray(m.value).astype(np.int64)
        if v.shape == (b,):
            return (np.arange(s)[None, :] >= v[:, None]).reshape(b, 1, 1, s)
        if v.shape == (b, s):
            return (v == 0).reshape(b, 1, 1, s)
        if v.shape == (b, s, s):
            return (v == 0).reshape(b, 1, s, s)
        raise FrontendError(f"Attention mask_index of shape {list(v.shape)} is not supported "
                            "(supported: [batch], [batch, seq], [batch, seq, seq])")
    if isinstance(m, MaskLengths):
        keep = ids_as_codes(L, stem + ".keep", m.mask, 1)
        if keep.shape != (b, s):
            raise FrontendError(f"Attention mask_index from a mask of shape {list(keep.shape)}; expected {[b, s]}")
        bits = max(2, s.bit_length())
        lengths = L.b.soma_matmul(stem + ".len", keep, np.ones((s, 1), np.int64), (1.0,),
                                  code_type(bits, 1.0, 0, (b, 1)))
        return move(L, n, _lengths_drop(L, stem, lengths, s), (b, 1, 1, s))
    if isinstance(m, Ids):
        if m.shape == (b,):
            lengths = ids_as_codes(L, stem + ".len", Ids(m.name, (b, 1), m.base or m.shape), s)
            return move(L, n, _lengths_drop(L, stem, lengths, s), (b, 1, 1, s))
        if m.shape in ((b, s), (b, s, s)):
            drop = logical_not(L, stem + ".drop", ids_as_codes(L, stem + ".keep", m, 1))
            return move(L, n, drop, (b, 1, 1, s) if m.shape == (b, s) else (b, 1, s, s))
        raise FrontendError(f"Attention mask_index of shape {list(m.shape)} is not supported (supported: [batch] "
                            "lengths, [batch, seq] and [batch, seq, seq] 0/1 masks; not the left-padding formats)")
    raise FrontendError(f"Attention mask_index must be an integer input or constant, got {type(m).__name__}")


def _cols(w: Val, a: int, b: int) -> Val:
    """Columns a:b of a [K, N] weight (integer weights stay integers)."""
    if isinstance(w, QWeight):
        per = w.scale.size > 1
        return QWeight(w.q[:, a:b], w.scale[a:b] if per else w.scale, w.zero_point[a:b] if per else w.zero_point,
                       1 if per else None)
    assert isinstance(w, Const)
    return Const(np.asarray(w.value)[:, a:b])


def _planned(lo: float, hi: float, bits: int, shape: tuple[int, ...]) -> CodeType:
    pad = MARGIN * (hi - lo)
    return range_type(lo - pad, hi + pad, bits, shape)


def _interval_matmul(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> tuple[float, float]:
    """Bounds of ``x @ w + b`` over x in the box [lo, hi] (per input feature)."""
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    top = hi @ wp + lo @ wn + (0 if b is None else b)
    bot = lo @ wp + hi @ wn + (0 if b is None else b)
    return float(bot.min()), float(top.max())


@register("Attention", domain=MS)
def attention(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Multi-head self-attention with packed Q/K/V weights (BERT; GPT-2 with ``unidirectional=1``).

    ``Q|K|V = input @ weights + bias`` (columns hidden, hidden, v_hidden; ``qkv_hidden_sizes`` when
    they differ), heads split, ``softmax(Q K^T * scale + mask) V`` (scale default 1/sqrt(head_size)),
    heads merged. Spec: ``DOC`` + ``Attention``. Lowered as the unfused graph: three Somas (the scale
    folded into Q's weight scales), Reshape/Transpose, a DecodeMAC for the scores, the Softmax
    decomposition with Mask nodes, a DecodeMAC for the context. Masked scores get -inf where
    onnxruntime uses ``mask_filter_value`` (-1e4): the same unless a row masks every key.

    Supported mask_index: none, [B] lengths (right padding; also from ``ReduceSum(mask)`` and
    EmbedLayerNormalization), [B, S] and [B, S, S] 0/1 masks. Not supported (FrontendError): past /
    present state, attention_bias, past_sequence_length, do_rotary, the [2B] / [3B+2] mask formats.
    """
    x = _act(ins[0], "Attention input")
    for i, what in ((4, "past"), (5, "attention_bias"), (6, "past_sequence_length")):
        if len(n.input) > i and n.input[i]:
            raise FrontendError(f"Attention input {what!r} is not supported (node {n.name or n.output[0]!r})")
    if len(n.output) > 1 and _used(L, n.output[1]):
        raise FrontendError(f"Attention output 'present' is not supported (node {n.name or n.output[0]!r})")
    if attr(n, "do_rotary", 0):
        raise FrontendError(f"Attention attribute do_rotary=1 is not supported (node {n.name or n.output[0]!r})")
    if len(x.shape) != 3:
        raise FrontendError(f"Attention input must be [batch, seq, hidden], got {list(x.shape)}")
    heads = int(attr(n, "num_heads"))
    w = ins[1]
    if not is_const(w):
        raise FrontendError("Attention weights must be constant")
    wreal = np.asarray(L.const_value(w, "weights"), np.float64)
    total = wreal.shape[1]
    sizes = [int(v) for v in (attr(n, "qkv_hidden_sizes", None) or [total // 3] * 3)]
    if sum(sizes) != total or sizes[0] != sizes[1] or any(v % heads for v in sizes):
        raise FrontendError(f"Attention qkv_hidden_sizes {sizes} do not fit weights {list(wreal.shape)} "
                            f"and {heads} heads")
    bias = _const_or_none(L, ins[2], "bias") if len(ins) > 2 and ins[2] is not None else None
    bsz, seq, _ = x.shape
    hd, vd = sizes[0] // heads, sizes[2] // heads
    scale = float(attr(n, "scale", 0.0) or 1.0 / np.sqrt(hd))
    bits = L.opts.act_bits
    stem = n.output[0]
    cuts = [(0, sizes[0]), (sizes[0], 2 * sizes[0]), (2 * sizes[0], total)]
    mult = (scale, 1.0, 1.0)

    # plan Q (scaled), K, V and the scores from the float attention on the input's samples
    xs = L.stats.values(n.input[0])
    parts_f: list[np.ndarray] = []
    ranges: list[tuple[float, float]] = []
    for (a, b), f in zip(cuts, mult):
        wb = wreal[:, a:b] * f
        bb = None if bias is None else bias[a:b] * f
        if xs is not None:
            y = np.asarray(xs, np.float64) @ wb + (0 if bb is None else bb)
            parts_f.append(y)
            ranges.append((float(y.min()), float(y.max())))
        else:
            lo, hi = _span(x)
            ranges.append(_interval_matmul(np.full(wb.shape[0], lo), np.full(wb.shape[0], hi), wb, bb))
    if xs is not None:
        r = parts_f[0].shape[0]
        qf = parts_f[0].reshape(r, seq, heads, hd).transpose(0, 2, 1, 3)
        kf = parts_f[1].reshape(r, seq, heads, hd).transpose(0, 2, 3, 1)
        sf = qf @ kf
        s_lo, s_hi = float(sf.min()), float(sf.max())
    else:
        m = max(abs(v) for v in ranges[0]) * max(abs(v) for v in ranges[1]) * hd
        s_lo, s_hi, sf = -m, m, None

    projs = []
    for (a, b), f, (lo, hi), name in zip(cuts, mult, ranges, ("q", "k", "v")):
        q, sw = weight_ints(L, _cols(w, a, b))
        sw = tuple(v * f for v in sw)
        bu = None if bias is None else bias_units(L, Const(bias[a:b] * f), x.scale, sw, b - a)
        projs.append(L.b.soma_matmul(f"{stem}.{name}", x, q, sw, _planned(lo, hi, bits, (bsz, seq, b - a)), bu))
    qa, ka, va = projs
    qh = move(L, n, qa, (bsz, seq, heads, hd))
    qh = move(L, n, qh, (bsz, heads, seq, hd), (0, 2, 1, 3))
    kh = move(L, n, ka, (bsz, seq, heads, hd))
    kh = move(L, n, kh, (bsz, heads, hd, seq), (0, 2, 3, 1))
    vh = move(L, n, va, (bsz, seq, heads, vd))
    vh = move(L, n, vh, (bsz, heads, seq, vd), (0, 2, 1, 3))
    assert isinstance(qh, Act) and isinstance(kh, Act) and isinstance(vh, Act)
    scores = L.b.decode_mac(stem + ".scores", qh, kh, "matmul", _planned(s_lo, s_hi, bits, (bsz, heads, seq, seq)))

    drop = _mask_drop(L, n, ins[3] if len(ins) > 3 else None, bsz, seq)
    if attr(n, "unidirectional", 0):
        causal = np.triu(np.ones((seq, seq), bool), 1)
        if drop is None:
            drop = causal
        elif isinstance(drop, np.ndarray):
            drop = drop | causal
        else:
            shape = tuple(np.broadcast_shapes(drop.shape, causal.shape))
            full = broadcast_to(L, stem + ".mask.full", drop, shape)  # a Soma's bias may not grow its shape
            drop = L.b.affine_const(stem + ".mask.causal", full, None, causal.astype(np.float64),
                                    code_type(2, 1.0, 0, shape))
    if isinstance(drop, np.ndarray):
        drop = np.broadcast_to(drop, scores.shape)
    sm_in: Act | Masked = scores if drop is None else Masked(scores, drop)
    samples = None if isinstance(drop, Act) else sf  # an input-dependent mask: no faithful score samples
    probs_t = code_type(bits, 1.0 / ((1 << bits) - 1), 0, scores.shape)
    probs = softmax_core(L, stem + ".softmax", sm_in, probs_t, samples, masked_rows="zero")
    out = L.out_type(n.output[0], (bsz, seq, sizes[2]))
    ctx = L.b.decode_mac(stem + ".context", probs, vh, "matmul", with_shape(out, (bsz, heads, seq, vd)))
    ctx = move(L, n, ctx, (bsz, seq, heads, vd), (0, 2, 1, 3))
    return [move(L, n, ctx, (bsz, seq, sizes[2]))] + [None] * (len(n.output) - 1)


# ---- onnxruntime's dynamically quantized fusions (quantize_dynamic of an optimize_model output) ----------------


def _dequantized(L: Lowerer, v: Val | None, s: Val | None, z: Val | None, what: str) -> Val | None:
    """An integer constant with its constant (scale, zero point), per tensor or per last axis (per column):
    a :class:`QWeight`, so integer weights stay the model's integers."""
    if v is None:
        return None
    q = np.asarray(L.const_value(v, what))
    if q.dtype.kind not in "iu":
        return Const(q)
    sv = np.asarray(L.const_value(s, f"{what} scale"), np.float32).reshape(-1)
    zv = np.zeros(sv.shape, np.int64) if z is None else np.asarray(L.const_value(z, f"{what} zero point")).reshape(-1)
    zv = np.broadcast_to(zv.astype(np.int64), sv.shape) if zv.size == 1 and sv.size > 1 else zv.astype(np.int64)
    return QWeight(q, sv, zv, None if sv.size == 1 else q.ndim - 1)


def _dynamic_input(L: Lowerer, n: onnx.NodeProto, x: Val, s: Val, z: Val | None) -> Act:
    """The real view of a quantized operand read through (scale, zero point): the codes of a
    DynamicQuantizeLinear output already carry its (calibrated) scale; constant parameters retype them."""
    if not (isinstance(x, Act) and x.quantized):
        raise FrontendError(f"{n.op_type} input {n.input[0]!r} must be quantized codes, got {type(x).__name__}")
    if isinstance(s, DynScale):
        if not isinstance(z, DynScale | None) or s.act.name != x.name:
            raise FrontendError(f"{n.op_type}: the run-time scale of {n.input[0]!r} is not its own "
                                "DynamicQuantizeLinear's")
        return x.as_float()
    r = q_input(L, x, s, z)
    assert isinstance(r, Act)
    return r


def _float_source(L: Lowerer, tensor: str) -> str:
    """The float tensor a DynamicQuantizeLinear output quantizes (its calibration samples plan the fused op's
    internals), else ``tensor`` itself."""
    op, src = L.sources.get(tensor, ("", None))
    return src.input[0] if op == "DynamicQuantizeLinear" and src is not None and src.input else tensor


@register("QAttention", domain=MS)
def qattention(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``Attention`` of a quantized input with integer packed Q/K/V weights (what ``quantize_dynamic`` writes
    for an optimizer's Attention). Inputs: input, weight, bias, input_scale, weight_scale, mask_index,
    input_zero_point, weight_zero_point, past. Spec: ``DOC`` + ``QAttention``; onnxruntime's CPU kernel
    accumulates ``(x - zx)(w - zw)`` in integers and scales by ``sx * sw`` before the float bias and the
    attention. Lowered as :func:`attention` with the model's integer weights (one Soma per Q/K/V reads the
    input codes directly), the input's codes read through its (run-time scale made static by calibration)
    type. ``past`` is refused as Attention's is."""
    get = lambda i: ins[i] if len(ins) > i else None  # noqa: E731
    if len(n.input) > 8 and n.input[8]:
        raise FrontendError(f"QAttention input 'past' is not supported (node {n.name or n.output[0]!r})")
    x = _dynamic_input(L, n, ins[0], get(3), get(6))
    w = _dequantized(L, ins[1], get(4), get(7), "QAttention weight")
    src = _float_source(L, n.input[0])
    a = onnx.helper.make_node("Attention", [src, n.input[1], n.input[2], n.input[5] if len(n.input) > 5 else ""],
                              list(n.output), name=n.name, domain=MS)
    a.attribute.extend(n.attribute)
    return attention(L, a, [x, w, get(2), get(5)])


@register("QEmbedLayerNormalization", domain=MS)
def qembed_layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """EmbedLayerNormalization with uint8/int8 tables, gamma and beta (``quantize_dynamic``). Inputs:
    input_ids, segment_ids, word/position/segment embedding, gamma, beta (quantized), mask, then their five
    scales and five zero points. Spec: ``DOC`` + ``QEmbedLayerNormalization``; onnxruntime's kernel
    dequantizes each looked-up row, sums in float and normalises: lowered as :func:`embed_layernorm` on the
    dequantized tables (the lookups are exact table reads of those values)."""
    get = lambda i: ins[i] if len(ins) > i else None  # noqa: E731
    tables = []
    for k, what in enumerate(("word_embedding", "position_embedding", "segment_embedding", "gamma", "beta")):
        v = _dequantized(L, get(2 + k), get(8 + k), get(13 + k), what)
        tables.append(None if v is None else Const(np.asarray(L.const_value(v, what), np.float32)))
    e = onnx.helper.make_node("EmbedLayerNormalization", list(n.input[:8]), list(n.output), name=n.name, domain=MS)
    e.attribute.extend(n.attribute)
    return embed_layernorm(L, e, [get(0), get(1), *tables, get(7)])


@prepare_hook
def _qattention_samples(L: Lowerer) -> None:
    """Make each QAttention fed by a DynamicQuantizeLinear ask for the calibration samples of the float tensor
    that DynamicQuantizeLinear reads: its Q/K/V and score ranges are planned from them (the integer codes
    were quantized with a different run-time scale per calibration row, so they cannot stand in)."""
    for n in L.model.graph.node:
        if n.domain != MS or n.op_type != "QAttention" or not n.input:
            continue
        src = _float_source(L, n.input[0])
        if src == n.input[0]:
            continue
        L.fused[id(n)] = lambda n=n: qattention(L, n, [L.env.get(i) if i else None for i in n.input])
        L.fused_samples[id(n)] = (src,)


# ---- FusedMatMul ------------------------------------------------------------------------------------------


def _t_last(L: Lowerer, n: onnx.NodeProto, x: Act) -> Act:
    """``x`` with its last two axes swapped (data movement)."""
    r = len(x.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    y = move(L, n, x, tuple(x.shape[p] for p in perm), perm)
    assert isinstance(y, Act)
    return y


@register("FusedMatMul", domain=MS)
def fused_matmul(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """``alpha * op(A) @ op(B)`` with ``op`` an optional swap of the last two axes (``transA`` / ``transB``):
    what onnxruntime's MatMulScaleFusion writes for ``(Q @ K^T) * scale`` (a graph it saved with graph
    optimisations on). Spec: ``DOC`` + ``FusedMatMul``. A positive alpha is folded into A's scale (the same
    codes viewed at ``alpha * scale``); two activations meet in a DecodeMAC, a constant B in a Soma.
    ``transBatchA`` / ``transBatchB`` are refused."""
    a, b = ins[0], ins[1]
    alpha = float(attr(n, "alpha", 1.0))
    if attr(n, "transBatchA", 0) or attr(n, "transBatchB", 0):
        raise FrontendError(f"FusedMatMul with transBatchA/transBatchB is not supported (node {n.name!r})")
    if not isinstance(a, Act) or len(a.shape) < 2:
        raise FrontendError(f"FusedMatMul A must be an activation of rank >= 2, got {type(a).__name__}")
    if not alpha > 0:
        raise FrontendError(f"FusedMatMul alpha {alpha} (a positive scale is supported)")
    if attr(n, "transA", 0):
        a = _t_last(L, n, a)
    if is_const(b):
        w = np.asarray(L.const_value(b, "B"))
        if w.ndim != 2:
            raise FrontendError(f"FusedMatMul with a constant B of rank {w.ndim} (2-D weights only)")
        return [soma_linear(L, n, a, b, None, n.output[0], trans_b=bool(attr(n, "transB", 0)), alpha=alpha)]
    if not isinstance(b, Act) or len(b.shape) < 2:
        raise FrontendError(f"FusedMatMul B must be a constant or an activation of rank >= 2, got {type(b).__name__}")
    if attr(n, "transB", 0):
        b = _t_last(L, n, b)
    if alpha != 1.0:
        a = retype(L, n.output[0] + ".alpha", a, code_type(a.type.bits, a.scale * alpha, a.zp, a.shape))
    shape = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1])
    return [L.b.decode_mac(n.output[0], a, b, "matmul", L.out_type(n.output[0], shape))]
