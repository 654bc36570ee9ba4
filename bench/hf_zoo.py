"""Robustness zoo: tiny random Hugging Face transformers of several architectures through lasercc.

Why: lasercc will meet exported graphs nobody on the team has seen. Each architecture family brings its own
export quirks -- GPT-2's Conv1D linear layers and baked causal-mask buffers, LLaMA's RMSNorm
(Pow/ReduceMean/Sqrt/Div), RoPE (Sin/Cos tables, rotate_half by Slice/Neg/Concat), grouped-query attention
(Expand/Reshape of K and V), SwiGLU, causal masks built at run time from shape subgraphs, BERT's ``(1 - mask)
* finfo.min`` padding mask, MPNet's bucketed relative position bias, ALBERT's factorized embedding and shared
layer, DeBERTa-v3's disentangled attention (log-bucket relative positions, ``GatherElements`` of
content-to-position and position-to-content scores). This bench builds each family at toy size from a config
with random weights (``torch.manual_seed``; nothing is downloaded), exports it with the TorchScript exporter
as real exporters write such graphs (opset 17, dynamic batch/seq axes, eager attention), quantizes it with
onnxruntime's static QDQ quantizer, compiles both with lasercc (NumPy target, input shapes pinned) and
compares the NumPy backend with onnxruntime on held-out inputs. The reference for every row, float and quantized,
is onnxruntime with graph optimisations OFF (``_ort_conditioning.session``): a quantized file is judged against its
own Q/DQ arithmetic, as issue 12 asks, not against the integer kernels ORT's optimiser would fuse it into. Each
onnxruntime-quantized file also gets the "ORT vs ORT ×(1+2^-20)" column (``_ort_conditioning.perturbed_outputs``:
ORT against ORT with every run-time float entering a quantizer scaled by 1 + 2^-20): how far the file's output is
determined by its arithmetic at all -- a file below 0.995 there is ill-conditioned, and no implementation other
than ORT's own float kernels can track it to 0.995. ``--dynamo`` also exports each model with the
dynamo exporter (opset 18; needs ``onnxscript``); ``--opsets 13 14 17 18`` exports every family at each of those
opsets (TorchScript at 13/14/17 -- opset 13 writes Split/Squeeze/ReduceSum axes as attributes and LayerNorm
decomposed into ReduceMean/Pow/Sqrt/Div --, dynamo at 18). ``t5`` is the encoder-decoder
(T5ForConditionalGeneration with ``decoder_input_ids``; both ``logits`` and ``encoder_last_hidden_state`` are
compared) and each ``<family>_st`` entry is that encoder with sentence-transformers' head inside the graph (mean
pooling over the attention mask + L2 normalize, compared on the pooled embedding). A row with several outputs
shows the worst cosine and lists each output's in its notes.

Vision and audio families (ViT, DeiT, Swin, Whisper encoder, wav2vec2, CLIP) are in ``bench/hf_zoo_vision.py``.

Bench-only dependency: ``transformers`` (5.23). Run:

    .venv/bin/python bench/hf_zoo.py [--models gpt2 llama ...] [--work DIR] [--dynamo] [--opsets 13 18] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ort_conditioning  # noqa: E402
import _provenance  # noqa: E402

SEQ = 16
VOCAB = 256
CALIB_ROWS = 16
EVAL_ROWS = 8
# Weight init std (transformers' default is 0.02): larger weights make attention peaky and activations
# spread like a trained model's, so a mis-lowered mask or position table shows in the metrics.
INIT = 0.1
# transformers' attention implementation: "eager" (the explicit softmax graph) or None, transformers' default
# (SDPA where the architecture supports it: scaled_dot_product_attention, exported with boolean masks and a
# Where(IsNaN(softmax), 0, softmax) guard; eager where it does not, e.g. BLOOM)
ATTN: str | None = "eager"


@dataclass(frozen=True)
class Spec:
    """One zoo entry: how to build the model and which inputs its wrapper takes."""

    name: str
    build: Callable[[], nn.Module]
    inputs: tuple[str, ...]      # int64 [batch, seq] inputs, in the wrapper's positional order
    output: str | tuple[str, ...]  # "logits", "last_hidden_state", or several model-output attributes
    note: str
    pool: bool = False           # sentence-transformers head: mask-weighted mean of last_hidden_state, L2-normalized

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's outputs, in order (their ONNX names)."""
        if self.pool:
            return ("sentence_embedding",)
        return (self.output,) if isinstance(self.output, str) else self.output


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4, attn_implementation=ATTN,
                     initializer_range=INIT, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, attn_implementation=ATTN,
                     initializer_range=INIT)
    return BertModel(cfg, add_pooling_layer=False)


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      attn_implementation=ATTN, tie_word_embeddings=False, initializer_range=INIT)
    return LlamaForCausalLM(cfg)


