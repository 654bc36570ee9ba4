"""SmoothQuant-style migration of activation outliers out of normalisation outputs (a compile-time transform).

Why: transformers keep a few *systematic* outlier channels (BERT's channel 99, LLaMA's massive
activations): the same few channels are tens of times larger than the rest on every token. A normalisation
output (LayerNorm / RMSNorm: the input of every Q/K/V and FFN-up projection) inherits them through its
per-channel gain, so an 8-bit per-tensor code spanning them leaves the other channels two or three codes.
Clipping them is no remedy -- they carry meaning (measured on all-MiniLM-L6-v2: percentile clipping lowers
the sentence cosine, see notes/quantization.md) -- and a spiking core has one code type per tensor, with no
per-token scale.

SmoothQuant (Xiao et al. 2023) moves the outliers into the weights instead: for a per-channel factor
``s_j``, ``Y @ W == (Y / s) @ (diag(s) W)``. Here ``Y / s`` costs nothing -- it is the normalisation with
gain ``gamma / s`` and bias ``beta / s`` -- and ``diag(s) W`` is a constant weight the compiler quantizes per
output channel anyway. ``s_j = max|Y_j|^alpha / max|W_j|^(1 - alpha)`` (the paper's rule; ``alpha`` = 0.5
balances the two ranges).

The normalisation output usually also feeds a residual ``Add`` (post-LN BERT) or is the graph output; those
consumers need ``Y`` itself. So the transform never edits the node: it adds a *copy* of the normalisation
with the divided gain and bias, read only by the linear consumers (MatMul / Gemm with a constant weight);
the original keeps its other consumers. The float function is unchanged (tests check it in onnxruntime);
the price is one more normalisation per site, whose mean/variance part repeats the original's.

The copy's calibration range follows from the original's per-channel range without a second calibration
run: ``[min_j lo_j / s_j, max_j hi_j / s_j]`` (``s > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# (op type, domain) -> (gain input index, bias input index or None). Each normalises over the last axis
# (checked) and ends in a per-channel affine map, so dividing gain and bias by s divides the output by s.
# onnxruntime's fused normalisations (optimize_model) are sites too: SkipLayerNormalization's
# ``LayerNorm(input + skip + bias) * gamma + beta`` (its ``bias`` input, index 4, is added *before* the
# normalisation and is left alone); the copy produces only the normalised output (not the sum or mean).
# Not EmbedLayerNormalization: its copy would repeat the embedding lookups, i.e. a second quantized word table
# (all-MiniLM-L6-v2: 30522 x 384 16-bit codes, 23 MB) for one projection's 8-bit input.
NORMS: dict[tuple[str, str], tuple[int, int | None]] = {
    ("LayerNormalization", ""): (1, 2),
    ("RMSNormalization", ""): (1, None),
    ("SimplifiedLayerNormalization", ""): (1, None),
    ("SimplifiedLayerNormalization", "com.microsoft"): (1, None),
    ("SkipLayerNormalization", "com.microsoft"): (2, 3),
    ("SkipSimplifiedLayerNormalization", "com.microsoft"): (2, None),
}
# Linear consumers besides MatMul / Gemm: (op type, domain) whose input 0 is multiplied by a constant [K, N]
# weight at input 1 before anything else -- onnxruntime's fused Attention (packed Q|K|V weight: scaling
# its rows by s scales every projection's input channel at once; its bias is added after the product).
FUSED_LINEAR = frozenset({("Attention", "com.microsoft")})
DEFAULT_ALPHA = 0.5
S_LIMITS = (1e-4, 1e4)  # a channel that is zero on every calibration row (or in every weight) keeps s = 1


@dataclass
class Site:
    """One normalisation output whose linear consumers can take smoothed inputs."""

    norm: onnx.NodeProto
    tensor: str                                  # the normalisation output (Y)
    linear: list[tuple[onnx.NodeProto, bool]]    # (MatMul/Gemm/Attention consumer, weight stored transposed)


@dataclass
class Smoothed:
    """What :func:`apply` did at one site (the compile info lists these)."""

    tensor: str          # the original normalisation output
    copy: str            # the smoothed copy the linear consumers now read
    scale: np.ndarray    # s, per channel
    consumers: list[str]
    range: tuple[float, float]  # the copy's calibration range

    def describe(self) -> str:
        s = self.scale
        return (f"{self.tensor} -> {len(self.consumers)} linear consumer(s): range {self.range[0]:.3g}.."
                f"{self.range[1]:.3g}, s in {float(s.min()):.3g}..{float(s.max()):.3g}")


def _domain(n: onnx.NodeProto) -> str:
    return "" if n.domain in ("", "ai.onnx") else n.domain


def _attr(n: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in n.attribute if a.name == name), default)


def sites(model: onnx.ModelProto, consts: set[str], const_shape: dict[str, tuple[int, ...]]) -> list[Site]:
    """Normalisation outputs read by at least one MatMul/Gemm (or fused Attention) with a constant 2-D weight.

    ``consts``: names of constant tensors (initializers); ``const_shape``: their shapes.
    The normalisation must act on the last axis with a constant 1-D gain (and bias) of that axis' size.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    out = []
    for n in model.graph.node:
        idx = NORMS.get((n.op_type, _domain(n)))
        if idx is None or not n.output or not n.output[0]:
            continue
        g, b = idx
        if len(n.input) <= g or n.input[g] not in consts or len(const_shape[n.input[g]]) != 1:
            continue
        c = const_shape[n.input[g]][0]
        has_bias = b is not None and len(n.input) > b and bool(n.input[b])
        if has_bias and (n.input[b] not in consts or const_shape[n.input[b]] != (c,)):
            continue
        if _attr(n, "axis", -1) != -1:
            continue  # a normalisation over more than the last axis: the gain is not per channel
        if _attr(n, "stash_type", 1) != 1:
            continue
        y = n.output[0]
        lin = []
        for k in consumers.get(y, []):
            if (k.op_type == "MatMul" and _domain(k) == "" or (k.op_type, _domain(k)) in FUSED_LINEAR) \
                    and k.input[0] == y and len(k.input) > 1 and k.input[1] != y \
                    and k.input[1] in consts and len(const_shape[k.input[1]]) == 2 \
                    and const_shape[k.input[1]][0] == c:
                lin.append((k, False))
            elif k.op_type == "Gemm" and _domain(k) == "" and k.input[0] == y and _attr(k, "transA", 0) == 0 \
                    and k.input[1] in consts and len(const_shape[k.input[1]]) == 2:
                tb = bool(_attr(k, "transB", 0))
                if const_shape[k.input[1]][1 if tb else 0] == c:
                    lin.append((k, tb))
        if lin:
            out.append(Site(n, y, lin))
    return out


