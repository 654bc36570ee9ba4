"""Build small transformers in torch, export them to ONNX and quantize them with onnxruntime.

These are the golden inputs of the ONNX frontend: models written the way users' exporters write them
(eager attention, additive ``finfo.min`` / ``Where`` masks, Erf-GELU, LayerNormalization, a written-out
RMSNorm, SwiGLU), quantized by the tools users already run (``onnxruntime.quantization``), so that
lasercc is tested on real exporter output rather than on hand-made graphs.

    python examples/build_models.py                      # the committed files, into examples/models/
    python examples/build_models.py --all-variants       # + QOperator, dynamic, int8-act, 16-bit, per-tensor
    python examples/build_models.py --only tiny_gpt --out /tmp/m
    python examples/build_models.py --only gpt2_small --all-variants --out /tmp/g   # never committed

Everything is deterministic (fixed seeds, one torch thread), so the bundled files are reproducible
from this script and are never edited by hand.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "examples" / "models"
OPSET = 17
OPSET_16BIT = 21  # ONNX QuantizeLinear accepts (u)int16 from opset 21 on
N_CALIB = 64
N_HELDOUT = 32


# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of one model; the same fields serve the GPT, BERT and LLaMA-style builders."""

    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    seq_len: int
    d_ff: int
    eps: float = 1e-5


def tiny_gpt_config() -> TransformerConfig:
    """The bundled demo LM: small enough that its QDQ file is tens of KB."""
    return TransformerConfig(vocab=64, d_model=32, n_heads=2, n_layers=2, seq_len=16, d_ff=128)


def gpt2_small_config() -> TransformerConfig:
    """GPT-2-small's shape (124M parameters): built on demand for scale tests, never committed."""
    return TransformerConfig(vocab=50257, d_model=768, n_heads=12, n_layers=12, seq_len=128, d_ff=3072)


def tiny_bert_config() -> TransformerConfig:
    return TransformerConfig(vocab=64, d_model=32, n_heads=2, n_layers=2, seq_len=16, d_ff=64, eps=1e-12)


def tiny_llama_config() -> TransformerConfig:
    return TransformerConfig(vocab=64, d_model=32, n_heads=2, n_layers=2, seq_len=16, d_ff=64, eps=1e-6)


# ----------------------------------------------------------------------------------------------
# Models (attention written out, so the exported graphs show every op a real eager export shows)
# ----------------------------------------------------------------------------------------------


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, n_heads, d // n_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class CausalSelfAttention(nn.Module):
    """GPT-2 style: fused QKV projection, QK^T/sqrt(d), additive causal mask of ``finfo.min``."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        allowed = torch.tril(torch.ones(cfg.seq_len, cfg.seq_len, dtype=torch.bool))
        mask = torch.zeros(cfg.seq_len, cfg.seq_len).masked_fill(~allowed, torch.finfo(torch.float32).min)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        q, k, v = (_split_heads(a, self.n_heads) for a in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores + self.mask[:t, :t]
        return self.proj(_merge_heads(scores.softmax(dim=-1) @ v))


class GPTBlock(nn.Module):
    """Pre-LayerNorm block with an exact (Erf) GELU MLP."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CausalLM(nn.Module):
    """GPT-style LM: token + learned position embeddings, blocks, final LayerNorm, bias-free head."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(GPTBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tok(input_ids) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class BertLayer(nn.Module):
    """Post-LayerNorm encoder layer (BERT): separate Q/K/V, additive padding mask, GELU MLP."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, cfg.d_model) for _ in range(3))
        self.o = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(m(x), self.n_heads) for m in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + additive_mask
        x = self.ln1(x + self.o(_merge_heads(scores.softmax(dim=-1) @ v)))
        return self.ln2(x + self.out(F.gelu(self.fc(x))))


