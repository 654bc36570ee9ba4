"""Build the bundled example IR graph: one spiking attention + FFN block written directly in the IR.

It uses every spiking node kind -- BSEEncode, Soma (matmul, elementwise, residual add, reduction),
DecodeMAC (QK^T, probabilities x V, softmax normalisation), ASNCSegment lookup tables (exp,
reciprocal, GELU), the winner-take-all max and causal masking -- with activation scales calibrated
on random inputs against a float reference of the same block. Regenerate with

    python examples/build_example_ir.py            # writes examples/ir/attention_block/

The files it writes are never edited by hand.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from lasercc.ir import ASNCSegment, BSEEncode, CodeType, DecodeMAC, Input, Mask, Soma, TensorType, Transpose, WTAMax
from lasercc.ir.artifact import Artifact
from lasercc.runtime import run_graph
from lasercc.semantics import dequantize, quantize
from lasercc.testing import GraphBuilder

T, D, BITS = 8, 16, 8


def qparams(values: np.ndarray, bits: int = BITS, symmetric_zero: bool = True) -> tuple[float, int]:
    """Scale and zero point whose code range covers the observed values (and 0)."""
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = float(np.float32(max(hi - lo, 1e-6) / (2**bits - 1)))
    zp = int(np.clip(round(-lo / scale), 0, 2**bits - 1))
    return scale, zp


def code_t(scale_zp: tuple[float, int], shape, bits: int = BITS) -> CodeType:
    return CodeType.per_tensor_type(bits, scale_zp[0], scale_zp[1], tuple(shape))


class Block:
    """Builds the graph node by node, running it after each step to calibrate the next scale."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.b = GraphBuilder("attention_block")
        self.calib = {"x": self.rng.normal(0, 1, size=(16 * 1, T, D)).astype(np.float32).reshape(16, T, D)}

    def real(self, name: str) -> np.ndarray:
        """Dequantized values of ``name`` on the calibration batch."""
        g = self.b.graph([name])
        rows = [run_graph(g, {"x": xi}, collect_stats=False).values[name] for xi in self.calib["x"]]
        return np.stack(rows)

    def soma_linear(self, name: str, x: str, w_real: np.ndarray, bias_real: np.ndarray | None = None) -> str:
        tx: CodeType = self.b.type(x)
        sw = float(np.float32(np.abs(w_real).max() / 127))
        w = np.clip(np.rint(w_real / sw), -127, 127).astype(np.int8)
        xr = self.real(x)
        y = xr @ (w.astype(np.float32) * sw) + (0 if bias_real is None else bias_real)
        out = code_t(qparams(y), tx.shape[:-1] + (w.shape[1],))
        bias = -tx.zero_point[0] * w.astype(np.int64).sum(axis=0)
        if bias_real is not None:
            bias = bias + np.rint(bias_real / (tx.scale[0] * sw)).astype(np.int64)
        return self.b.add(Soma(name=name, inputs=(x,), weights=(self.b.const("w", w),), forms=("matmul",),
                               bias=self.b.const("b", bias), scale_in=tx.scale[0], scale_w=(sw,), type=out))

    def lut(self, name: str, x: str, fn, function: str, out_qp: tuple[float, int] | None = None) -> str:
        tx: CodeType = self.b.type(x)
        codes = np.arange(2**tx.bits)
        y = fn(dequantize(codes, tx.scale[0], tx.zero_point[0]).astype(np.float64))
        if out_qp is None:
            out_qp = qparams(fn(self.real(x).astype(np.float64)))
        table = quantize(y.astype(np.float32), out_qp[0], out_qp[1], BITS)
        n = 2**tx.bits
        return self.b.add(ASNCSegment(
            name=name, inputs=(x,), function=function, thresholds=self.b.const("thr", np.arange(1, n, dtype=np.int64)),
            slopes=self.b.const("a", np.zeros(n, np.int64)), intercepts=self.b.const("c", table.astype(np.int64)),
            type=code_t(out_qp, tx.shape)))

    def dmac(self, name: str, a: str, b: str, form: str, fn) -> str:
        y = fn(self.real(a), self.real(b))
        ta, tb = self.b.type(a), self.b.type(b)
        shape = (ta.shape[0], tb.shape[1]) if form == "matmul" else np.broadcast_shapes(ta.shape, tb.shape)
        return self.b.add(DecodeMAC(name=name, inputs=(a, b), form=form, type=code_t(qparams(y), shape)))

    def add(self, name: str, a: str, b: str, wa: float = 1.0, wb: float = 1.0, out_qp=None) -> str:
        """Residual-style sum of two codes: integer weights on a common fixed-point grid (8 fractional bits)."""
        ta, tb = self.b.type(a), self.b.type(b)
        unit = min(ta.scale[0], tb.scale[0]) / 256
        ia, ib = round(wa * ta.scale[0] / unit), round(wb * tb.scale[0] / unit)
        y = wa * self.real(a) + wb * self.real(b)
        out = code_t(out_qp or qparams(y), np.broadcast_shapes(ta.shape, tb.shape))
        bias = -(ia * ta.zero_point[0] + ib * tb.zero_point[0])
        return self.b.add(Soma(name=name, inputs=(a, b), weights=(self.b.const("wa", np.array([ia], np.int32)),
                                                                  self.b.const("wb", np.array([ib], np.int32))),
                               forms=("mul", "mul"), bias=self.b.const("b", np.array([bias], np.int64)),
                               scale_in=float(np.float32(unit)), scale_w=(1.0,), type=out))

    def build(self) -> Artifact:
        b, rng = self.b, self.rng
        b.add(Input(name="x", type=TensorType(dtype="f32", shape=(T, D))))
        x = b.add(BSEEncode(name="x_q", inputs=("x",), type=code_t(qparams(self.calib["x"]), (T, D))))
        # 1/sqrt(D) of scaled dot-product attention is folded into the query weights
        q = self.soma_linear("q", x, rng.normal(0, 1 / math.sqrt(D), (D, D)) / math.sqrt(D))
        k = self.soma_linear("k", x, rng.normal(0, 1 / math.sqrt(D), (D, D)))
        v = self.soma_linear("v", x, rng.normal(0, 1 / math.sqrt(D), (D, D)))
        kt = b.add(Transpose(name="k_t", inputs=(k,), perm=(1, 0), type=b.type(k).with_shape((D, T))))
        s = self.dmac("scores", q, kt, "matmul", lambda a, c: a @ c)
        causal = ~np.tril(np.ones((T, T), bool))
        sm = b.add(Mask(name="scores_masked", inputs=(s,), mask=b.const("causal", causal), fill=0, type=b.type(s)))
        m = b.add(WTAMax(name="row_max", inputs=(sm,), axis=1, type=b.type(sm).with_shape((T, 1))))
        d = self.add("centred", sm, m, 1.0, -1.0)
        e = self.lut("exp", d, np.exp, "exp", out_qp=(float(np.float32(1 / 255)), 0))
        e = b.add(Mask(name="exp_masked", inputs=(e,), mask=b.const("causal", causal), fill=0, type=b.type(e)))
        ones = b.const("ones", np.ones((T, 1), np.int8))
        te = b.type(e)
        tot = self.real(e).sum(axis=-1, keepdims=True)
        ssum = b.add(Soma(name="exp_sum", inputs=(e,), weights=(ones,), forms=("matmul",),
                          bias=b.const("b", np.array([-te.zero_point[0] * T], np.int64)), scale_in=te.scale[0],
                          scale_w=(1.0,), type=code_t(qparams(tot), (T, 1))))
        r = self.lut("recip", ssum, lambda z: 1.0 / np.maximum(z, 1e-3), "reciprocal")
        p = self.dmac("probs", e, r, "mul", lambda a, c: a * c)
        ctx = self.dmac("context", p, v, "matmul", lambda a, c: a @ c)
        h = self.add("residual", x, ctx)
        f1 = self.soma_linear("ffn_up", h, rng.normal(0, 1 / math.sqrt(D), (D, 2 * D)), rng.normal(0, 0.1, 2 * D))
        from math import erf

        gelu = np.vectorize(lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2))))
        g = self.lut("gelu", f1, gelu, "gelu")
        f2 = self.soma_linear("ffn_down", g, rng.normal(0, 1 / math.sqrt(2 * D), (2 * D, D)))
        self.add("out", h, f2)
        graph = b.graph(["out"])
        return Artifact(graph=graph, manifest={"target": "numpy", "source": "examples/build_example_ir.py",
                                               "description": "one spiking attention + GELU FFN block"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).parent / "ir" / "attention_block"))
    args = ap.parse_args()
    art = Block().build()
    out = art.save(args.out)
    x = np.random.default_rng(1).normal(0, 1, size=(2 * T, D)).astype(np.float32)
    np.savez(out / "input.npz", x=x)
    print(f"wrote {out} ({len(art.graph.nodes)} nodes)")


if __name__ == "__main__":
    main()
