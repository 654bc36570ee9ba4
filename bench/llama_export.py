"""Export a LLaMA-shaped ONNX model with random weights and external data, float and QDQ forms.

TinyLlama-1.1B's configuration by default (22 layers, d 2048, FFN 5632, 32 heads / 4 KV heads of 64,
vocab 32000, RMSNorm, RoPE, SwiGLU, grouped-query attention, untied head); ``--layers`` shrinks it.
The graph is written op by op with ``onnx.helper`` -- the ops a torch export of a LLaMA block emits
(RMSNorm written out as Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul, RoPE as Slice/Neg/Concat with cos/sin
tables, repeat_kv as Reshape/Expand/Reshape, a ``Where`` causal mask, Sigmoid*x*up) -- because a torch
export holds the model and its traced copy in memory (3x 4.4 GB for 1.1B float32), while here every
weight is generated, written to the external-data file and dropped, one tensor at a time.

Forms:

* ``float``: float32 weights (``NAME.onnx`` + ``NAME.onnx.data``);
* ``qdq``: the format ``onnxruntime.quantization.quantize_static`` writes for MatMul-only QDQ with
  ``per_channel=True, reduce_range=True`` (int8 weights in [-64, 64] per output channel with a
  ``DequantizeLinear`` of axis 1; uint8 activations as ``QuantizeLinear -> DequantizeLinear`` pairs on
  every MatMul input; the activation x activation MatMuls of attention quantized the same way), written
  directly for the same memory reason. Activation ranges come from onnxruntime running the *float* model of
  ``--calib-layers`` layers (default 2) on random tokens -- the ranges of layer i are reused for deeper
  layers (random weights of one distribution give every layer the same statistics), which is what lets a
  1.1B QDQ file be written without a 1.1B float session.

    PYTHONPATH=$PWD python bench/llama_export.py --layers 2 --out /tmp/llama [--forms float,qdq] [--seq 4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

TINYLLAMA = {"layers": 22, "d": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}
OPSET = 17


class Writer:
    """Nodes and initializers of one model; initializers go to the external-data file as they are made."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.data = open(str(path) + ".data", "wb")  # noqa: SIM115 - closed in finish()
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.params = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, stem: str, a: np.ndarray, external: bool | None = None) -> str:
        name = self.name(stem)
        a = np.ascontiguousarray(a)
        t = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(a.dtype), dims=a.shape)
        if external if external is not None else a.size >= 1024:
            off = self.data.tell()
            pad = (-off) % 4096  # page-aligned: readers (onnxruntime, np.memmap) can map it
            self.data.write(b"\0" * pad)
            off += pad
            self.data.write(a.tobytes())
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", self.path.name + ".data"), ("offset", str(off)), ("length", str(a.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
        else:
            t.raw_data = a.tobytes()
        self.inits.append(t)
        return name

    def op(self, op: str, inputs: list[str], stem: str | None = None, **attrs: object) -> str:
        out = self.name(stem or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def finish(self, ids: str, logits: str, seq: int, vocab: int) -> None:
        self.data.close()
        g = helper.make_graph(self.nodes, "llama", [helper.make_tensor_value_info(ids, TensorProto.INT64, [1, seq])],
                              [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, seq, vocab])],
                              initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lasercc-bench")
        m.ir_version = 8
        onnx.save(m, str(self.path))