class BertEncoder(nn.Module):
    """BERT-style encoder: ids + attention_mask in, (last hidden state, tanh pooler of [CLS]) out.

    The mask is turned into HF's ``(1 - mask) * finfo.min`` additive form, a data-dependent mask
    the frontend must recognise as masking rather than quantize as data.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.ln_emb = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.n_layers))
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.ln_emb(self.tok(input_ids) + self.pos(pos))
        additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, additive)
        return x, torch.tanh(self.pooler(x[:, 0]))


class RMSNorm(nn.Module):
    """Written out as LLaMA's reference code does: x * rsqrt(mean(x^2) + eps) * g."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LlamaBlock(nn.Module):
    """RMSNorm, bias-free attention with a ``Where`` (masked_fill) causal mask, SwiGLU MLP.

    Rotary embeddings are left out: they are data movement plus constant multiplies that add export
    noise without a new node kind.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.norm1 = RMSNorm(cfg.d_model, cfg.eps)
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.d_model, cfg.d_model, bias=False) for _ in range(4))
        self.norm2 = RMSNorm(cfg.d_model, cfg.eps)
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w3 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.register_buffer(
            "causal", torch.tril(torch.ones(cfg.seq_len, cfg.seq_len, dtype=torch.bool)), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.norm1(x)
        q, k, v = (_split_heads(m(h), self.n_heads) for m in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.causal[:t, :t], torch.finfo(scores.dtype).min)
        x = x + self.o(_merge_heads(scores.softmax(dim=-1) @ v))
        h = self.norm2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class LlamaLM(nn.Module):
    """Embedding, LLaMA-style blocks, final RMSNorm, bias-free head."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# ----------------------------------------------------------------------------------------------
# Synthetic data: a tiny stochastic grammar, so a trained LM has non-trivial, measurable predictions
# ----------------------------------------------------------------------------------------------


def synthetic_tokens(n: int, seq_len: int, vocab: int, seed: int) -> np.ndarray:
    """``n`` sequences from a fixed random grammar over ``vocab`` tokens, as int64 ``[n, seq_len]``.

    The grammar is fixed (seed 1234), only the sampling depends on ``seed``: each token has two
    successors (probabilities 0.75/0.25), and every sequence repeats its first 4 tokens at positions
    8..11, so a model gains from attending back (an induction-style copy), not only from bigrams.
    The 0.75/0.25 choice costs 0.56 nats on 11 of the 15 predicted positions and the 4 copies ~0,
    so the floor is ~0.41 nats/token against ln(vocab) = 4.16 for a blind guess.
    """
    grammar = np.random.default_rng(1234)
    first = grammar.integers(0, vocab, size=vocab)
    succ = np.stack([first, (first + grammar.integers(1, vocab, size=vocab)) % vocab], axis=1)  # distinct
    rng = np.random.default_rng(seed)
    out = np.empty((n, seq_len), dtype=np.int64)
    out[:, 0] = rng.integers(0, vocab, size=n)
    for t in range(1, seq_len):
        pick = (rng.random(n) >= 0.75).astype(np.int64)
        out[:, t] = succ[out[:, t - 1], pick]
    if seq_len >= 12:
        out[:, 8:12] = out[:, 0:4]
    return out


def train_lm(model: nn.Module, steps: int, seed: int = 0, batch: int = 32, lr: float = 3e-3) -> float:
    """Next-token training on :func:`synthetic_tokens`; returns the last step's loss (nats/token)."""
    cfg: TransformerConfig = model.cfg  # type: ignore[assignment]
    data = torch.from_numpy(synthetic_tokens(steps * batch, cfg.seq_len, cfg.vocab, seed=seed + 100))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        x = data[step * batch : (step + 1) * batch]
        logits = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def next_token_nll(logits: np.ndarray, ids: np.ndarray) -> float:
    """Mean next-token negative log-likelihood (nats) of ``logits [n, t, vocab]`` on ``ids [n, t]``."""
    z = logits[:, :-1].astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, ids[:, 1:, None], -1).mean())


