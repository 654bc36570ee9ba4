"""Graph builders for tests, benchmarks and examples: random graphs that exercise every node kind,
and a plain MLP. Deterministic given a seed, so a failing hypothesis case can be replayed.
"""

from __future__ import annotations

import numpy as np

from lasercc.ir.data import random_inputs  # moved to the IR layer (backends use it); re-exported
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import (
    ASNCSegment,
    BSEEncode,
    Concat,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Node,
    Reshape,
    Slice,
    Soma,
    Take,
    Transpose,
    WTAMax,
)
from lasercc.ir.types import CodeType, TensorType

__all__ = ["GraphBuilder", "mlp_graph", "random_graph", "random_inputs"]


class GraphBuilder:
    """Small helper that names values and constants and tracks types while building a graph."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Node] = []
        self.consts: dict[str, np.ndarray] = {}
        self._n = 0

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, stem: str, arr: np.ndarray) -> str:
        k = self.fresh(stem)
        self.consts[k] = arr
        return k

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.name

    def type(self, name: str):
        return next(n.type for n in self.nodes if n.name == name)

    def graph(self, outputs: list[str]) -> Graph:
        return Graph(self.name, tuple(self.nodes), tuple(outputs), self.consts).verify()


def _code(bits: int, scale: float, zp: int, shape) -> CodeType:
    return CodeType.per_tensor_type(bits, scale, zp, tuple(shape))


def _sane(scale: float) -> float:
    """A float32 scale kept away from overflow/underflow when random graphs chain products."""
    return float(np.float32(np.clip(scale, 1e-30, 1e30)))


def _soma_scale(k: int, wmax: int, in_bits: int, out_bits: int) -> float:
    """A requant scale that maps a typical accumulator onto the middle of the output range."""
    typical = max(1.0, np.sqrt(k) * max(wmax, 1) * 2 ** (in_bits - 1) / 2)
    return float(np.float32(2 ** (out_bits - 2) / typical))


def random_graph(seed: int, *, batch: int = 2, width: int | None = None, steps: int = 8,
                 requant: str | None = None, max_bits: int = 16) -> Graph:
    """A random valid graph using every node kind with some probability. Codes stay in range and
    the graph verifies; requant modes are random unless ``requant`` is given."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"random{seed}")
    d = width or int(rng.integers(2, 9))

    def bits() -> int:
        return int(rng.integers(2, max_bits + 1))

    def rq() -> str:
        return requant or str(rng.choice(["ort", "fixed"]))

    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(batch, d))))
    in_bits = bits()
    pool = [b.add(BSEEncode(name=b.fresh("enc"), inputs=(x,),
                            type=_code(in_bits, 0.5 ** int(rng.integers(1, 6)), int(rng.integers(0, 2**in_bits)),
                                       (batch, d))))]
    if rng.random() < 0.5:
        ids = b.add(Input(name="ids", type=TensorType(dtype="i64", shape=(batch,))))
        eb = bits()
        table = b.const("emb", rng.integers(0, 2**eb, size=(11, d)).astype(np.int64))
        pool.append(b.add(Gather(name=b.fresh("emb"), inputs=(ids,), table=table,
                                 type=_code(eb, 0.1, 2 ** (eb - 1), (batch, d)))))
    for _ in range(steps):
        v = pool[int(rng.integers(len(pool)))]
        t: CodeType = b.type(v)
        shape = t.shape
        op = rng.choice(["soma", "soma2", "somamul", "dmac", "dmacmm", "asnc", "asnclut", "wta", "mask",
                         "slice", "concat", "take", "transpose", "reshape"])
        ob = bits()
        if op == "soma" and len(shape) == 2:
            n = int(rng.integers(1, 9))
            w = rng.integers(-128, 128, size=(shape[-1], n)).astype(np.int8)
            bias = rng.integers(-(2**12), 2**12, size=(n,)).astype(np.int64)
            per_ch = rng.random() < 0.5
            sw = tuple(float(np.float32(s)) for s in rng.uniform(0.5, 2.0, size=n if per_ch else 1))
            pool.append(b.add(Soma(name=b.fresh("soma"), inputs=(v,), weights=(b.const("w", w),), forms=("matmul",),
                                   bias=b.const("b", bias), scale_in=_soma_scale(shape[-1], 128, t.bits, ob),
                                   scale_w=sw, requant=rq(),
                                   type=_code(ob, 0.1, int(rng.integers(0, 2**ob)), (shape[0], n)))))
        elif op == "soma2":
            others = [p for p in pool if b.type(p).shape == shape and p != v]
            if not others:
                continue
            u = others[int(rng.integers(len(others)))]
            w1 = b.const("wa", np.array([int(rng.integers(1, 64))], np.int16))
            w2 = b.const("wb", np.array([int(rng.integers(-64, 64))], np.int16))
            pool.append(b.add(Soma(name=b.fresh("add"), inputs=(v, u), weights=(w1, w2), forms=("mul", "mul"),
                                   bias=b.const("b", np.array([int(rng.integers(-100, 100))], np.int64)),
                                   scale_in=_soma_scale(2, 64, max(t.bits, b.type(u).bits), ob), scale_w=(1.0,),
                                   requant=rq(), type=_code(ob, 0.2, 2 ** (ob - 1), shape))))
        elif op == "somamul":
            w = rng.integers(-8, 8, size=shape[-1:]).astype(np.int8)
            pool.append(b.add(Soma(name=b.fresh("affine"), inputs=(v,), weights=(b.const("g", w),), forms=("mul",),
                                   bias=None, scale_in=_soma_scale(1, 8, t.bits, ob), scale_w=(1.0,), requant=rq(),
                                   type=_code(ob, 0.3, 2 ** (ob - 1), shape))))
        elif op == "dmac":
            others = [p for p in pool if b.type(p).shape == shape]
            u = others[int(rng.integers(len(others)))]
            tu = b.type(u)
            s = float(np.float32(2 ** (ob - 2) / max(1.0, 2 ** (t.bits - 1) * 2 ** (tu.bits - 1) / 4)))
            pool.append(b.add(DecodeMAC(name=b.fresh("prod"), inputs=(v, u), form="mul", requant=rq(),
                                        type=_code(ob, _sane(t.scale[0] * tu.scale[0] / s),
                                                   2 ** (ob - 1), shape))))
        elif op == "dmacmm" and len(shape) == 2:
            tr = b.add(Transpose(name=b.fresh("tr"), inputs=(v,), perm=(1, 0), type=t.with_shape((shape[1], shape[0]))))
            s = float(np.float32(2 ** (ob - 2) / max(1.0, np.sqrt(shape[1]) * 4 ** (t.bits - 1) / 4)))
            pool.append(b.add(DecodeMAC(name=b.fresh("mm"), inputs=(v, tr), form="matmul", requant=rq(),
                                        type=_code(ob, _sane(t.scale[0] ** 2 / s), 2 ** (ob - 1),
                                                   (shape[0], shape[0])))))
        elif op == "asnc":
            k = int(rng.integers(1, 6))
            thr = np.unique(rng.integers(1, 2**t.bits, size=k - 1)).astype(np.int64)
            sh = int(rng.integers(0, 8))
            slopes = rng.integers(-(2**6), 2**6, size=thr.size + 1).astype(np.int64)
            ic = rng.integers(0, 2 ** (ob + sh), size=thr.size + 1).astype(np.int64)
            pool.append(b.add(ASNCSegment(name=b.fresh("asnc"), inputs=(v,), function="random",
                                          thresholds=b.const("thr", thr), slopes=b.const("a", slopes),
                                          intercepts=b.const("c", ic), shift=sh, type=_code(ob, 0.01, 0, shape))))
        elif op == "asnclut" and t.bits <= 10:
            n = 2**t.bits
            table = rng.integers(0, 2**ob, size=n).astype(np.int64)
            pool.append(b.add(ASNCSegment(name=b.fresh("lut"), inputs=(v,), function="table",
                                          thresholds=b.const("thr", np.arange(1, n, dtype=np.int64)),
                                          slopes=b.const("a", np.zeros(n, np.int64)), intercepts=b.const("c", table),
                                          shift=0, type=_code(ob, 0.01, 0, shape))))
        elif op == "wta":
            ax = int(rng.integers(len(shape)))
            s2 = list(shape)
            s2[ax] = 1
            m = b.add(WTAMax(name=b.fresh("max"), inputs=(v,), axis=ax, type=t.with_shape(tuple(s2))))
            one = b.const("one", np.array([1], np.int8))
            neg = b.const("neg", np.array([-1], np.int8))
            pool.append(b.add(Soma(name=b.fresh("sub"), inputs=(v, m), weights=(one, neg), forms=("mul", "mul"),
                                   bias=b.const("b", np.array([2 ** (t.bits - 1)], np.int64)), scale_in=1.0,
                                   scale_w=(1.0,),
                                   requant=rq(), type=_code(t.bits, t.scale[0], 2 ** (t.bits - 1), shape))))
            pool.append(m)
        elif op == "mask":
            mk = b.const("mask", rng.random(size=shape[-1:]) < 0.4)
            pool.append(b.add(Mask(name=b.fresh("mask"), inputs=(v,), mask=mk, fill=int(rng.integers(0, 2**t.bits)),
                                   type=t)))
        elif op == "slice" and shape[-1] > 1:
            ax = len(shape) - 1
            st = int(rng.integers(0, shape[ax] - 1))
            sl = Slice(name=b.fresh("sl"), inputs=(v,), axes=(ax,), starts=(st,), stops=(shape[ax],), steps=(1,),
                       type=t.with_shape(shape[:-1] + (shape[-1] - st,)))
            pool.append(b.add(sl))
        elif op == "concat":
            others = [p for p in pool if b.type(p).same_quant(t) and b.type(p).shape[:-1] == shape[:-1]]
            u = others[int(rng.integers(len(others)))]
            pool.append(b.add(Concat(name=b.fresh("cat"), inputs=(v, u), axis=len(shape) - 1,
                                     type=t.with_shape(shape[:-1] + (shape[-1] + b.type(u).shape[-1],)))))
        elif op == "take":
            ax = len(shape) - 1
            idx = tuple(int(i) for i in rng.integers(-shape[ax], shape[ax], size=int(rng.integers(1, 4))))
            pool.append(b.add(Take(name=b.fresh("take"), inputs=(v,), axis=ax, indices=idx,
                                   type=t.with_shape(shape[:-1] + (len(idx),)))))
        elif op == "transpose" and len(shape) == 2:
            pool.append(b.add(Transpose(name=b.fresh("tr"), inputs=(v,), perm=(1, 0),
                                        type=t.with_shape((shape[1], shape[0])))))
        elif op == "reshape" and len(shape) == 2:
            pool.append(b.add(Reshape(name=b.fresh("rs"), inputs=(v,), type=t.with_shape((shape[0] * shape[1],)))))
    used = {i for n in b.nodes for i in n.inputs}
    outs = [n.name for n in b.nodes if isinstance(n.type, CodeType) and n.name not in used] or [pool[-1]]
    return b.graph(outs)


def mlp_graph(layers: int = 4, width: int = 256, batch: int = 64, bits: int = 8, seed: int = 0,
              requant: str = "ort", wmax: int = 127) -> Graph:
    """An MLP of ``layers`` Somas ``width`` wide with int8 weights in [-wmax, wmax] (the foundation's
    speed check)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mlp")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(batch, width))))
    v = b.add(BSEEncode(name="x_q", inputs=(x,), type=_code(bits, 0.05, 2 ** (bits - 1), (batch, width))))
    for i in range(layers):
        w = rng.integers(-wmax, wmax + 1, size=(width, width)).astype(np.int8)
        bias = rng.integers(-(2**10), 2**10, size=width).astype(np.int64)
        v = b.add(Soma(name=f"fc{i}", inputs=(v,), weights=(b.const("w", w),), forms=("matmul",),
                       bias=b.const("b", bias), scale_in=_soma_scale(width, wmax, bits, bits), scale_w=(1.0,),
                       requant=requant, type=_code(bits, 0.05, 2 ** (bits - 1), (batch, width))))
    return b.graph([v])
