"""Subgraph fusions found before lowering.

GELU exported as its erf formula ``0.5 * x * (1 + erf(x / sqrt(2)))`` (five ONNX nodes) becomes one
ASNC ``gelu`` table on x -- one quantization instead of five, and a function the ``asnc-fit`` pass
knows. Only float chains fuse (every intermediate read once, no Q/DQ in between): in a QDQ model
that quantized the intermediates the op-by-op lowering reproduces the model's own arithmetic instead.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from lasercc.frontends.onnx.values import Act, Const


def _const(L, name: str) -> np.ndarray | None:  # noqa: ANN001
    v = L.env.get(name)
    if isinstance(v, Const):
        return v.value
    op, src = L.sources.get(name, ("", None))
    if op == "Constant" and src is not None:
        for a in src.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name == "value_float":
                return np.array(a.f, np.float32)
    return None


def _is(L, name: str, value: float, tol: float = 1e-3) -> bool:  # noqa: ANN001
    c = _const(L, name)
    return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) < tol


def _only(L, tensor: str) -> onnx.NodeProto | None:  # noqa: ANN001
    cons = L.consumers.get(tensor, [])
    outs = {o.name for o in L.model.graph.output}
    return cons[0] if len(cons) == 1 and tensor not in outs else None


def _other(n: onnx.NodeProto, name: str) -> str:
    return n.input[1] if n.input[0] == name else n.input[0]


def find_fusions(L) -> None:  # noqa: ANN001
    for erf in L.model.graph.node:
        if erf.op_type != "Erf":
            continue
        u = erf.input[0]
        op, pre = L.sources.get(u, ("", None))
        if pre is None or _only(L, u) is None:
            continue
        if op == "Div" and _is(L, pre.input[1], np.sqrt(2.0)):
            x = pre.input[0]
        elif op == "Mul" and (_is(L, pre.input[1], 1 / np.sqrt(2.0)) or _is(L, pre.input[0], 1 / np.sqrt(2.0))):
            x = pre.input[0] if _is(L, pre.input[1], 1 / np.sqrt(2.0)) else pre.input[1]
        else:
            continue
        add = _only(L, erf.output[0])
        if add is None or add.op_type != "Add" or not _is(L, _other(add, erf.output[0]), 1.0):
            continue
        m1 = _only(L, add.output[0])
        if m1 is None or m1.op_type != "Mul":
            continue
        a = _other(m1, add.output[0])
        chain = [pre, erf, add]
        if a == x:  # (x * (1 + erf)) * 0.5
            final = _only(L, m1.output[0])
            if final is None or final.op_type != "Mul" or not _is(L, _other(final, m1.output[0]), 0.5):
                continue
            chain.append(m1)
        else:  # (0.5 * x) * (1 + erf)
            op2, half = L.sources.get(a, ("", None))
            if op2 != "Mul" or half is None or _only(L, a) is None or x not in half.input \
                    or not _is(L, _other(half, x), 0.5):
                continue
            final = m1
            chain.append(half)
        for n in chain:
            L.skip.add(id(n))
        L.fused[id(final)] = _gelu(L, x, final)
        L.fused_samples[id(final)] = (x,)


def _gelu(L, x_name: str, final: onnx.NodeProto):  # noqa: ANN001, ANN202
    def emit() -> list:
        x = L.env[x_name]
        if not isinstance(x, Act):
            from lasercc.frontends.onnx.load import FrontendError

            raise FrontendError(f"GELU input {x_name!r} is not an activation")
        out = L.out_type(final.output[0], x.shape)
        return [L.b.asnc_lut(final.output[0], x, "gelu", (), out, L.stats.values(x_name))]

    return emit
