"""Unseen text architectures: tiny random Hugging Face families the zoo (``bench/hf_zoo.py``) never covered.

Why: lasercc is judged on transformer exports nobody on the team has looked at. ``bench/hf_zoo.py``'s families
were the ones the frontend was debugged on; this bench takes 21 more, built the same way (random weights from
a config, hidden 64, 2 layers, ``torch.manual_seed(0)``; nothing is downloaded) in transformers' *default*
attention (SDPA where the architecture supports it, as users export today), and runs them through the very
same machinery (``hf_zoo.run_model``: TorchScript opset 17 and dynamo opset 18 exports, onnxruntime's static
QDQ quantizer, lasercc float at ``--bits 16`` / ``--bits 8`` and the QDQ file compiled as it is, every output
compared with onnxruntime on held-out rows). What each family brings that the zoo had not:

ModernBERT (alternating global / sliding-window local attention, GeGLU, no biases, RoPE in an encoder), Qwen3
(per-head RMSNorm of q and k), Gemma2 (attention-logit and final-logit soft-capping ``tanh(x/c)*c``, sliding
window on alternate layers, pre+post norms), Phi3 (fused qkv and gate/up projections split by Slice), GPTBigCode
(multi-query attention with one fused KV head), GPT-J (interleaved rotary ``rotate_every_two`` on a rotary_dim
prefix, parallel residual), CodeGen (GPT-J's rotary behind a model-parallel qkv reshape), StableLM (partial
rotary, per-head LayerNorm of q/k), OLMo2 (RMSNorm of the full q/k projections, post-norm only), Granite
(embedding / residual / attention / logit multipliers), StarCoder2 (sliding window, biased LayerNorm + GELU
MLP), ELECTRA (factorized embedding projection), XLM-RoBERTa, MobileBERT (trigram embedding by shifted
Pad/Concat, NoNorm, bottlenecks, 2 stacked FFNs), ConvBERT (span-based dynamic convolution: depthwise separable
Conv1d, unfold), SqueezeBERT (grouped 1x1 Conv1d for every projection), Funnel (relative-position attention
with pooling and upsampling), BART and Pegasus (encoder-decoders, like the zoo's t5 row: ``logits`` and
``encoder_last_hidden_state``), BioGPT, XGLM (sinusoidal positions offset by the padding index).

Targets (as ``bench/hf_zoo_vision.py``): float ``--bits 16`` >= 0.99 and ``--bits 8`` >= 0.9 cosine vs ORT
float, the ORT QDQ file compiled as it is >= 0.995 vs ORT running that file. Rows use ``hf_zoo.table``'s format
so ``bench/hf_zoo_summary.py`` can read them.

    .venv/bin/python bench/hf_zoo_unseen.py [--models modernbert qwen3 ...] [--exports ts17 dynamo18] [--work DIR]
        [--attention default|eager] [--out FILE] [--no-write]

Bench-only dependencies: ``transformers`` (5.23) and ``onnxscript`` (dynamo).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import hf_zoo  # noqa: E402 - sets HF_HUB_OFFLINE before transformers is imported
from _provenance import commit  # noqa: E402
from hf_zoo import INIT, VOCAB, Spec  # noqa: E402
from torch import nn  # noqa: E402

ATTN: str | None = None  # transformers' default attention implementation (SDPA where supported)
EXPORTS = {"ts17": 17, "dynamo18": 18}  # export key -> opset (18 = the dynamo exporter, as hf_zoo.run_model)
TARGETS = {"float --bits 16": 0.99, "float --bits 8": 0.9, "lasercc on ORT QDQ": 0.995}
DEC = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)  # ids inside VOCAB


def _modernbert() -> nn.Module:
    from transformers import ModernBertConfig, ModernBertModel

    cfg = ModernBertConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=64, global_attn_every_n_layers=2,
                           local_attention=8, pad_token_id=1, bos_token_id=0, eos_token_id=2, cls_token_id=0,
                           sep_token_id=2, initializer_range=INIT, attn_implementation=ATTN)
    return ModernBertModel(cfg)


def _qwen3() -> nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      tie_word_embeddings=True, initializer_range=INIT, attn_implementation=ATTN)
    return Qwen3ForCausalLM(cfg)


def _gemma2() -> nn.Module:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                       sliding_window=6, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                       query_pre_attn_scalar=16, pad_token_id=0, bos_token_id=2, eos_token_id=1,
                       initializer_range=INIT, attn_implementation=ATTN)
    return Gemma2ForCausalLM(cfg)


def _phi3() -> nn.Module:
    from transformers import Phi3Config, Phi3ForCausalLM

    cfg = Phi3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     original_max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                     initializer_range=INIT, attn_implementation=ATTN)
    return Phi3ForCausalLM(cfg)


def _gpt_bigcode() -> nn.Module:
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    cfg = GPTBigCodeConfig(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=128,
                           multi_query=True, bos_token_id=0, eos_token_id=0, initializer_range=INIT,
                           attn_implementation=ATTN)
    return GPTBigCodeForCausalLM(cfg)


def _gptj() -> nn.Module:
    from transformers import GPTJConfig, GPTJForCausalLM

    cfg = GPTJConfig(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=128, rotary_dim=8,
                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=False, initializer_range=INIT,
                     attn_implementation=ATTN)
    return GPTJForCausalLM(cfg)


def _codegen() -> nn.Module:
    from transformers import CodeGenConfig, CodeGenForCausalLM

    cfg = CodeGenConfig(vocab_size=VOCAB, n_positions=64, n_ctx=64, n_embd=64, n_layer=2, n_head=4, n_inner=128,
                        rotary_dim=8, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
                        initializer_range=INIT, attn_implementation=ATTN)
    return CodeGenForCausalLM(cfg)


def _stablelm() -> nn.Module:
    from transformers import StableLmConfig, StableLmForCausalLM

    cfg = StableLmConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         partial_rotary_factor=0.25, use_qkv_bias=True, qk_layernorm=True, bos_token_id=0,
                         eos_token_id=0, initializer_range=INIT, attn_implementation=ATTN)
    return StableLmForCausalLM(cfg)


def _olmo2() -> nn.Module:
    from transformers import Olmo2Config, Olmo2ForCausalLM

    cfg = Olmo2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1,
                      bos_token_id=0, eos_token_id=2, initializer_range=INIT, attn_implementation=ATTN)
    return Olmo2ForCausalLM(cfg)


def _granite() -> nn.Module:
    from transformers import GraniteConfig, GraniteForCausalLM

    cfg = GraniteConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125,
                        logits_scaling=8.0, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        initializer_range=INIT, attn_implementation=ATTN)
    return GraniteForCausalLM(cfg)


def _starcoder2() -> nn.Module:
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    cfg = Starcoder2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                           sliding_window=6, use_bias=True, bos_token_id=0, eos_token_id=0,
                           initializer_range=INIT, attn_implementation=ATTN)
    return Starcoder2ForCausalLM(cfg)


def _electra() -> nn.Module:
    from transformers import ElectraConfig, ElectraModel

    cfg = ElectraConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                        initializer_range=INIT, attn_implementation=ATTN)
    return ElectraModel(cfg)


def _xlm_roberta() -> nn.Module:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64, pad_token_id=1,
                           initializer_range=INIT, attn_implementation=ATTN)
    return XLMRobertaModel(cfg, add_pooling_layer=False)


def _mobilebert() -> nn.Module:
    from transformers import MobileBertConfig, MobileBertModel

    cfg = MobileBertConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, intra_bottleneck_size=32,
                           true_hidden_size=32, num_feedforward_networks=2, max_position_embeddings=64,
                           initializer_range=INIT, attn_implementation=ATTN)
    return MobileBertModel(cfg, add_pooling_layer=False)


def _convbert() -> nn.Module:
    from transformers import ConvBertConfig, ConvBertModel

    cfg = ConvBertConfig(vocab_size=VOCAB, embedding_size=64, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=128, max_position_embeddings=64, head_ratio=2,
                         conv_kernel_size=9, num_groups=1, initializer_range=INIT, attn_implementation=ATTN)
    return ConvBertModel(cfg)


def _squeezebert() -> nn.Module:
    from transformers import SqueezeBertConfig, SqueezeBertModel

    cfg = SqueezeBertConfig(vocab_size=VOCAB, embedding_size=64, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                            q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4,
                            output_groups=4, initializer_range=INIT, attn_implementation=ATTN)
    return SqueezeBertModel(cfg)


def _funnel() -> nn.Module:
    from transformers import FunnelConfig, FunnelModel

    cfg = FunnelConfig(vocab_size=VOCAB, block_sizes=[1, 1], num_decoder_layers=1, d_model=64, n_head=4, d_head=16,
                       d_inner=128, initializer_range=INIT, attn_implementation=ATTN)
    return FunnelModel(cfg)


def _bart() -> nn.Module:
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
                     init_std=INIT, attn_implementation=ATTN, **DEC)
    return BartForConditionalGeneration(cfg)


def _pegasus() -> nn.Module:
    from transformers import PegasusConfig, PegasusForConditionalGeneration

    cfg = PegasusConfig(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                        max_position_embeddings=64, init_std=INIT, attn_implementation=ATTN, **DEC)
    return PegasusForConditionalGeneration(cfg)


def _biogpt() -> nn.Module:
    from transformers import BioGptConfig, BioGptForCausalLM

    cfg = BioGptConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                       eos_token_id=2, initializer_range=INIT, attn_implementation=ATTN)
    return BioGptForCausalLM(cfg)


def _xglm() -> nn.Module:
    from transformers import XGLMConfig, XGLMForCausalLM

    cfg = XGLMConfig(vocab_size=VOCAB, d_model=64, num_layers=2, attention_heads=4, ffn_dim=128,
                     max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2, init_std=INIT,
                     attn_implementation=ATTN)
    return XGLMForCausalLM(cfg)


MASK = ("input_ids", "attention_mask")
TYPES = ("input_ids", "attention_mask", "token_type_ids")
ENC_DEC = ("input_ids", "attention_mask", "decoder_input_ids")
BOTH = ("logits", "encoder_last_hidden_state")
ZOO = (
    Spec("modernbert", _modernbert, MASK, "last_hidden_state",
         "global + sliding-window (8) local attention, RoPE encoder, GeGLU, bias-free LayerNorm"),
    Spec("qwen3", _qwen3, hf_zoo.DECODER_INPUTS, "logits", "per-head RMSNorm of q and k, GQA 4q/2kv"),
    Spec("gemma2", _gemma2, hf_zoo.DECODER_INPUTS, "logits",
         "attention + final logit soft-capping tanh(x/c)*c, sliding window (6) on alternate layers, pre+post norms"),
    Spec("phi3", _phi3, hf_zoo.DECODER_INPUTS, "logits", "fused qkv and gate_up projections split by Slice"),
    Spec("gpt_bigcode", _gpt_bigcode, MASK, "logits", "multi-query attention (one fused KV head)"),
    Spec("gptj", _gptj, MASK, "logits", "interleaved rotary (rotate_every_two) on 8 of 16 dims, parallel residual"),
    Spec("codegen", _codegen, MASK, "logits", "GPT-J rotary behind a model-parallel (mp_num=4) fused qkv reshape"),
    Spec("stablelm", _stablelm, hf_zoo.DECODER_INPUTS, "logits", "partial rotary (25%), qkv bias, per-head q/k "
         "LayerNorm"),
    Spec("olmo2", _olmo2, hf_zoo.DECODER_INPUTS, "logits", "RMSNorm of full q/k projections, post-norms only"),
    Spec("granite", _granite, hf_zoo.DECODER_INPUTS, "logits",
         "embedding / residual / attention / logits multipliers"),
    Spec("starcoder2", _starcoder2, hf_zoo.DECODER_INPUTS, "logits",
         "sliding window (6), biased LayerNorm, GELU-tanh MLP"),
    Spec("electra", _electra, TYPES, "last_hidden_state", "factorized embedding 32 -> 64 projection"),
    Spec("xlm_roberta", _xlm_roberta, MASK, "last_hidden_state", "RoBERTa positions from input_ids != pad"),
    Spec("mobilebert", _mobilebert, TYPES, "last_hidden_state",
         "trigram embedding (shifted Pad/Concat), NoNorm, bottlenecks, stacked FFNs"),
    Spec("convbert", _convbert, TYPES, "last_hidden_state",
         "span-based dynamic convolution (depthwise separable Conv1d, unfold), head_ratio 2"),
    Spec("squeezebert", _squeezebert, MASK, "last_hidden_state", "grouped 1x1 Conv1d projections, NCW layout"),
    Spec("funnel", _funnel, TYPES, "last_hidden_state",
         "relative-position attention, mean-pool of the query, upsampling decoder"),
    Spec("bart", _bart, ENC_DEC, BOTH, "encoder-decoder, learned positions (offset 2), both outputs"),
    Spec("pegasus", _pegasus, ENC_DEC, BOTH, "encoder-decoder, sinusoidal positions, pre-norm, both outputs"),
    Spec("biogpt", _biogpt, MASK, "logits", "learned positions from CumSum(attention_mask), scaled embedding"),
    Spec("xglm", _xglm, MASK, "logits", "sinusoidal positions from CumSum(attention_mask) + padding offset"),
)


def below_target(r: dict) -> bool:
    """A lasercc row under its target (float vs ORT float, the quantized file vs ORT running it)."""
    t = TARGETS.get(r["format"])
    if t is None:
        return False
    if not r["ok"]:
        return True
    return (r["vs_qdq"] if r["format"].startswith("lasercc on") else r["vs_float"]) < t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=[s.name for s in ZOO], help="subset of the families")
    ap.add_argument("--exports", nargs="*", choices=tuple(EXPORTS), default=list(EXPORTS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_hf_zoo_unseen"), help="where ONNX files go")
    ap.add_argument("--attention", choices=("default", "eager"), default="default",
                    help="transformers' attention implementation (default: its own choice, SDPA where supported)")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/hf_zoo_unseen[_eager].md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)
    global ATTN
    ATTN = None if args.attention == "default" else args.attention
    out = args.out or Path(__file__).parent / "results" / f"hf_zoo_unseen{'' if ATTN is None else '_' + ATTN}.md"
    work = args.work / args.attention  # the two attentions' exports side by side
    rev = commit()  # before the runs: files edited meanwhile do not mark these results dirty
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    import transformers

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    specs = {s.name: s for s in ZOO}
    unknown = [m for m in args.models if m not in specs]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; this bench has {list(specs)}")
    rows: list[dict] = []
    for key in args.exports:
        for name in args.models:
            got = hf_zoo.run_model(specs[name], work, ["ORT QDQ"], dynamo=EXPORTS[key] == 18,
                                   verbose=args.verbose, opset=EXPORTS[key])
            rows += got
            print(hf_zoo.table(got).split("\n", 2)[-1], flush=True)
    runs = [r for r in rows if r["format"] in TARGETS]
    fams = {r["model"].split(".")[0] for r in rows}
    bad = [f"{r['model']} {r['format']}" for r in runs if below_target(r)]
    cmd = "`.venv/bin/python bench/hf_zoo_unseen.py" + \
        ("" if args.exports == list(EXPORTS) else " --exports " + " ".join(args.exports)) + \
        ("" if ATTN is None else f" --attention {ATTN}") + \
        ("" if args.models == [s.name for s in ZOO] else " --models " + " ".join(args.models)) + "`"
    text = "\n".join([
        "# Unseen text architectures: tiny random models the zoo never covered, through lasercc",
        "",
        # the attention marker is what bench/hf_zoo_summary.py reads from this line (it files rows by attention)
        f"Command: {cmd}" + (" (transformers' default attention, as `hf_zoo.py --attention default`)  " if ATTN is None
                             else f" ({ATTN} attention)  "),
        f"Commit: {rev}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnx {onnx.__version__}, ORT {ort.__version__}  ",
        f"Models: random init (torch.manual_seed(0), std {INIT}), hidden 64, 2 layers, 4 heads, vocab {VOCAB}, seq "
        f"{hf_zoo.SEQ} ({hf_zoo.DEC_SEQ} decoder tokens); "
        f"{'transformers default (SDPA where supported)' if ATTN is None else ATTN} attention; "
        "exports: TorchScript opset 17 (untagged) and dynamo opset 18 (tagged .dynamo), dynamic batch/seq pinned "
        "to one row for lasercc. Rows, columns and references as bench/hf_zoo.py (its `table`): float rows vs ORT "
        "float, 'lasercc on ORT QDQ' vs ORT running that QDQ file (default graph optimizations). Targets: "
        "float --bits 16 >= 0.99, --bits 8 >= 0.9, QDQ file >= 0.995.  ",
        f"Summary: {len(fams)} families, {sum(r['ok'] for r in runs)}/{len(runs)} lasercc runs compile; "
        f"under target or failed: {', '.join(bad) if bad else 'none'}.",
        "",
        hf_zoo.table(rows),
        "",
    ])
    print(text)
    if not args.no_write:
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