def build(path: Path, cfg: dict, seq: int, form: str, ranges: dict[str, float] | None, seed: int = 0) -> dict:
    """Write one model; returns {tensor role -> name} of the MatMul inputs (for calibration)."""
    d, f, h, kvh, v = cfg["d"], cfg["ffn"], cfg["heads"], cfg["kv_heads"], cfg["vocab"]
    hd = d // h
    w = Writer(path, seed)
    roles: dict[str, str] = {}
    known = {int(k[1:k.index(".")]) for k in ranges or {} if k.startswith("l")}

    def qdq(x: str, role: str) -> str:
        """Q -> DQ of an activation (uint8, asymmetric) in the qdq form; the role names its range."""
        roles[role] = x
        if form != "qdq":
            return x
        lo, hi = ranges.get(role + ".lo", -1.0), ranges.get(role + ".hi", 1.0)  # type: ignore[union-attr]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = np.float32(max(hi - lo, 1e-8) / 255)
        zp = np.uint8(np.clip(np.rint(-lo / scale), 0, 255))
        s, z = w.const("s", np.array(scale)), w.const("zp", np.array(zp))
        return w.op("DequantizeLinear", [w.op("QuantizeLinear", [x, s, z]), s, z])

    def weight(k: int, n: int, role: str) -> str:
        a = (w.rng.standard_normal((k, n), dtype=np.float32) * np.float32(1 / np.sqrt(k)))
        w.params += a.size
        if form != "qdq":
            return w.const(role, a)
        amax = np.abs(a).max(axis=0)
        scale = (np.maximum(amax, 1e-8) / 64).astype(np.float32)  # reduce_range: [-64, 64]
        q = np.clip(np.rint(a / scale), -64, 64).astype(np.int8)
        return w.op("DequantizeLinear", [w.const(role, q), w.const("ws", scale), w.const("wz", np.zeros(n, np.int8))],
                    axis=1)

    def matmul(x: str, k: int, n: int, role: str) -> str:
        return w.op("MatMul", [qdq(x, role), weight(k, n, role)])

    def rmsnorm(x: str) -> str:
        g = w.const("gamma", (1 + 0.1 * w.rng.standard_normal(d)).astype(np.float32))
        w.params += d
        p = w.op("Pow", [x, w.const("two", np.array(2.0, np.float32))])
        m = w.op("ReduceMean", [p], axes=[-1], keepdims=1)
        r = w.op("Reciprocal", [w.op("Sqrt", [w.op("Add", [m, w.const("eps", np.array(1e-5, np.float32))])])])
        return w.op("Mul", [w.op("Mul", [x, r]), g])

    def shape(*dims: int) -> str:
        return w.const("shape", np.array(dims, np.int64))

    pos = np.arange(seq)[:, None] / (10000 ** (np.arange(0, hd, 2) / hd))[None]
    cos = w.const("cos", np.concatenate([np.cos(pos)] * 2, -1).astype(np.float32))
    sin = w.const("sin", np.concatenate([np.sin(pos)] * 2, -1).astype(np.float32))
    half = hd // 2

    def rope(x: str) -> str:  # x [1, H, S, hd]
        x1 = w.op("Slice", [x, w.const("st", np.array([0], np.int64)), w.const("en", np.array([half], np.int64)),
                            w.const("ax", np.array([3], np.int64))])
        x2 = w.op("Slice", [x, w.const("st", np.array([half], np.int64)), w.const("en", np.array([hd], np.int64)),
                            w.const("ax", np.array([3], np.int64))])
        rot = w.op("Concat", [w.op("Neg", [x2]), x1], axis=3)
        return w.op("Add", [w.op("Mul", [x, cos]), w.op("Mul", [rot, sin])])

    emb = w.rng.standard_normal((v, d), dtype=np.float32)
    w.params += emb.size
    table = w.const("embed", emb)
    del emb
    x = w.op("Gather", [table, "input_ids"], axis=0)
    mask = w.const("causal", np.tril(np.ones((seq, seq), bool)))
    neg = w.const("neg", np.array(-3.4028234663852886e38, np.float32))
    scale = w.const("scale", np.array(1 / np.sqrt(hd), np.float32))
    for i in range(cfg["layers"]):
        L = i if not known or i in known else max(known)  # deeper layers reuse the last calibrated one
        hn = rmsnorm(x)
        q = matmul(hn, d, d, f"l{L}.q")
        k = matmul(hn, d, kvh * hd, f"l{L}.k")
        vv = matmul(hn, d, kvh * hd, f"l{L}.v")
        q = rope(w.op("Transpose", [w.op("Reshape", [q, shape(1, seq, h, hd)])], perm=[0, 2, 1, 3]))
        k = rope(w.op("Transpose", [w.op("Reshape", [k, shape(1, seq, kvh, hd)])], perm=[0, 2, 1, 3]))
        vv = w.op("Transpose", [w.op("Reshape", [vv, shape(1, seq, kvh, hd)])], perm=[0, 2, 1, 3])

        def repeat(t: str) -> str:
            t = w.op("Reshape", [t, shape(1, kvh, 1, seq, hd)])
            t = w.op("Expand", [t, shape(1, kvh, h // kvh, seq, hd)])
            return w.op("Reshape", [t, shape(1, h, seq, hd)])

        k, vv = repeat(k), repeat(vv)
        kt = w.op("Transpose", [k], perm=[0, 1, 3, 2])
        s = w.op("Mul", [w.op("MatMul", [qdq(q, f"l{L}.qk_a"), qdq(kt, f"l{L}.qk_b")]), scale])
        p = w.op("Softmax", [w.op("Where", [mask, s, neg])], axis=-1)
        o = w.op("MatMul", [qdq(p, f"l{L}.pv_a"), qdq(vv, f"l{L}.pv_b")])
        o = w.op("Reshape", [w.op("Transpose", [o], perm=[0, 2, 1, 3]), shape(1, seq, d)])
        x = w.op("Add", [x, matmul(o, d, d, f"l{L}.o")])
        hn = rmsnorm(x)
        g = matmul(hn, d, f, f"l{L}.gate")
        up = matmul(hn, d, f, f"l{L}.up")
        act = w.op("Mul", [w.op("Mul", [w.op("Sigmoid", [g]), g]), up])
        x = w.op("Add", [x, matmul(act, f, d, f"l{L}.down")])
    logits = matmul(rmsnorm(x), d, v, "head")
    w.finish("input_ids", logits, seq, v)
    return {"roles": roles, "params": w.params}


def calibrate(cfg: dict, seq: int, layers: int, tmp: Path, rows: int = 4) -> dict[str, float]:
    """Activation ranges of every MatMul input, from onnxruntime on the float model of ``layers`` layers."""
    import onnxruntime as ort

    small = dict(cfg, layers=layers)
    p = tmp / "calib.onnx"
    info = build(p, small, seq, "float", None)
    m = onnx.load(str(p), load_external_data=False)
    for name in info["roles"].values():
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    onnx.save(m, str(p))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    names = list(info["roles"].values())
    rng = np.random.default_rng(1)
    out: dict[str, float] = {}
    for _ in range(rows):
        ids = rng.integers(0, cfg["vocab"], size=(1, seq)).astype(np.int64)
        for role, a in zip(info["roles"], sess.run(names, {"input_ids": ids})):
            out[role + ".lo"] = min(out.get(role + ".lo", 0.0), float(a.min()))
            out[role + ".hi"] = max(out.get(role + ".hi", 0.0), float(a.max()))
    del sess
    for f in (p, Path(str(p) + ".data")):
        f.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=TINYLLAMA["layers"])
    ap.add_argument("--seq", type=int, default=4)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--forms", default="float,qdq")
    ap.add_argument("--calib-layers", type=int, default=2)
    ap.add_argument("--d", type=int, default=TINYLLAMA["d"], help="hidden size (to try the pipeline small)")
    ap.add_argument("--ffn", type=int, default=TINYLLAMA["ffn"])
    ap.add_argument("--vocab", type=int, default=TINYLLAMA["vocab"])
    args = ap.parse_args()
    cfg = dict(TINYLLAMA, layers=args.layers, d=args.d, ffn=args.ffn, vocab=args.vocab)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    forms = args.forms.split(",")
    ranges = calibrate(cfg, args.seq, min(args.calib_layers, args.layers), out) if "qdq" in forms else None
    for form in forms:
        t0 = time.perf_counter()
        p = out / f"llama_l{args.layers}.{form}.onnx"
        info = build(p, cfg, args.seq, form, ranges)
        size = os.path.getsize(p) + os.path.getsize(str(p) + ".data")
        print(f"{p}: {info['params'] / 1e6:.1f}M parameters, {size / 2**30:.2f} GiB, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
