"""Scale check: partition a LLaMA-2-7B-shaped spiking graph onto Hala Point.

The graph follows the LLaMA-2-7B configuration (32 layers, d=4096, FFN 11008, 32 heads of 128,
vocab 32000) in its spiking form -- RMSNorm as Somas + DecodeMAC + ASNC rsqrt, q/k/v/o and
gate/up/down projections as Somas, attention against a KV cache (graph inputs) as DecodeMACs with
a softmax of WTA max, ASNC exp and reciprocal, SiLU as ASNC -- for one decoded token (batch 1).
Weights are shape-only ``ConstSpec`` constants, so nothing of 7B parameters is materialised.

    .venv/bin/python bench/partition_llama7b.py [--context 2048] [--system hala-point] [--json out.json]

Targets: <= 60 s and <= 4 GB peak memory on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from lasercc.ir.graph import ConstSpec, Graph, verify
from lasercc.ir.nodes import ASNCSegment, DecodeMAC, Gather, Input, Node, Reshape, Soma, Transpose, WTAMax
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes.partition import partition_graph

CONFIG = {"layers": 32, "d": 4096, "ffn": 11008, "heads": 32, "vocab": 32000}


def llama_graph(layers: int = 32, d: int = 4096, ffn: int = 11008, heads: int = 32, vocab: int = 32000,
                context: int = 2048, bits: int = 8) -> Graph:
    """A LLaMA-2-shaped spiking graph for one token with shape-only weights."""
    hd = d // heads
    nodes: list[Node] = []
    consts: dict[str, ConstSpec] = {}

    def code(shape: tuple[int, ...], b: int = bits) -> CodeType:
        return CodeType.per_tensor_type(b, 0.05, 2 ** (b - 1), shape)

    def w(name: str, shape: tuple[int, ...], dtype: str = "int8") -> str:
        consts[name] = ConstSpec(np.dtype(dtype), shape)
        return name

    def add(n: Node) -> str:
        nodes.append(n)
        return n.name

    def soma(name: str, x: str, k: int, n: int, shape: tuple[int, ...]) -> str:
        return add(Soma(name=name, inputs=(x,), weights=(w(f"{name}.w", (k, n)),), forms=("matmul",),
                        bias=w(f"{name}.b", (n,), "int32"), scale_in=0.05, scale_w=(0.01,), type=code(shape)))

    def asnc(name: str, x: str, fn: str, shape: tuple[int, ...], segs: int = 16) -> str:
        return add(ASNCSegment(name=name, inputs=(x,), function=fn, thresholds=w(f"{name}.t", (segs - 1,), "int64"),
                               slopes=w(f"{name}.a", (segs,), "int64"), intercepts=w(f"{name}.c", (segs,), "int64"),
                               type=code(shape)))

    def dmac(name: str, a: str, b: str, form: str, shape: tuple[int, ...]) -> str:
        return add(DecodeMAC(name=name, inputs=(a, b), form=form, type=code(shape)))

    def rmsnorm(p: str, x: str) -> str:
        sq = dmac(f"{p}.sq", x, x, "mul", (1, d))
        ms = soma(f"{p}.mean", sq, d, 1, (1, 1))  # all-ones row
        r = asnc(f"{p}.rsqrt", ms, "rsqrt", (1, 1))
        xn = dmac(f"{p}.scale", x, r, "mul", (1, d))
        return add(Soma(name=f"{p}.gamma", inputs=(xn,), weights=(w(f"{p}.g", (d,)),), forms=("mul",),
                        scale_in=0.05, scale_w=(0.01,), type=code((1, d))))

    ids = add(Input(name="ids", type=TensorType(dtype="i64", shape=(1,))))
    consts["embed"] = ConstSpec(np.dtype("uint8"), (vocab, d))
    x = add(Gather(name="embed_tokens", inputs=(ids,), table="embed", type=code((1, d))))
    for i in range(layers):
        p = f"l{i}"
        kc = add(Input(name=f"{p}.kcache", type=code((heads, hd, context))))
        vc = add(Input(name=f"{p}.vcache", type=code((heads, context, hd))))
        h = rmsnorm(f"{p}.attn_norm", x)
        q = soma(f"{p}.q", h, d, d, (1, d))
        soma(f"{p}.k", h, d, d, (1, d))  # the new key/value rows (appended to the cache by the host)
        soma(f"{p}.v", h, d, d, (1, d))
        qh = add(Reshape(name=f"{p}.qh", inputs=(q,), type=code((heads, 1, hd))))
        s = dmac(f"{p}.qk", qh, kc, "matmul", (heads, 1, context))
        m = add(WTAMax(name=f"{p}.max", inputs=(s,), axis=2, type=code((heads, 1, 1))))
        sub = add(Soma(name=f"{p}.sub", inputs=(s, m), weights=(w(f"{p}.one", (1,)), w(f"{p}.neg", (1,))),
                       forms=("mul", "mul"), scale_in=1.0, scale_w=(1.0,), type=code((heads, 1, context))))
        e = asnc(f"{p}.exp", sub, "exp", (heads, 1, context))
        z = soma(f"{p}.sum", e, context, 1, (heads, 1, 1))
        rz = asnc(f"{p}.recip", z, "reciprocal", (heads, 1, 1))
        pr = dmac(f"{p}.prob", e, rz, "mul", (heads, 1, context))
        av = dmac(f"{p}.av", pr, vc, "matmul", (heads, 1, hd))
        avt = add(Transpose(name=f"{p}.avt", inputs=(av,), perm=(1, 0, 2), type=code((1, heads, hd))))
        cat = add(Reshape(name=f"{p}.cat", inputs=(avt,), type=code((1, d))))
        o = soma(f"{p}.o", cat, d, d, (1, d))
        x = add(Soma(name=f"{p}.res1", inputs=(x, o), weights=(w(f"{p}.r1a", (1,), "int16"),
                                                               w(f"{p}.r1b", (1,), "int16")),
                     forms=("mul", "mul"), scale_in=0.05, scale_w=(1.0,), type=code((1, d))))
        h = rmsnorm(f"{p}.ffn_norm", x)
        g = soma(f"{p}.gate", h, d, ffn, (1, ffn))
        u = soma(f"{p}.up", h, d, ffn, (1, ffn))
        sg = asnc(f"{p}.silu", g, "silu", (1, ffn), 32)
        gu = dmac(f"{p}.gu", sg, u, "mul", (1, ffn))
        dn = soma(f"{p}.down", gu, ffn, d, (1, d))
        x = add(Soma(name=f"{p}.res2", inputs=(x, dn), weights=(w(f"{p}.r2a", (1,), "int16"),
                                                                w(f"{p}.r2b", (1,), "int16")),
                     forms=("mul", "mul"), scale_in=0.05, scale_w=(1.0,), type=code((1, d))))
    h = rmsnorm("final_norm", x)
    logits = soma("lm_head", h, d, vocab, (1, vocab))
    outs = [logits] + [n.name for n in nodes if n.name.endswith((".k", ".v"))]
    return Graph("llama2_7b", tuple(nodes), tuple(outs), consts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", default="hala-point")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=CONFIG["layers"])
    ap.add_argument("--json", help="write partition.json here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    g = llama_graph(layers=a.layers, context=a.context)
    t1 = time.perf_counter()
    verify(g)
    t2 = time.perf_counter()
    part = partition_graph(g, system=a.system)
    t3 = time.perf_counter()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(part.to_json(), f)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(c.size for k, c in g.constants.items() if k.endswith(".w"))
    print(part.report())
    print(f"graph: {len(g.nodes):,} nodes, {params / 1e9:.2f}B matmul weights (shape-only); build {t1 - t0:.2f}s, "
          f"verify {t2 - t1:.2f}s, partition {t3 - t2:.2f}s; total {t3 - t0:.2f}s; peak RSS {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
