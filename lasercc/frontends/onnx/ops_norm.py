"""LayerNormalization (opsets 17+) and RMSNormalization (opset 23), over any ``axis``.

Both normalise over *all* axes from ``axis`` to the end, as one group: the input is viewed (a Reshape, data
movement) as ``[d_0, ..., d_{axis-1}, K]`` with ``K`` the product of the normalised axes, and the decomposition
of :func:`cores.layernorm_core` runs over that last axis::

    LayerNorm:  mu = Soma(x @ ones/K)   c = Soma(x - mu)   q = DecodeMAC(c * c)   v = Soma(q @ ones/K)
    RMSNorm:    c = x                                      q = DecodeMAC(c * c)   v = Soma(q @ ones/K)
    r = ASNC rsqrt(v; eps)   n = DecodeMAC(c * r)   y = n * Scale (+ B)

``Scale`` and ``B`` broadcast unidirectionally to ``X``. Constants become the weight and bias of one Soma; an
activation Scale (fed as an input) is a DecodeMAC product and an activation B a two-input Soma. The optional
outputs ``Mean`` and ``InvStdDev`` (LayerNorm) are the core's mean Soma and rsqrt table, requantized into
their calibrated types. ``stash_type`` names the float precision of stage one; the integer decomposition has
no float precision to choose, so every value is accepted and computes the same codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from lasercc.frontends.onnx.common import broadcast_to, move
from lasercc.frontends.onnx.cores import layernorm_core
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import SAMPLED_INPUTS, attr, register
from lasercc.frontends.onnx.values import Act, Const, QWeight, Val, range_type

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

SAMPLED_INPUTS[("", "RMSNormalization")] = (0,)


def _mv(stem: str) -> onnx.NodeProto:
    return onnx.helper.make_node("Reshape", [], [stem])


def _span(x: Act) -> tuple[float, float]:
    return x.scale * (x.type.lo - x.zp), x.scale * (x.type.hi - x.zp)


def _flat_const(c: np.ndarray, shape: tuple[int, ...], flat: tuple[int, ...], what: str) -> np.ndarray:
    """A constant broadcast (unidirectionally) to ``shape`` and viewed as ``flat``, reduced to one row
    when it does not vary over the leading axes."""
    try:
        full = np.broadcast_to(np.asarray(c, np.float64), shape)
    except ValueError:
        raise FrontendError(f"{what} of shape {list(np.shape(c))} does not broadcast to the input "
                            f"{list(shape)}") from None
    f = full.reshape(flat)
    rows = f.reshape(-1, flat[-1])
    if np.all(rows == rows[:1]):
        return rows[0].copy()
    return np.ascontiguousarray(f)


def _flat_act(L: Lowerer, stem: str, a: Act, shape: tuple[int, ...], axis: int, flat: tuple[int, ...]) -> Act:
    """An activation Scale/B broadcast to the input and viewed like it (``[..., K]``); only the normalised
    axes are materialised when it does not vary over the leading ones."""
    r = len(shape)
    if len(a.shape) > r or tuple(np.broadcast_shapes(a.shape, shape)) != tuple(shape):
        raise FrontendError(f"an input of shape {list(a.shape)} does not broadcast to {list(shape)}")
    lead = (1,) * (r - len(a.shape)) + tuple(a.shape)
    if all(d == 1 for d in lead[:axis]):
        suffix = tuple(shape[axis:])
        x = move(L, _mv(stem + ".view"), a, lead[axis:]) if lead[axis:] != a.shape else a
        assert isinstance(x, Act)
        x = broadcast_to(L, stem + ".bc", x, suffix)
        return move(L, _mv(stem + ".flat"), x, (1,) * (len(flat) - 1) + (flat[-1],))  # type: ignore[return-value]
    x = broadcast_to(L, stem + ".bc", a, tuple(shape))
    return move(L, _mv(stem + ".flat"), x, flat)  # type: ignore[return-value]


def _norm(L: Lowerer, n: onnx.NodeProto, ins: list, rms: bool) -> list:
    x = ins[0]
    if not isinstance(x, Act) or x.integer or x.boolean:
        raise FrontendError(f"{n.op_type} of {type(x).__name__ if not isinstance(x, Act) else 'integer data'}: "
                            "the input must be a float activation")
    shape = x.shape
    r = len(shape)
    if r == 0:
        raise FrontendError(f"{n.op_type} of a scalar")
    axis = int(attr(n, "axis", -1))
    if not -r <= axis < r:
        raise FrontendError(f"{n.op_type} axis={axis} is out of range for a rank-{r} input")
    axis %= r
    k = int(np.prod(shape[axis:]))
    flat = (tuple(shape[:axis]) or (1,)) + (k,)
    stem = n.output[0]
    xf = move(L, _mv(stem + ".group"), x, flat)
    assert isinstance(xf, Act)
    samples = L.stats.values(n.input[0])
    if samples is not None and np.size(samples) % k:
        samples = None
    gamma_v: Val | None = ins[1] if len(ins) > 1 else None
    beta_v: Val | None = ins[2] if len(ins) > 2 and not rms else None
    cg = isinstance(gamma_v, Const | QWeight) or gamma_v is None
    cb = isinstance(beta_v, Const | QWeight) or beta_v is None
    gamma = None if gamma_v is None or not cg else _flat_const(L.const_value(gamma_v), shape, flat, "Scale")
    beta = None if beta_v is None or not cb else _flat_const(L.const_value(beta_v), shape, flat, "B")
    parts: dict = {}
    eps = float(attr(n, "epsilon", 1e-5))
    out = L.out_type(n.output[0], shape)
    if cg and cb:
        y = layernorm_core(L, stem, xf, gamma, beta, eps, out, samples, rms=rms, parts=parts)
    else:
        nrm = layernorm_core(L, stem, xf, None, None, eps, None, samples, rms=rms, parts=parts)
        y = _affine_acts(L, n, nrm, gamma_v, beta_v, gamma, beta, shape, axis, flat, out)
    res = [move(L, _mv(stem), y, shape)]
    red = tuple(shape[:axis]) + (1,) * (r - axis)
    for i, key in ((1, "mean"), (2, "rsqrt")):
        if len(n.output) <= i:
            continue
        o = n.output[i]
        if not o or rms:
            res.append(None)
            continue
        v = parts[key]
        if L.stats.range(o) is not None:
            v = L.b.requant_to(o, v, L.out_type(o, v.shape, bits=max(L.opts.act_bits, v.type.bits)))
        res.append(move(L, _mv(o), v, red))
    return res


def _affine_acts(L: Lowerer, n: onnx.NodeProto, nrm: Act, gamma_v: Val | None, beta_v: Val | None,
                 gamma: np.ndarray | None, beta: np.ndarray | None, shape: tuple[int, ...], axis: int,
                 flat: tuple[int, ...], out) -> Act:  # noqa: ANN001
    """``nrm * Scale + B`` where Scale and/or B are activations."""
    stem = n.output[0]
    ib = max(L.opts.internal_bits, nrm.type.bits)
    y = nrm
    lo, hi = _span(nrm)
    has_beta = beta_v is not None and (beta is None or np.any(beta))
    if isinstance(gamma_v, Act):
        g = _flat_act(L, stem + ".scale", gamma_v, shape, axis, flat)
        glo, ghi = _span(g)
        corners = [lo * glo, lo * ghi, hi * glo, hi * ghi]
        t = range_type(min(corners), max(corners), ib, flat) if has_beta else out.model_copy(update={"shape": flat})
        y = L.b.decode_mac(stem + ".scaled", nrm, g, "mul", t)
    elif gamma is not None:
        m = float(np.abs(gamma).max())
        t = range_type(-m * max(abs(lo), abs(hi)), m * max(abs(lo), abs(hi)), ib, flat) if has_beta \
            else out.model_copy(update={"shape": flat})
        y = L.b.affine_const(stem + ".scaled", nrm, gamma, None, t)
    if not has_beta:
        return L.b.requant_to(stem, y, out.model_copy(update={"shape": flat}))
    o = out.model_copy(update={"shape": flat})
    if isinstance(beta_v, Act):
        b = _flat_act(L, stem + ".bias", beta_v, shape, axis, flat)
        return L.b.add_acts(stem, y, b, 1, o)
    return L.b.affine_const(stem, y, None, beta, o)


@register("LayerNormalization", sampled=(0,))
def layernorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """LayerNormalization over axes ``axis..rank-1`` (see the module docstring)."""
    return _norm(L, n, ins, rms=False)


@register("RMSNormalization", sampled=(0,))
def rmsnorm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """RMSNormalization (opset 23) over axes ``axis..rank-1``: ``x / sqrt(mean(x^2) + eps) * scale``."""
    return _norm(L, n, ins, rms=True)


@register("BatchNormalization")
def batch_norm(L: Lowerer, n: onnx.NodeProto, ins: list) -> list:
    """Inference-mode BatchNormalization: ``(x - mean) / sqrt(var + epsilon) * scale + B`` with constant
    statistics is one per-channel affine map ``x * a + b`` -- a one-input Soma (``Builder.affine_const``).

    Parameters are per channel (axis 1, any rank >= 2) or, with opset < 9's ``spatial=0``, per element of
    ``[C, D1, ...]``. ``training_mode=1`` (batch statistics, running-stat outputs) and statistics computed at run
    time are refused by name: the spiking program's weights are fixed when it is built."""
    if int(attr(n, "training_mode", 0)) or any(o for o in n.output[1:]):
        raise FrontendError(f"BatchNormalization node {n.name!r} in training mode (batch statistics or running-stat "
                            "outputs) is not supported; export the model in eval mode")
    x = ins[0]
    if not isinstance(x, Act) or x.integer or x.quantized:
        raise FrontendError(f"BatchNormalization node {n.name!r}: input X is a "
                            f"{'integer tensor' if isinstance(x, Act) else type(x).__name__}; it must be a float "
                            "activation")
    if len(x.shape) < 2:
        raise FrontendError(f"BatchNormalization node {n.name!r} needs an [N, C, ...] input, got {list(x.shape)}")
    params = []
    for k, what in ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")):
        v = ins[k] if len(ins) > k else None
        if not isinstance(v, Const | QWeight):
            raise FrontendError(f"BatchNormalization node {n.name!r}: {what} is "
                                f"{'missing' if v is None else 'computed at run time'}; only constant statistics "
                                "and parameters have a spiking form")
        params.append(np.asarray(L.const_value(v, what), np.float64))
    shape = x.shape
    c = shape[1]
    per_element = int(attr(n, "spatial", 1)) == 0 and L.opset.get("", 17) < 9

    def fit(p: np.ndarray) -> np.ndarray:  # [C] -> [C, 1, ...] beside the batch axis; spatial=0: [C, D1, ...]
        if per_element:
            return np.broadcast_to(p, shape[1:])
        return np.broadcast_to(p.reshape(-1), (c,)).reshape((c,) + (1,) * (len(shape) - 2))

    try:
        scale, b, mean, var = (fit(p) for p in params)
    except ValueError:
        raise FrontendError(f"BatchNormalization node {n.name!r}: parameters of shapes "
                            f"{[list(p.shape) for p in params]} do not fit the input {list(x.shape)}") from None
    a = scale / np.sqrt(var + float(attr(n, "epsilon", 1e-5)))
    return [L.b.affine_const(n.output[0], x, a, b - mean * a, L.out_type(n.output[0], x.shape))]