def _qwen2() -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                      attn_implementation=ATTN, tie_word_embeddings=True, initializer_range=INIT)
    return Qwen2ForCausalLM(cfg)


def _mistral() -> nn.Module:
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        attn_implementation=ATTN, sliding_window=6, initializer_range=INIT)
    return MistralForCausalLM(cfg)


def _distilbert() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                           max_position_embeddings=64, attn_implementation=ATTN, initializer_range=INIT)
    return DistilBertModel(cfg)


def _gpt_neox() -> nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5,
                        attn_implementation=ATTN, initializer_range=INIT)
    return GPTNeoXForCausalLM(cfg)


def _t5_encoder() -> nn.Module:
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", attn_implementation=ATTN,
                   initializer_factor=1.0)
    return T5EncoderModel(cfg)



def _t5() -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", attn_implementation=ATTN, initializer_factor=1.0,
                   decoder_start_token_id=0, pad_token_id=0, tie_word_embeddings=False)
    return T5ForConditionalGeneration(cfg)


def _gemma() -> nn.Module:
    from transformers import GemmaConfig, GemmaForCausalLM

    cfg = GemmaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                      attn_implementation=ATTN, initializer_range=INIT)
    return GemmaForCausalLM(cfg)


def _phi() -> nn.Module:
    from transformers import PhiConfig, PhiForCausalLM

    cfg = PhiConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=64, partial_rotary_factor=0.5, attn_implementation=ATTN,
                    initializer_range=INIT)
    return PhiForCausalLM(cfg)


def _falcon() -> nn.Module:
    from transformers import FalconConfig, FalconForCausalLM

    cfg = FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       new_decoder_architecture=False, multi_query=True, attn_implementation=ATTN,
                       initializer_range=INIT)
    return FalconForCausalLM(cfg)


def _roberta() -> nn.Module:
    from transformers import RobertaConfig, RobertaModel

    cfg = RobertaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, pad_token_id=1,
                        attn_implementation=ATTN, initializer_range=INIT)
    return RobertaModel(cfg, add_pooling_layer=False)


def _opt() -> nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                    max_position_embeddings=64, word_embed_proj_dim=64, attn_implementation=ATTN, init_std=INIT,
                    pad_token_id=1, bos_token_id=0, eos_token_id=0)
    return OPTForCausalLM(cfg)


def _bloom() -> nn.Module:
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4, attn_implementation=ATTN,
                      initializer_range=INIT)
    return BloomForCausalLM(cfg)


def _mpnet() -> nn.Module:
    from transformers import MPNetConfig, MPNetModel

    cfg = MPNetConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, relative_attention_num_buckets=32,
                      pad_token_id=1, attn_implementation=ATTN, initializer_range=INIT)
    return MPNetModel(cfg, add_pooling_layer=False)


def _albert() -> nn.Module:
    from transformers import AlbertConfig, AlbertModel

    cfg = AlbertConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                       hidden_act="gelu_new", attn_implementation=ATTN, initializer_range=INIT)
    return AlbertModel(cfg, add_pooling_layer=False)