# ----------------------------------------------------------------------------------------------
# Model specs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """How to make one named model and which of its files are committed."""

    name: str
    make: Callable[[], nn.Module]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    train_steps: int = 0
    dynamic_seq: bool = False
    committed: tuple[str, ...] = ()  # variant names ("float", "qdq", ...) committed to git
    note: str = ""


def _gpt() -> nn.Module:
    return CausalLM(tiny_gpt_config())


def _gpt2_small() -> nn.Module:
    return CausalLM(gpt2_small_config())


def _bert() -> nn.Module:
    return BertEncoder(tiny_bert_config())


def _llama() -> nn.Module:
    return LlamaLM(tiny_llama_config())


SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("tiny_gpt", _gpt, ("input_ids",), ("logits",), train_steps=400,
                  committed=("float", "qdq"), note="bundled demo LM, trained on the synthetic grammar"),
        ModelSpec("tiny_bert", _bert, ("input_ids", "attention_mask"), ("last_hidden_state", "pooled"),
                  dynamic_seq=True, committed=("float", "qdq"), note="random init, dynamic `seq` axis"),
        ModelSpec("tiny_llama", _llama, ("input_ids",), ("logits",), train_steps=300,
                  committed=("float", "qdq"), note="RMSNorm + SwiGLU + Where mask, trained on the grammar"),
        ModelSpec("gpt2_small", _gpt2_small, ("input_ids",), ("logits",),
                  note="GPT-2-small shape, random init, on demand only (~500 MB float)"),
    )
}
DEFAULT_MODELS = ("tiny_gpt", "tiny_bert", "tiny_llama")