def scales(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel factor ``max|X_j|^alpha / max|W_j|^(1-alpha)`` (1 where a side is zero)."""
    x = np.asarray(x_absmax, np.float64)
    w = np.asarray(w_absmax, np.float64)
    ok = (x > 0) & (w > 0) & np.isfinite(x) & np.isfinite(w)
    s = np.ones_like(x)
    s[ok] = x[ok] ** alpha / w[ok] ** (1.0 - alpha)
    return np.clip(s, *S_LIMITS)


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name


def apply(model: onnx.ModelProto, consts: dict[str, np.ndarray], site_list: list[Site],
          channel_range: dict[str, tuple[np.ndarray, np.ndarray]], alpha: float = DEFAULT_ALPHA,
          stub: bool = False) -> tuple[list[Smoothed], dict[str, np.ndarray]]:
    """Add a smoothed copy of each site's normalisation and point its linear consumers at it (in place).

    ``consts``: constant arrays by name (gain, bias, weights). ``channel_range``: per-channel (min, max) of
    each site's output over the calibration rows (last axis). Returns what was done and the new constant
    arrays (scaled weights, divided gain/bias). ``stub``: the new large weights enter the proto as
    in-memory external-data stubs (the frontend's light model, :func:`~lasercc.frontends.onnx.load.split_weights`)
    rather than with their data.
    """
    from lasercc.frontends.onnx.load import IN_MEMORY, SPLIT_ELEMENTS

    g = model.graph
    taken = {i.name for i in g.initializer} | {o for n in g.node for o in n.output} | {n.name for n in g.node} \
        | {i.name for i in g.input}
    new_consts: dict[str, np.ndarray] = {}
    done: list[Smoothed] = []
    inserts: dict[str, onnx.NodeProto] = {}   # original norm's output Y -> its copy, inserted right after it

    def add_const(base: str, arr: np.ndarray) -> str:
        name = _fresh(base, taken)
        new_consts[name] = arr
        if stub and arr.size >= SPLIT_ELEMENTS:
            t = g.initializer.add()
            t.name, t.data_type = name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            t.dims.extend(arr.shape)
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", IN_MEMORY), ("offset", "0"), ("length", str(arr.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
        else:
            g.initializer.append(numpy_helper.from_array(arr, name))
        return name

    for site in site_list:
        r = channel_range.get(site.tensor)
        if r is None:
            continue
        lo, hi = (np.asarray(v, np.float64) for v in r)
        gi, bi = NORMS[(site.norm.op_type, _domain(site.norm))]
        gamma = np.asarray(consts[site.norm.input[gi]])
        if lo.shape != gamma.shape:
            continue
        w_abs = np.zeros(gamma.shape, np.float64)
        for k, tb in site.linear:
            w = np.abs(np.asarray(consts[k.input[1]], np.float64))
            w_abs = np.maximum(w_abs, w.max(axis=0) if tb else w.max(axis=1))
        s = scales(np.maximum(np.abs(lo), np.abs(hi)), w_abs, alpha)
        n = site.norm
        ins = list(n.input)
        ins[gi] = add_const(f"{ins[gi]}.smooth", (gamma / s).astype(gamma.dtype))
        if bi is not None and len(ins) > bi and ins[bi]:
            beta = np.asarray(consts[ins[bi]])
            ins[bi] = add_const(f"{ins[bi]}.smooth", (beta / s).astype(beta.dtype))
        y = _fresh(f"{site.tensor}.smooth", taken)
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = _fresh(f"{n.name or site.tensor}.smooth", taken)
        del copy.input[:]
        copy.input.extend(ins)
        del copy.output[:]
        copy.output.append(y)  # only Y: mean / inverse std-dev outputs stay the original's
        inserts[site.tensor] = copy
        names = []
        for k, tb in site.linear:
            w = np.asarray(consts[k.input[1]])
            ws = (w * (s[None, :] if tb else s[:, None])).astype(w.dtype)
            k.input[1] = add_const(f"{k.input[1]}.smooth", ws)
            k.input[0] = y
            names.append(k.name or k.output[0])
        rng = (float(np.min(lo / s)), float(np.max(hi / s)))
        done.append(Smoothed(site.tensor, y, s, names, rng))
    if inserts:
        nodes = []
        for n in g.node:
            nodes.append(_copied(n))  # copies: the container is cleared below
            if n.output and n.output[0] in inserts and (n.op_type, _domain(n)) in NORMS:
                nodes.append(inserts[n.output[0]])
        del g.node[:]
        g.node.extend(nodes)
    return done, new_consts


def _copied(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c