def _deberta_v2() -> nn.Module:
    from transformers import DebertaV2Config, DebertaV2Model

    cfg = DebertaV2Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, max_position_embeddings=64, relative_attention=True,
                          position_buckets=8, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                          position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
                          type_vocab_size=0, attn_implementation=ATTN, initializer_range=INIT)
    return DebertaV2Model(cfg)

DECODER_INPUTS = ("input_ids", "attention_mask", "position_ids")  # what optimum exports for LLaMA-style decoders
DEC_SEQ = 8  # decoder_input_ids length of the encoder-decoder (T5) rows: not SEQ, so the two sequence axes differ
# Families that sentence-transformers ships as embedders: a "<name>_st" entry adds its Pooling (mean over the
# attention mask) + Normalize modules inside the graph, as sentence-transformers' ONNX export does.
ST_FAMILIES = ("bert", "mpnet", "roberta", "distilbert", "albert", "deberta_v2", "t5_encoder")
ZOO = (
    Spec("gpt2", _gpt2, ("input_ids", "attention_mask"), "logits", "Conv1D (addmm), tanh-GELU, tied embeddings"),
    Spec("bert", _bert, ("input_ids", "attention_mask", "token_type_ids"), "last_hidden_state",
         "padding mask (1-m)*finfo.min, erf-GELU"),
    Spec("llama", _llama, DECODER_INPUTS, "logits", "RMSNorm, RoPE from position_ids, GQA 4q/2kv, SwiGLU"),
    Spec("qwen2", _qwen2, DECODER_INPUTS, "logits", "qkv bias, GQA 4q/1kv, tied embeddings"),
    Spec("mistral", _mistral, DECODER_INPUTS, "logits", "sliding-window (6) causal mask, GQA 4q/2kv"),
    Spec("distilbert", _distilbert, ("input_ids", "attention_mask"), "last_hidden_state",
         "masked_fill padding mask"),
    Spec("gpt_neox", _gpt_neox, ("input_ids", "attention_mask"), "logits", "partial rotary (25%), parallel residual"),
    Spec("t5_encoder", _t5_encoder, ("input_ids", "attention_mask"), "last_hidden_state",
         "relative position bias, T5 RMSNorm, gated-GELU"),
    Spec("t5", _t5, ("input_ids", "attention_mask", "decoder_input_ids"), ("logits", "encoder_last_hidden_state"),
         "encoder-decoder: decoder self-attention (causal) + cross-attention over the encoder output, both outputs"),
    Spec("gemma", _gemma, DECODER_INPUTS, "logits", "RMSNorm (1 + w), embedding * sqrt(d), GELU-tanh gate, MQA"),
    Spec("phi", _phi, ("input_ids", "attention_mask"), "logits", "partial rotary, parallel attn/MLP, LayerNorm"),
    Spec("falcon", _falcon, ("input_ids", "attention_mask"), "logits", "multi-query attention, parallel attn/MLP"),
    Spec("roberta", _roberta, ("input_ids", "attention_mask"), "last_hidden_state",
         "position ids from input_ids (CumSum of ids != pad)"),
    Spec("opt", _opt, ("input_ids", "attention_mask"), "logits", "learned positions from CumSum(attention_mask)"),
    Spec("bloom", _bloom, ("input_ids", "attention_mask"), "logits", "ALiBi bias from CumSum(attention_mask)"),
    Spec("mpnet", _mpnet, ("input_ids", "attention_mask"), "last_hidden_state",
         "T5-style bucketed relative position bias shared by all layers, CumSum position ids"),
    Spec("albert", _albert, ("input_ids", "attention_mask", "token_type_ids"), "last_hidden_state",
         "factorized embedding (32 -> 64), one layer's weights shared by both layers, gelu_new"),
    Spec("deberta_v2", _deberta_v2, ("input_ids", "attention_mask"), "last_hidden_state",
         "DeBERTa-v3 disentangled attention: c2p/p2c log-bucket relative positions, Gather along keys"),
)
ZOO = ZOO + tuple(Spec(f"{s.name}_st", s.build, s.inputs, s.output, "sentence-transformers head: mean pooling over "
                       "the attention mask (Unsqueeze/Expand/Mul/ReduceSum/Clip/Div) + L2 normalize", pool=True)
                  for s in ZOO if s.name in ST_FAMILIES)