def model_inputs(spec: ModelSpec, cfg: TransformerConfig, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` rows of inputs for ``spec`` (rows on axis 0); BERT rows get trailing padding."""
    ids = synthetic_tokens(n, cfg.seq_len, cfg.vocab, seed=seed)
    feeds = {"input_ids": ids}
    if "attention_mask" in spec.input_names:
        lengths = np.random.default_rng(seed + 1).integers(cfg.seq_len // 2, cfg.seq_len + 1, size=n)
        feeds["attention_mask"] = (np.arange(cfg.seq_len)[None, :] < lengths[:, None]).astype(np.int64)
    return feeds


# ----------------------------------------------------------------------------------------------
# Export and quantization
# ----------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, spec: ModelSpec, example: dict[str, np.ndarray], path: Path) -> None:
    """Legacy TorchScript exporter (``dynamo=False``, no onnxscript needed), opset 17, batch 1.

    Weights stay inside the file (the models here are far below the 2 GB protobuf limit; GPT-2 small
    is ~500 MB).
    """
    args = tuple(torch.from_numpy(example[n][:1]) for n in spec.input_names)
    dynamic_axes = None
    if spec.dynamic_seq:
        dynamic_axes = {n: {1: "seq"} for n in spec.input_names}
        dynamic_axes.update({n: {1: "seq"} for n in spec.output_names if n != "pooled"})
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's "converting a tensor to a Python float" (the 1/sqrt(d) constant) and the
        # legacy-exporter deprecation notice are expected here; the ORT check below is what counts.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model, args, str(path), dynamo=False, opset_version=OPSET,
            input_names=list(spec.input_names), output_names=list(spec.output_names),
            dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


class RowReader(CalibrationDataReader):
    """Feeds a calibration ``.npz``'s rows one at a time as batch-1 inputs (the models are batch 1)."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self.feeds = feeds
        self.rows = len(next(iter(feeds.values())))
        self._it: Iterator[dict[str, np.ndarray]] = self._gen()

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.rows):
            yield {k: v[i : i + 1] for k, v in self.feeds.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._gen()


# Only matrix multiplies are quantized: that is what users do for transformers (ORT's default op list
# also quantizes the finfo.min mask Add, whose scale ~1e36 destroys the model) and it leaves
# LayerNorm/Softmax/GELU as float islands, which the frontend must calibrate itself.
QUANT_OPS = ["MatMul", "Gemm"]


@dataclass(frozen=True)
class Variant:
    name: str
    describe: str
    run: Callable[[Path, Path, dict[str, np.ndarray]], None]


def _static(fmt: QuantFormat, act: QuantType, per_channel: bool, reduce_range: bool = True) -> Callable:
    def run(src: Path, dst: Path, calib: dict[str, np.ndarray]) -> None:
        quantize_static(
            str(src), str(dst), RowReader(calib), quant_format=fmt, activation_type=act,
            weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
            op_types_to_quantize=QUANT_OPS, extra_options=_calib_options(src, len(calib["input_ids"])),
        )
    return run


def _calib_options(src: Path, rows: int) -> dict:
    """Large models flush calibration outputs every few rows (GPT-2 small would hold ~20 GB of them).

    ORT 1.32 raises "No data is collected" when the row count is a multiple of the flush size, so
    the size is chosen not to divide ``rows``; small models keep ORT's default (one flush at the end).
    """
    if src.stat().st_size < 100 * 2**20:
        return {}
    size = next(k for k in range(8, 1, -1) if rows % k)
    return {"CalibMaxIntermediateOutputs": size}


def _static_16bit(src: Path, dst: Path, calib: dict[str, np.ndarray]) -> None:
    """QUInt16 activations need QuantizeLinear-21: convert the float model to opset 21 first.

    ORT has no 16-bit integer MatMul kernel, so these stay DQ -> float MatMul and full-range int8
    weights are safe here.
    """
    converted = dst.with_suffix(".opset21.tmp.onnx")
    onnx.save(onnx.version_converter.convert_version(onnx.load(str(src)), OPSET_16BIT), str(converted))
    try:
        _static(QuantFormat.QDQ, QuantType.QUInt16, True, reduce_range=False)(converted, dst, calib)
    finally:
        converted.unlink(missing_ok=True)


def _dynamic(src: Path, dst: Path, calib: dict[str, np.ndarray]) -> None:
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     op_types_to_quantize=QUANT_OPS)


# Why reduce_range (7-bit weights, [-64, 64]) on every 8-bit variant but one: onnxruntime's u8 x s8
# kernel on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) sums pairs of u8*s8 products in
# saturating int16 (vpmaddubsw), so 255*127*2 = 64770 clips to 32767. Measured here on an AVX2 CPU:
# a 1x4 QLinearMatMul of 255s and 127s returns 66 where the exact result is 130, and the full-range
# per-channel tiny_gpt drops from top-1 0.996 (DQ -> float MatMul) to 0.916 once ORT fuses
# QLinearMatMul. 7-bit weights cannot saturate (255*64*2 = 32640 <= 32767), so ORT's output is the exact
# integer result on every CPU, which is what bit-exact golden tests need. `qdq_w8` keeps full-range
# weights to exhibit the problem.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("qdq", "quantize_static QDQ, uint8 act, int8 per-channel weights (reduce_range), MatMul/Gemm",
                _static(QuantFormat.QDQ, QuantType.QUInt8, True)),
        Variant("qdq_s8", "quantize_static QDQ, int8 act, int8 per-channel weights (reduce_range), MatMul/Gemm",
                _static(QuantFormat.QDQ, QuantType.QInt8, True)),
        Variant("qdq_pt", "quantize_static QDQ, uint8 act, int8 per-tensor weights (reduce_range), MatMul/Gemm",
                _static(QuantFormat.QDQ, QuantType.QUInt8, False)),
        Variant("qdq_w8", "quantize_static QDQ, uint8 act, full-range int8 per-channel weights (saturates in "
                "ORT's AVX2 u8s8 kernel)", _static(QuantFormat.QDQ, QuantType.QUInt8, True, reduce_range=False)),
        Variant("qop", "quantize_static QOperator (QLinearMatMul), uint8 act, int8 per-channel weights "
                "(reduce_range)", _static(QuantFormat.QOperator, QuantType.QUInt8, True)),
        Variant("dyn", "quantize_dynamic (DynamicQuantizeLinear + MatMulInteger), int8 per-channel weights "
                "(reduce_range)", _dynamic),
        Variant("qdq16", "quantize_static QDQ opset 21, uint16 act, int8 per-channel weights",
                _static_16bit),
    )
}


# ----------------------------------------------------------------------------------------------
# Checks against onnxruntime
# ----------------------------------------------------------------------------------------------


def run_rows(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``path`` in onnxruntime (default optimisation, CPU) row by row; outputs stacked on axis 0."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = len(next(iter(feeds.values())))
    outs = [sess.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(rows)]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


@dataclass
class Agreement:
    """Quantized vs float on held-out rows: first output's cosine and top-1 agreement on the last axis."""

    cosine: float
    top1: float
    max_abs: float
    nll: float | None = None  # next-token NLL of this file's logits (LMs only)


def agreement(ref: np.ndarray, got: np.ndarray) -> Agreement:
    return Agreement(
        cosine=cosine(ref, got),
        top1=float((ref.argmax(-1) == got.argmax(-1)).mean()),
        max_abs=float(np.abs(ref.astype(np.float64) - got).max()),
    )


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    name: str
    files: dict[str, Path] = field(default_factory=dict)  # variant ("float", "qdq", ...) -> path
    agreement: dict[str, Agreement] = field(default_factory=dict)
    train_loss: float | None = None
    float_nll: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # variant -> why it was not produced


def build(
    name: str,
    out: Path = DEFAULT_OUT,
    variants: Sequence[str] | None = None,
    train_steps: int | None = None,
    check: bool = True,
) -> BuildResult:
    """Build model ``name`` into ``out``: float ONNX, quantized variants, calib/held-out/input ``.npz``.

    ``variants`` defaults to the spec's committed quantized variants; ``train_steps`` overrides the
    spec's training budget (tests use a tiny one). With ``check`` every file is run in onnxruntime on
    the held-out rows and compared with the float model.
    """
    spec = SPECS[name]
    variants = [v for v in spec.committed if v != "float"] if variants is None else list(variants)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: bit-identical training on any machine
    model = spec.make().eval()
    cfg: TransformerConfig = model.cfg  # type: ignore[assignment]
    res = BuildResult(name)
    steps = spec.train_steps if train_steps is None else train_steps
    if steps:
        res.train_loss = train_lm(model, steps)

    calib = model_inputs(spec, cfg, N_CALIB, seed=1)
    heldout = model_inputs(spec, cfg, N_HELDOUT, seed=2)
    np.savez(out / f"{name}.calib.npz", **calib)
    np.savez(out / f"{name}.heldout.npz", **heldout)
    np.savez(out / f"{name}.input.npz", **{k: v[:1] for k, v in heldout.items()})  # one batch-1 sample

    float_path = out / f"{name}.onnx"
    export_onnx(model, spec, heldout, float_path)
    res.files["float"] = float_path
    root_log = logging.getLogger()
    level = root_log.level
    root_log.setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice, once per call
    try:
        for v in variants:
            dst = out / f"{name}.{v}.onnx"
            VARIANTS[v].run(float_path, dst, calib)
            res.files[v] = dst
    finally:
        root_log.setLevel(level)

    if check:
        ref = run_rows(float_path, heldout)[0]
        with torch.no_grad():
            torch_ref = model(*(torch.from_numpy(heldout[n]) for n in spec.input_names))
        torch_ref = torch_ref[0] if isinstance(torch_ref, tuple) else torch_ref
        err = float(np.abs(torch_ref.numpy() - ref).max())
        if err > 1e-3 * max(1.0, float(np.abs(ref).max())):
            raise RuntimeError(f"{name}: exported ONNX disagrees with torch (max abs {err:.3g})")
        is_lm = spec.output_names == ("logits",)
        if is_lm:
            res.float_nll = next_token_nll(ref, heldout["input_ids"])
        for v, path in res.files.items():
            if v == "float":
                continue
            got = run_rows(path, heldout)[0]
            res.agreement[v] = agreement(ref, got)
            if is_lm:
                res.agreement[v].nll = next_token_nll(got, heldout["input_ids"])
    return res


# ----------------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------------


def _how(path: Path) -> tuple[str, str]:
    parts = path.name.split(".")
    name, rest = parts[0], parts[1:-1]
    spec = SPECS.get(name)
    if path.suffix == ".npz":
        kind = rest[0] if rest else "?"
        rows = {"calib": f"{N_CALIB} calibration rows", "heldout": f"{N_HELDOUT} held-out rows",
                "input": "one batch-1 sample (row 0 of heldout)"}.get(kind, kind)
        return "npz", f"{rows} of {', '.join(spec.input_names) if spec else '?'} (axis 0 = row)"
    if not rest:
        return f"float ONNX opset {OPSET}", f"torch.onnx.export(dynamo=False); {spec.note if spec else ''}"
    var = VARIANTS.get(rest[0])
    return (rest[0], var.describe) if var else (rest[0], "?")


def is_committed(filename: str) -> bool:
    """Whether ``filename`` is one of the bundled files (every ``.npz`` of a default model is)."""
    parts = filename.split(".")
    spec = SPECS.get(parts[0])
    if spec is None or spec.name not in DEFAULT_MODELS:
        return False
    if filename.endswith(".npz"):
        return True
    variant = parts[1] if len(parts) > 2 else "float"
    return variant in spec.committed


def write_manifest(out: Path) -> Path:
    """``README.md`` table of every model file in ``out``: file, size, format, how produced."""
    lines = [
        "# Example models",
        "",
        "Generated by `python examples/build_models.py` (deterministic; never edit by hand).",
        "Committed: the tiny GPT demo LM, tiny BERT and tiny LLaMA-style (float + qdq each) with their",
        "calibration / held-out / single-input `.npz` files. Other variants: `--all-variants`.",
        "",
        "| file | size | committed | format | how produced |",
        "|---|---:|---|---|---|",
    ]
    for p in sorted(out.glob("*.onnx")) + sorted(out.glob("*.npz")):
        fmt, how = _how(p)
        kept = "yes" if is_committed(p.name) else "no"
        lines.append(f"| {p.name} | {p.stat().st_size / 1024:.1f} KB | {kept} | {fmt} | {how} |")
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default examples/models)")
    ap.add_argument("--only", action="append", choices=sorted(SPECS), help="build only this model (repeatable)")
    ap.add_argument("--all-variants", action="store_true", help=f"build every variant: {', '.join(VARIANTS)}")
    ap.add_argument("--train-steps", type=int, default=None, help="override the training budget")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime agreement check")
    args = ap.parse_args(argv)
    names = args.only or list(DEFAULT_MODELS)
    for name in names:
        t0 = time.perf_counter()
        res = build(name, args.out, list(VARIANTS) if args.all_variants else None, args.train_steps,
                    check=not args.no_check)
        head = f"{name}: {time.perf_counter() - t0:.1f} s"
        if res.train_loss is not None:
            head += f", train loss {res.train_loss:.3f}"
        if res.float_nll is not None:
            head += f", held-out NLL float {res.float_nll:.3f}"
        print(head)
        for v, a in res.agreement.items():
            nll = "" if a.nll is None else f"  NLL {a.nll:.3f}"
            print(f"  {v:7s} cos {a.cosine:.5f}  top-1 {a.top1:.3f}  max|d| {a.max_abs:.3g}{nll}")
    print(f"manifest: {write_manifest(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
