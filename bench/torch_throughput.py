"""Throughput of the torch executor vs torch fp16 eager vs onnxruntime CPU, with GPU energy per token.

One run measures, on the same model shape and the same batch of token ids:

* ``lasercc-torch``: the spiking graph on the torch executor (codes mode, exact integer matmuls;
  outputs stay on the device, as a serving pipeline would keep them);
* ``torch-fp16``: the float model in fp16 eager mode (CUDA; fp32 on CPU, where fp16 matmuls are
  emulated and meaningless as a baseline);
* ``ort-cpu``: onnxruntime on the CPU running the int8-quantized (QDQ -> QLinearMatMul) ONNX export
  of the same float model;

and, on CUDA with NVML (``pynvml``) or ``nvidia-smi`` present, the mean GPU power while each GPU
variant runs, hence joules per token.

    python bench/torch_throughput.py                          # small CPU-sized defaults
    python bench/torch_throughput.py --device cuda --gpt2     # 12 x 768, 12 heads, vocab 50257, 64 x 128
    python bench/torch_throughput.py --artifact out/ --device cuda   # a compiled artifact instead

The model: without ``--artifact`` the benchmark builds a GPT-2-shaped spiking graph itself (token
embedding, per layer a QKV Soma, multi-head QK^T and P.V DecodeMACs, causal Mask, softmax as
winner-take-all max, ASNC exp and reciprocal lookup tables and a normalising DecodeMAC, output
projection, GELU MLP with an ASNC table, residual Somas; then an LM-head Soma), with random int8
weights, next to a float torch model of the same shape. LayerNorm is left out of both (its cost
is elementwise and small next to the matmuls). The spiking graph's numbers are therefore those
of its shape, not of a trained model's accuracy; fidelity is what the test suite proves.

Results are printed as a table and, with ``--json``, written out. No GPU was available where this
script was written: the CUDA figures must be produced on a GPU machine and reported with the GPU
named.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lasercc.backends.torch_exec import torch_executor
from lasercc.backends.torch_matmul import describe
from lasercc.ir import (
    ASNCSegment,
    CodeType,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Reshape,
    Soma,
    Take,
    TensorType,
    Transpose,
    WTAMax,
)
from lasercc.ir.graph import Graph
from lasercc.testing import GraphBuilder

GPT2 = {"layers": 12, "d_model": 768, "heads": 12, "vocab": 50257, "batch": 64, "seq": 128}
SMALL = {"layers": 2, "d_model": 64, "heads": 4, "vocab": 512, "batch": 4, "seq": 32}


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


def _c(bits: int, scale: float, zp: int, shape) -> CodeType:
    return CodeType.per_tensor_type(bits, float(np.float32(scale)), zp, tuple(shape))


def _lut(b: GraphBuilder, name: str, x: str, fn: Callable[[np.ndarray], np.ndarray], in_t: CodeType,
         out_t: CodeType) -> str:
    """An 8-bit lookup-table ASNC node (one segment per code) for ``fn`` on dequantized codes."""
    codes = np.arange(2**in_t.bits)
    y = fn(in_t.scale[0] * (codes - in_t.zero_point[0]))
    table = np.clip(np.rint(y / out_t.scale[0]) + out_t.zero_point[0], 0, out_t.hi).astype(np.int64)
    return b.add(ASNCSegment(name=name, inputs=(x,), function="table",
                             thresholds=b.const("thr", np.arange(1, 2**in_t.bits, dtype=np.int64)),
                             slopes=b.const("a", np.zeros(2**in_t.bits, np.int64)), intercepts=b.const("c", table),
                             shift=0, type=out_t))


def spiking_gpt(layers: int, d_model: int, heads: int, vocab: int, batch: int, seq: int, seed: int = 0) -> Graph:
    """A GPT-2-shaped spiking graph with random int8 weights (see the module doc)."""
    rng = np.random.default_rng(seed)
    d, h, dh, t = d_model, heads, d_model // heads, seq
    b = GraphBuilder("gpt_shape")
    act = 0.05  # activation scale of the residual stream (8-bit, zero point 128)

    def w(k: int, n: int) -> str:
        return b.const("w", rng.integers(-127, 128, size=(k, n)).astype(np.int8))

    def soma(name: str, x: str, k: int, n: int, shape, scale_out: float = act, zp: int = 128) -> str:
        # requant scale ~ 2^6 / (sqrt(K) * 127 * 64): keeps outputs mid-range for random weights
        s_in = float(np.float32(64.0 / (math.sqrt(k) * 127 * 64) * scale_out))
        bias = b.const("b", rng.integers(-(2**10), 2**10, size=n).astype(np.int64))
        return b.add(Soma(name=name, inputs=(x,), weights=(w(k, n),), forms=("matmul",), bias=bias, scale_in=s_in,
                          scale_w=(1.0,), requant="ort", type=_c(8, scale_out, zp, shape)))

    def add(name: str, x: str, y: str, shape) -> str:  # residual: (x - 128) + (y - 128) + 128
        one = b.const("one", np.array([1], np.int8))
        return b.add(Soma(name=name, inputs=(x, y), weights=(one, one), forms=("mul", "mul"),
                          bias=b.const("b", np.array([-128], np.int64)), scale_in=1.0, scale_w=(1.0,),
                          requant="ort", type=_c(8, act, 128, shape)))

    ids = b.add(Input(name="ids", type=TensorType(dtype="i64", shape=(batch, t))))
    emb = b.const("emb", rng.integers(0, 256, (vocab, d)).astype(np.uint8))
    x = b.add(Gather(name="embed", inputs=(ids,), table=emb, type=_c(8, act, 128, (batch, t, d))))
    tri = b.const("causal", np.triu(np.ones((t, t), dtype=bool), k=1))
    for i in range(layers):
        p = f"l{i}."
        qkv = soma(p + "qkv", x, d, 3 * d, (batch, t, 3 * d))
        r = b.add(Reshape(name=p + "qkv_r", inputs=(qkv,), type=_c(8, act, 128, (batch, t, 3, h, dh))))
        heads_t = b.add(Transpose(name=p + "qkv_t", inputs=(r,), perm=(2, 0, 3, 1, 4),
                                  type=_c(8, act, 128, (3, batch, h, t, dh))))
        q, k, v = (_pick(b, p + nm, heads_t, j, (batch, h, t, dh)) for j, nm in enumerate("qkv"))
        kt = b.add(Transpose(name=p + "kT", inputs=(k,), perm=(0, 1, 3, 2), type=_c(8, act, 128, (batch, h, dh, t))))
        s_att = float(np.float32(act * act / 8.0 * 8))  # scores: code scale
        sc = b.add(DecodeMAC(name=p + "scores", inputs=(q, kt), form="matmul", requant="ort",
                             type=_c(8, s_att * 16, 128, (batch, h, t, t))))
        sc_t: CodeType = b.type(sc)
        m = b.add(Mask(name=p + "mask", inputs=(sc,), mask=tri, fill=0, type=sc_t))
        mx = b.add(WTAMax(name=p + "max", inputs=(m,), axis=3, type=sc_t.with_shape((batch, h, t, 1))))
        one, neg = b.const("one", np.array([1], np.int8)), b.const("neg", np.array([-1], np.int8))
        sub = b.add(Soma(name=p + "sub", inputs=(m, mx), weights=(one, neg), forms=("mul", "mul"),
                         bias=b.const("b", np.array([255], np.int64)), scale_in=1.0, scale_w=(1.0,), requant="ort",
                         type=_c(8, sc_t.scale[0], 255, (batch, h, t, t))))
        e = _lut(b, p + "exp", sub, np.exp, b.type(sub), _c(8, 1 / 255, 0, (batch, h, t, t)))
        ones = b.const("ones", np.ones((t, 1), np.int8))
        ssum = b.add(Soma(name=p + "sum", inputs=(e,), weights=(ones,), forms=("matmul",), bias=None,
                          scale_in=float(np.float32(1 / 255)), scale_w=(1.0,), requant="ort",
                          type=_c(8, t / 255, 0, (batch, h, t, 1))))
        rcp = _lut(b, p + "recip", ssum, lambda z: 1 / np.maximum(z, 1e-3), b.type(ssum),
                   _c(8, 4 / 255, 0, (batch, h, t, 1)))
        prob = b.add(DecodeMAC(name=p + "prob", inputs=(e, rcp), form="mul", requant="ort",
                               type=_c(8, 1 / 255, 0, (batch, h, t, t))))
        ctx = b.add(DecodeMAC(name=p + "ctx", inputs=(prob, v), form="matmul", requant="ort",
                              type=_c(8, act, 128, (batch, h, t, dh))))
        ct = b.add(Transpose(name=p + "ctx_t", inputs=(ctx,), perm=(0, 2, 1, 3),
                             type=_c(8, act, 128, (batch, t, h, dh))))
        cr = b.add(Reshape(name=p + "ctx_r", inputs=(ct,), type=_c(8, act, 128, (batch, t, d))))
        o = soma(p + "proj", cr, d, d, (batch, t, d))
        x = add(p + "res1", x, o, (batch, t, d))
        f1 = soma(p + "fc1", x, d, 4 * d, (batch, t, 4 * d))
        g = _lut(b, p + "gelu", f1, lambda z: 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3))),
                 b.type(f1), _c(8, act, 128, (batch, t, 4 * d)))
        f2 = soma(p + "fc2", g, 4 * d, d, (batch, t, d))
        x = add(p + "res2", x, f2, (batch, t, d))
    logits = soma("lm_head", x, d, vocab, (batch, t, vocab), scale_out=0.1, zp=128)
    return b.graph([logits])


def _pick(b: GraphBuilder, name: str, x: str, j: int, shape) -> str:
    """Entry j of axis 0 (q, k or v of the stacked projection): a Take, then a Reshape dropping the axis."""
    t: CodeType = b.type(x)
    tk = b.add(Take(name=name + "_take", inputs=(x,), axis=0, indices=(j,), type=t.with_shape((1,) + tuple(shape))))
    return b.add(Reshape(name=name, inputs=(tk,), type=t.with_shape(tuple(shape))))


class FloatGPT(nn.Module):
    """The float model of the same shape (no LayerNorm, like the spiking graph)."""

    def __init__(self, layers: int, d_model: int, heads: int, vocab: int, seq: int):
        super().__init__()
        self.h, self.t = heads, seq
        self.emb = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict({
                "qkv": nn.Linear(d_model, 3 * d_model), "proj": nn.Linear(d_model, d_model),
                "fc1": nn.Linear(d_model, 4 * d_model), "fc2": nn.Linear(4 * d_model, d_model)}))
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("causal", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        bsz, t, d = x.shape
        for blk in self.blocks:
            q, k, v = blk["qkv"](x).reshape(bsz, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.h)
            att = att.masked_fill(self.causal, float("-inf")).softmax(-1)
            x = x + blk["proj"]((att @ v).transpose(1, 2).reshape(bsz, t, d))
            x = x + blk["fc2"](torch.nn.functional.gelu(blk["fc1"](x), approximate="tanh"))
        return self.head(x)


# ---------------------------------------------------------------------------------------------
# power sampling
# ---------------------------------------------------------------------------------------------


class PowerSampler:
    """Mean GPU board power (W) while a block runs: NVML if pynvml is installed, else nvidia-smi."""

    def __init__(self, device_index: int = 0, period_s: float = 0.05):
        self.samples: list[float] = []
        self.period = period_s
        self._stop = threading.Event()
        self._read: Callable[[], float] | None = None
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._read = lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            self.source = "nvml"
        except Exception:
            if shutil.which("nvidia-smi"):
                def read() -> float:
                    out = subprocess.run(["nvidia-smi", f"--id={device_index}", "--query-gpu=power.draw",
                                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                    return float(out.stdout.strip().splitlines()[0])
                self._read = read
                self.source = "nvidia-smi"
            else:
                self.source = "none"

    @property
    def available(self) -> bool:
        return self._read is not None

    def __enter__(self) -> PowerSampler:
        self.samples, self._stop = [], threading.Event()
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())  # type: ignore[misc]
            except Exception:
                pass
            time.sleep(self.period)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._read is not None:
            self._thread.join()

    @property
    def mean_w(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int, min_s: float,
          power: PowerSampler | None) -> dict[str, float | None]:
    """Seconds per call (median of batches run for at least ``min_s``) and mean power."""
    fn()  # warm-up (plans, kernels, allocator)
    _sync(device)
    times: list[float] = []
    with power if power is not None else _Null():
        t_end = time.perf_counter() + min_s
        while len(times) < repeat or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return {"seconds": float(np.median(times)), "runs": len(times),
            "power_w": power.mean_w if power is not None else None}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def ort_quantized_session(model: nn.Module, ids: torch.Tensor, tmp: Path, threads: int) -> Any:
    """Export the float model to ONNX, quantize it statically to int8 QDQ, open an ORT CPU session."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    f32 = tmp / "float.onnx"
    q8 = tmp / "int8.onnx"
    torch.onnx.export(model.float().cpu().eval(), (ids.cpu(),), str(f32), input_names=["ids"], output_names=["logits"],
                      opset_version=17, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"ids": ids.cpu().numpy()}])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    quantize_static(str(f32), str(q8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(q8), so, providers=["CPUExecutionProvider"])


def _examples_module() -> Any:
    """examples/build_models.py as a module (its CausalLM, TransformerConfig and ORT quantization)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "examples" / "build_models.py"
    spec = importlib.util.spec_from_file_location("build_models", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_models"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def from_examples(cfg: dict[str, int], tmp: Path, calib_rows: int, results: dict[str, Any]) -> tuple:
    """The issue's pipeline: the example scripts' causal LM (GPT-2 layout: LayerNorm, Erf-GELU MLP,
    finfo.min causal mask) in this shape, exported with a dynamic batch axis, quantized by onnxruntime
    (static QDQ, per-channel int8 weights, uint8 activations), compiled by lasercc for batch x seq.

    Weights are random (seed 0): throughput and energy depend on the shape, not on training.
    Calibration runs at batch 1 on ``calib_rows`` random sequences (the frontend calibrates a
    dynamic-batch model at batch 1, whatever batch it compiles for).
    Returns (float model, QDQ model path, compiled artifact).
    """
    import warnings

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType

    import lasercc

    bm = _examples_module()
    tc = bm.TransformerConfig(vocab=cfg["vocab"], d_model=cfg["d_model"], n_heads=cfg["heads"],
                              n_layers=cfg["layers"], seq_len=cfg["seq"], d_ff=4 * cfg["d_model"])
    torch.manual_seed(0)
    model = bm.CausalLM(tc).eval()
    f32, q8 = tmp / "float.onnx", tmp / "qdq.onnx"
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros((1, cfg["seq"]), dtype=torch.int64),), str(f32), dynamo=False,
                          opset_version=17, input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(str(f32))
    m.ir_version = 8  # onnxruntime builds older than onnx's default IR version read it
    onnx.save(m, str(f32))
    del m
    calib = {"input_ids": np.random.default_rng(1).integers(0, cfg["vocab"], (calib_rows, cfg["seq"]))}
    bm._static(QuantFormat.QDQ, QuantType.QUInt8, per_channel=True)(f32, q8, calib)
    results["export_quantize_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(q8), target="torch", calibration=calib,
                              input_shapes={"input_ids": (cfg["batch"], cfg["seq"])}, progress=False)
    results["compile_seconds"] = time.perf_counter() - t0
    results["model_mib"] = {"float": f32.stat().st_size / 2**20, "qdq": q8.stat().st_size / 2**20}
    results["ir_nodes"] = len(art.graph.nodes)
    return model, q8, art


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gpt2", action="store_true", help="GPT-2-small shape: " + json.dumps(GPT2))
    for k, v in SMALL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"(CPU default {v})")
    ap.add_argument("--artifact", type=Path, default=None, help="time this compiled artifact instead")
    ap.add_argument("--from-examples", action="store_true",
                    help="the issue's pipeline: the examples' causal LM in this shape, quantized by onnxruntime "
                         "(QDQ), compiled by lasercc; fp16 eager and onnxruntime run the same model")
    ap.add_argument("--calib-rows", type=int, default=8, help="calibration sequences for --from-examples")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--matmul", default="auto", help="exact matmul engine (auto, fp16, fp32, int8, f64, i64)")
    ap.add_argument("--skip-ort", action="store_true")
    ap.add_argument("--ort-threads", type=int, default=0, help="0: onnxruntime's default")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    device = torch.device(args.device)
    base = GPT2 if (args.gpt2 or (device.type == "cuda" and args.layers is None)) else SMALL
    cfg = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}
    power = PowerSampler(device.index or 0) if device.type == "cuda" else None
    results: dict[str, Any] = {"config": cfg, "device": str(device), "torch": torch.__version__,
                               "host": platform.processor() or platform.machine(),
                               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                               "power_source": power.source if power else None, "variants": {}}
    tokens = cfg["batch"] * cfg["seq"]
    rng = np.random.default_rng(0)

    # -- the spiking graph on the torch executor
    example_model = q8_path = None
    tmpdir = tempfile.TemporaryDirectory() if args.from_examples else None
    if args.from_examples:
        example_model, q8_path, art = from_examples(cfg, Path(tmpdir.name), args.calib_rows, results)
        graph = art.graph
        feeds = {"input_ids": torch.as_tensor(rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"])))}
    elif args.artifact is not None:
        from lasercc.ir.artifact import load

        graph = load(args.artifact).graph
        feeds = {}
        for n in graph.inputs:
            if isinstance(n.type, TensorType) and n.type.dtype == "i64":
                feeds[n.name] = torch.as_tensor(rng.integers(0, cfg["vocab"], n.type.shape))
            elif isinstance(n.type, TensorType):
                feeds[n.name] = torch.as_tensor(rng.normal(0, 1, n.type.shape).astype(np.float32))
            else:
                feeds[n.name] = torch.as_tensor(rng.integers(0, n.type.hi + 1, n.type.shape))
        tokens = int(np.prod(graph.inputs[0].type.shape[:2])) if len(graph.inputs[0].type.shape) >= 2 else \
            int(graph.inputs[0].type.shape[0])
    else:
        t0 = time.perf_counter()
        graph = spiking_gpt(**cfg)
        results["build_seconds"] = time.perf_counter() - t0
        feeds = {"ids": torch.as_tensor(rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"])))}
    ex = torch_executor("codes", device=device, matmul=args.matmul)
    feeds_dev = {k: v.to(device) for k, v in feeds.items()}
    r = timed(lambda: ex.run_tensors(graph, feeds_dev), device, args.repeat, args.min_seconds, power)
    plans = {f"{k[0]}[{k[1]}]": describe(m.plan) for k, m in ex._mm.items()}
    results["variants"]["lasercc-torch"] = r | {"engine": ex.engine,
                                                "single_product_somas": sum(p["x_slices"] * p["w_slices"] == 1
                                                                            for p in plans.values()),
                                                "somas": len(plans)}

    # -- float model, fp16 eager on CUDA (fp32 on CPU)
    def float_eager(model: nn.Module, ids: torch.Tensor) -> None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        m_dev = model.to(device=device, dtype=dtype)
        ids_dev = ids.to(device)
        with torch.inference_mode():
            r = timed(lambda: m_dev(ids_dev), device, args.repeat, args.min_seconds, power)
        results["variants"][f"torch-{'fp16' if dtype == torch.float16 else 'fp32'}-eager"] = r

    if example_model is not None:
        ids = feeds["input_ids"]
        float_eager(example_model, ids)
        if not args.skip_ort:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = args.ort_threads
            sess = ort.InferenceSession(str(q8_path), so, providers=["CPUExecutionProvider"])
            x = {"input_ids": ids.numpy()}
            results["variants"]["ort-cpu-int8"] = timed(lambda: sess.run(None, x), torch.device("cpu"), 1, 0.0, None)
    ids = feeds.get("ids")
    if args.artifact is None and ids is not None:
        model = FloatGPT(cfg["layers"], cfg["d_model"], cfg["heads"], cfg["vocab"], cfg["seq"]).eval()
        float_eager(model, ids)
        if not args.skip_ort:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    sess = ort_quantized_session(model, ids, Path(tmp), args.ort_threads)
                    x = {"ids": ids.numpy()}
                    r = timed(lambda: sess.run(None, x), torch.device("cpu"), 1, 0.0, None)
                    results["variants"]["ort-cpu-int8"] = r
            except Exception as e:  # report, do not hide: the other numbers stand on their own
                results["variants"]["ort-cpu-int8"] = {"error": f"{type(e).__name__}: {e}"}

    for v in results["variants"].values():
        if "seconds" in v:
            v["tokens_per_s"] = tokens / v["seconds"]
            if v.get("power_w"):
                v["joules_per_token"] = v["power_w"] * v["seconds"] / tokens
    fp = next((v for k, v in results["variants"].items() if k.startswith("torch-")), None)
    if fp and "tokens_per_s" in fp:
        results["executor_vs_float"] = results["variants"]["lasercc-torch"]["tokens_per_s"] / fp["tokens_per_s"]

    print(f"device {results['gpu'] or results['host']} ({device}), torch {torch.__version__}, "
          f"model {json.dumps(cfg)}, {tokens} tokens per batch")
    print(f"{'variant':<22}{'tokens/s':>14}{'ms/batch':>12}{'W':>8}{'mJ/token':>10}")
    for k, v in results["variants"].items():
        if "error" in v:
            print(f"{k:<22}  error: {v['error']}")
            continue
        pw = f"{v['power_w']:.0f}" if v.get("power_w") else "-"
        jt = f"{1e3 * v['joules_per_token']:.3f}" if v.get("joules_per_token") else "-"
        print(f"{k:<22}{v['tokens_per_s']:>14.0f}{1e3 * v['seconds']:>12.1f}{pw:>8}{jt:>10}")
    if "executor_vs_float" in results:
        print(f"executor / float throughput: {results['executor_vs_float']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if tmpdir is not None:
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