class Wrapper(nn.Module):
    """Positional int64 inputs -> the spec's outputs (the signature both exporters trace)."""

    def __init__(self, model: nn.Module, spec: Spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        kw = dict(zip(self.spec.inputs, args))
        if "logits" in self.spec.outputs:
            kw["use_cache"] = False
        out = self.model(**kw)
        if self.spec.pool:  # sentence_transformers.models.Pooling (mean) then Normalize, as they are written
            h = out.last_hidden_state
            m = kw["attention_mask"].unsqueeze(-1).expand(h.size()).to(h.dtype)
            emb = torch.sum(h * m, 1) / torch.clamp(m.sum(1), min=1e-9)
            return nn.functional.normalize(emb, p=2, dim=1)
        res = tuple(getattr(out, o) for o in self.spec.outputs)
        return res[0] if len(res) == 1 else res


def make_inputs(spec: Spec, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Random token ids; attention masks with right padding on every other row (0..5 pad tokens)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for k in spec.inputs:
        if k == "input_ids":
            out[k] = rng.integers(0, VOCAB, size=(rows, SEQ)).astype(np.int64)
        elif k == "attention_mask":
            m = np.ones((rows, SEQ), np.int64)
            for r in range(1, rows, 2):
                pad = int(rng.integers(1, 6))
                m[r, SEQ - pad:] = 0
            out[k] = m
        elif k == "position_ids":  # what generate() passes: cumsum of the mask - 1 (optimum exports it)
            m = out.get("attention_mask", np.ones((rows, SEQ), np.int64))
            out[k] = np.clip(np.cumsum(m, axis=1) - 1, 0, None).astype(np.int64)
        elif k == "decoder_input_ids":  # teacher forcing: the start token, then random ids
            d = rng.integers(1, VOCAB, size=(rows, DEC_SEQ)).astype(np.int64)
            d[:, 0] = 0
            out[k] = d
        elif k == "token_type_ids":
            t = np.zeros((rows, SEQ), np.int64)
            t[:, SEQ // 2:] = 1
            out[k] = t
    return out


def export(model: nn.Module, spec: Spec, feeds: dict[str, np.ndarray], dst: Path, dynamo: bool = False,
           opset: int = 17) -> None:
    """Dynamic batch/seq axes; TorchScript at ``opset`` (13, 14, 17: IR version 8, which older onnxruntime reads),
    dynamo at opset 18 (the oldest it writes)."""
    w = Wrapper(model, spec).eval()
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in spec.inputs)
    outs = list(spec.outputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=64)
            dseq = torch.export.Dim("dec_seq", min=2, max=64)
            shapes = {"args": tuple({0: batch, 1: dseq if k.startswith("decoder") else seq} for k in spec.inputs)}
            prog = torch.onnx.export(w, args, dynamo=True, opset_version=18, input_names=list(spec.inputs),
                                     output_names=outs, dynamic_shapes=shapes)
            prog.save(str(dst))
        else:
            dyn = {k: {0: "batch", 1: "dec_seq" if k.startswith("decoder") else "seq"} for k in spec.inputs}
            for o in outs:  # a pooled embedding has no sequence axis; the decoder's logits follow decoder_input_ids
                dyn[o] = {0: "batch"} if spec.pool else \
                    {0: "batch", 1: "dec_seq" if o == "logits" and "decoder_input_ids" in spec.inputs else "seq"}
            torch.onnx.export(w, args, str(dst), dynamo=False, opset_version=opset, input_names=list(spec.inputs),
                              output_names=outs, dynamic_axes=dyn)
    m = onnx.load(str(dst))
    if not dynamo:
        m.ir_version = 8
    onnx.save(m, str(dst))


class _Reader:
    def __init__(self, feeds: dict[str, np.ndarray]):
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        k0 = next(iter(self.feeds))
        if self.i >= len(self.feeds[k0]):
            return None
        self.i += 1
        return {k: v[self.i - 1:self.i] for k, v in self.feeds.items()}

    def rewind(self) -> None:
        self.i = 0


def quantize(kind: str, src: Path, dst: Path, calib: dict[str, np.ndarray]) -> None:
    """onnxruntime's quantizers, as users run them (see :data:`FORMATS`)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    mm = ["MatMul", "Gemm"]
    logging.disable(logging.WARNING)
    try:
        if kind == "dynamic":
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                             op_types_to_quantize=mm)
            return
        opts = {
            "qdq": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=mm),
            "qoperator": dict(quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, per_channel=True,
                              reduce_range=True, op_types_to_quantize=mm),
            "qdq-u16": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt16, per_channel=True,
                            op_types_to_quantize=mm),
            "qdq-s8-all": dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, per_channel=False,
                               extra_options={"ActivationSymmetric": True}),
        }[kind]
        quantize_static(str(src), str(dst), _Reader(calib), weight_type=QuantType.QInt8, **opts)
    finally:
        logging.disable(logging.NOTSET)


# label -> onnxruntime quantizer kind; the first is the default "ORT QDQ" every float row is also compared with
FORMATS = {
    "ORT QDQ": "qdq",                       # MatMul/Gemm, u8 act, s8 per-channel reduce_range weights
    "ORT QOperator": "qoperator",           # same, as QLinearMatMul ops
    "ORT QDQ u16": "qdq-u16",               # 16-bit activations, s8 per-channel weights
    "ORT dynamic": "dynamic",               # quantize_dynamic: MatMulInteger, run-time activation scales
    "ORT QDQ s8 all ops": "qdq-s8-all",     # every op quantized, symmetric s8 activations, per-tensor weights
}


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output by name, row by row (as lasercc runs: batch pinned to 1), from onnxruntime with graph
    optimisations off: the file's own arithmetic is the reference, not the kernels ORT would fuse it into."""
    return _ort_conditioning.run_rows(_ort_conditioning.session(path), feeds)


REFERENCE = "onnxruntime with graph optimisations off (`_ort_conditioning.session`)"


def lasercc_run(path: Path, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                bits: int | None) -> tuple[dict[str, np.ndarray], float, int]:
    """Compile (shapes pinned to one row) and run the NumPy backend: outputs by ONNX name, compile seconds, IR
    nodes."""
    import lasercc

    shapes = {k: (1, *v.shape[1:]) for k, v in feeds.items()}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(path), target="numpy", bits=bits, calibration=calib, input_shapes=shapes,
                              progress=False)
    dt = time.perf_counter() - t0
    got = art.run(feeds)
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    return {onnx_of.get(k, k): np.asarray(v) for k, v in got.items()}, dt, len(art.graph.nodes)


def metrics1(ref: np.ndarray, got: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """Cosine and max |error| over real tokens (padded positions are undefined in both), top-1 along the last axis.
    The mask applies to outputs whose [batch, seq] axes are the encoder's (not a pooled embedding, not logits over
    the decoder's DEC_SEQ positions)."""
    use = mask is not None and ref.ndim >= 3 and ref.shape[:2] == mask.shape
    keep = mask.astype(bool) if use and mask is not None else np.ones(ref.shape[:1], bool)
    a, b = ref[keep].astype(np.float64), got[keep].astype(np.float64)
    cos = float((a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
    return {"cos": cos, "max_abs": float(np.abs(a - b).max()),
            "top1": float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))}


def metrics(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], mask: np.ndarray | None) -> dict:
    """:func:`metrics1` on every output of ``ref`` (a missing one raises): the worst cosine / top-1 and the largest
    error over outputs, and each output's cosine under "per"."""
    per = {o: metrics1(r, got[o], mask) for o, r in ref.items()}
    return {"cos": min(m["cos"] for m in per.values()), "top1": min(m["top1"] for m in per.values()),
            "max_abs": max(m["max_abs"] for m in per.values()), "per": {o: m["cos"] for o, m in per.items()}}


def per_note(m: dict) -> str:
    """Each output's cosine, when there are several (the row shows the minimum)."""
    per = m.get("per", {})
    return "; " + ", ".join(f"{o} {c:.5f}" for o, c in per.items()) if len(per) > 1 else ""


def one_error(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return s if len(s) < 180 else s[:177] + "..."


def run_model(spec: Spec, work: Path, formats: list[str], dynamo: bool = False, verbose: bool = False,
              opset: int = 17) -> list[dict]:
    """Export ``spec`` (TorchScript at ``opset``, or dynamo at 18), quantize it into each of ``formats``, compile
    the float file at 16 and 8 bits and each quantized file as it is, and compare every run with onnxruntime."""
    torch.manual_seed(0)
    tag = spec.name
    try:
        model = spec.build().eval()
    except Exception as e:  # noqa: BLE001 - a zoo row records any failure
        return [{"model": tag, "format": "build", "ok": False, "error": one_error(e)}]
    calib, held = make_inputs(spec, CALIB_ROWS, 1), make_inputs(spec, EVAL_ROWS, 2)
    mask = held.get("attention_mask")
    tag = spec.name + (".dynamo" if dynamo else "" if opset == 17 else f".op{opset}")
    rows: list[dict] = []
    fp = work / f"{tag}.onnx"
    paths = {f: work / f"{tag}.{FORMATS[f]}.onnx" for f in formats}
    try:
        export(model, spec, calib, fp, dynamo, opset)
        with torch.no_grad():
            w = Wrapper(model, spec)
            t = w(*(torch.from_numpy(held[k]) for k in spec.inputs))
            ref_t = {o: v.numpy() for o, v in zip(spec.outputs, t if isinstance(t, tuple) else (t,))}
        ref_f = ort_run(fp, held)
        exp_cos = metrics(ref_t, ref_f, mask)["cos"]
    except Exception as e:  # noqa: BLE001 - a zoo row records any failure
        if verbose:
            traceback.print_exc()
        return [{"model": tag, "format": "export/ORT", "ok": False, "error": one_error(e)}]
    refs: dict[str, dict[str, np.ndarray]] = {}
    conds: dict[str, float] = {}  # format -> ORT vs ORT x(1+2^-20) cosine of that file
    for f, path in paths.items():
        try:
            quantize(FORMATS[f], fp, path, calib)
            refs[f] = ort_run(path, held)
        except Exception as e:  # noqa: BLE001
            rows.append({"model": tag, "format": f"{f} (ORT reference)", "ok": False, "error": one_error(e)})
            continue
        base = metrics(ref_f, refs[f], mask)
        try:
            pert, count = _ort_conditioning.perturbed_outputs(path, held)
            conds[f] = metrics(refs[f], pert, mask)["cos"]
            cnote = f"; {count} quantizer inputs x(1+2^-20)"
        except Exception as e:  # noqa: BLE001 - the conditioning column is a measurement, not a gate
            cnote = f"; conditioning not measured: {one_error(e)}"
        rows.append({"model": tag, "format": f"{f} (ORT reference)", "ok": True, "vs_float": base["cos"],
                     "vs_qdq": 1.0, "cond": conds.get(f), "top1": base["top1"], "max_abs": base["max_abs"],
                     "note": (f"ORT vs ORT float; export vs torch cos {exp_cos:.6f}" if f == formats[0] else
                              "ORT vs ORT float") + cnote})
    runs = [("float --bits 16", fp, 16, formats[0]), ("float --bits 8", fp, 8, formats[0])]
    runs += [(f"lasercc on {f}", paths[f], None, f) for f in formats if f in refs]
    for label, path, bits, against in runs:
        try:
            got, sec, nodes = lasercc_run(path, calib, held, bits)
        except Exception as e:  # noqa: BLE001
            if verbose:
                traceback.print_exc()
            rows.append({"model": tag, "format": label, "ok": False, "error": one_error(e)})
            continue
        mf = metrics(ref_f, got, mask)
        mq = metrics(refs[against], got, mask) if against in refs else {"cos": float("nan")}
        own = mf if bits else mq
        rows.append({"model": tag, "format": label, "ok": True, "vs_float": mf["cos"], "vs_qdq": mq["cos"],
                     "cond": None if bits else conds.get(against), "top1": own["top1"], "max_abs": own["max_abs"],
                     "note": f"{nodes} IR nodes, {sec:.1f} s" + per_note(own)})
    return rows


def table(rows: list[dict]) -> str:
    """The row table ``bench/hf_zoo_summary.py`` parses (9 columns; files written before the conditioning column
    have 8)."""
    head = ("| model | format | compile | cos vs ORT float | cos vs ORT quantized | ORT vs ORT ×(1+2^-20) | "
            "top-1 vs own ORT | max abs err vs own ORT | notes |\n|---|---|---|---:|---:|---:|---:|---:|---|")
    out = [head]
    for r in rows:
        if r["ok"]:
            cond = "" if r.get("cond") is None else f"{r['cond']:.5f}"
            out.append(f"| {r['model']} | {r['format']} | ok | {r['vs_float']:.5f} | {r['vs_qdq']:.5f} | {cond} | "
                       f"{r['top1']:.3f} | {r['max_abs']:.4f} | {r.get('note', '')} |")
        else:
            out.append(f"| {r['model']} | {r['format']} | **fail** | | | | | | {r['error']} |")
    return "\n".join(out)


RUN_HEAD = "## Opset-17 / dynamo run with every format\n"


def merge(old: str | None, new: str) -> str:
    """The results file to write: ``new`` itself, or, where ``old`` is ``bench/results/hf_zoo.md`` with its
    per-family summary (``bench/hf_zoo_summary.py``) and later sections, ``old`` with only its run section
    (:data:`RUN_HEAD` up to the next ``## `` heading) replaced by ``new`` -- a rerun must not erase what other
    scripts and earlier runs wrote around it."""
    if old is None or RUN_HEAD not in old:
        return new
    before, rest = old.split(RUN_HEAD, 1)
    after = rest.split("\n## ", 1)
    body = new.split("\n", 2)[2].rstrip("\n")  # without the title line and the blank after it
    return before + RUN_HEAD + "\n" + body + "\n" + ("\n## " + after[1] if len(after) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=[s.name for s in ZOO], help="subset of the zoo")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_hf_zoo"), help="where ONNX files go")
    ap.add_argument("--dynamo", action="store_true",
                    help="also export every model with the dynamo exporter (needs onnxscript)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/hf_zoo.md")
    ap.add_argument("--all-formats", action="store_true",
                    help="also QOperator, 16-bit QDQ, quantize_dynamic and all-ops s8 QDQ models")
    ap.add_argument("--opsets", nargs="*", type=int, choices=(13, 14, 17, 18),
                    help="export each model at these opsets (13, 14, 17: TorchScript; 18: dynamo); only ORT QDQ "
                         "besides float at any opset but 17 (--all-formats applies at 17 and "
                         "at the 18 --dynamo adds). "
                         "Default: 17, plus 18 with --dynamo")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    ap.add_argument("--attention", choices=("eager", "default"), default="eager",
                    help="transformers' attention implementation (default: transformers' own choice, SDPA where "
                         "supported -- how users export today)")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/hf_zoo[_default].md)")
    args = ap.parse_args(argv)
    _provenance.commit()  # cached now: the commit that starts the run is the one the header names
    global ATTN
    ATTN = None if args.attention == "default" else args.attention
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    specs = {s.name: s for s in ZOO}
    unknown = [m for m in args.models if m not in specs]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; the zoo has {list(specs)}")
    opsets = args.opsets if args.opsets is not None else [17] + ([18] if args.dynamo else [])
    rows: list[dict] = []
    for opset in opsets:
        # --all-formats: every format at 17 and at the dynamo 18 of --dynamo (the recorded hf_zoo.md runs)
        every = opset == 17 or (opset == 18 and args.opsets is None)
        formats = list(FORMATS) if args.all_formats and every else ["ORT QDQ"]
        for name in args.models:
            got = run_model(specs[name], args.work, formats, dynamo=opset == 18, verbose=args.verbose, opset=opset)
            rows += got
            print(table(got).split("\n", 2)[-1], flush=True)
    import transformers

    cmd = "`.venv/bin/python bench/hf_zoo.py" + (" --dynamo" if args.dynamo else "") + \
        (" --opsets " + " ".join(map(str, args.opsets)) if args.opsets is not None else "") + \
        (" --attention default" if ATTN is None else "") + \
        (" --all-formats" if args.all_formats else "") + \
        ("" if args.models == [s.name for s in ZOO] else " --models " + " ".join(args.models)) + "`"
    text = "\n".join([
        "# Hugging Face architecture zoo: tiny random models through lasercc",
        "",
        f"Command: {cmd}  ",
        f"Reference: {REFERENCE}, for every row (float and quantized files).  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {_provenance.commit()}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnx {onnx.__version__}, ORT {ort.__version__}  ",
        f"Models: random init (torch.manual_seed(0)), hidden 64, 2 layers, 4 heads, vocab {VOCAB}, seq {SEQ}; "
        f"exports at opsets {opsets} (TorchScript; 18 = dynamo exporter, tagged .dynamo; other opsets than 17 "
        "tagged .opN), dynamic batch/seq (pinned to one row of 16 tokens, 8 decoder tokens, for lasercc), "
        f"{ATTN or 'default (SDPA)'} attention. "
        f"Calibration {CALIB_ROWS} random rows; metrics on {EVAL_ROWS} other rows (attention masks right-padded "
        "on every other row; padded positions excluded). ORT QDQ = quantize_static, MatMul/Gemm, u8 act, s8 "
        "per-channel reduce_range weights (other formats: see FORMATS in the script). Each lasercc row is the NumPy "
        "backend (codes mode). 'cos vs ORT quantized': float rows against ORT QDQ, a quantized row against ORT "
        "running that same quantized model. 'own ORT' is ORT float for float rows and the same quantized model "
        "for quantized rows. 'ORT vs ORT ×(1+2^-20)' (onnxruntime-quantized files only): ORT on the file "
        "against ORT on it with every run-time float entering a quantizer scaled by 1 + 2^-20 "
        "(bench/_ort_conditioning.py) -- below 0.995 the file's output is decided by float rounding noise, not its "
        "arithmetic. '(ORT reference)' rows: onnxruntime's quantized model against ORT float -- the "
        "quantization floor the lasercc rows should be read against. Several outputs (t5): the row shows the worst "
        "output, the notes each one. *_st rows: the pooled, normalized sentence embedding (top-1 there is the "
        "largest embedding component, of little meaning).",
        "",
        table(rows),
        "",
    ])
    print(text)
    if not args.no_write:
        out = args.out or Path(__file__).parent / "results" / ("hf_zoo.md" if ATTN else "hf_zoo_default.md")
        out.write_text(merge(out.read_text() if out.exists() else None, text))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
