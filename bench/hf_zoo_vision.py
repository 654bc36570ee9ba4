"""Vision and audio zoo: tiny random Hugging Face ViT, DeiT, Swin, Whisper encoder, wav2vec2 and CLIP through lasercc.

The companion of ``bench/hf_zoo.py`` (text families) for the models users bring with convolution stems: ViT /
DeiT patch embeddings (Conv2d, stride = kernel), CLS (and DeiT's distillation) tokens concatenated to the
patches, Swin's windows (Reshape/Transpose/roll), relative position bias, patch merging (strided Slices) and
its pooled head (AdaptiveAvgPool1d), Whisper's Conv1d stem with stride 2 and sinusoidal positions,
wav2vec2's strided Conv1d feature encoder with GroupNorm (InstanceNormalization) and its grouped positional
convolution, CLIP's text tower (causal mask, pooling at the EOS token by a run-time index) and vision tower
(pre-LayerNorm, quick-GELU), projections, L2 normalisation and the two similarity matrices.

Each family is built from a config with random weights (``torch.manual_seed(0)``; nothing is downloaded), in
transformers' default attention (SDPA where supported), wrapped to return every output listed (pooled heads
included), exported by the TorchScript exporter at opsets 14 and 17 (and 13, with eager attention: torch writes
SDPA from opset 14 on) and by the dynamo exporter (opset 18),
then compiled by lasercc in float (``--bits 16`` and ``--bits 8``) and as onnxruntime's static QDQ model
(``quantize_static``: MatMul, Gemm and Conv; u8 activations, s8 per-channel weights). Every output is compared
with onnxruntime running the same file (cosine over all elements of 8 held-out rows): float rows against ORT
float; the QDQ row against ORT with graph optimizations disabled (the model's own Q/DQ arithmetic, issue 12's
reference). Targets: >= 0.99 at 16 bits, >= 0.9 at 8 bits, >= 0.995 for the QDQ file.

    .venv/bin/python bench/hf_zoo_vision.py [--models vit swin ...] [--exports ts13 ts14 ts17 dynamo18] [--qoperator]
        [--out FILE] [--no-write]

Writes ``bench/results/hf_zoo_vision.md`` (per-family summary, then every row). Bench-only dependencies:
``transformers`` and ``onnxscript`` (dynamo).
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

CALIB_ROWS = 16
EVAL_ROWS = 8
INIT = 0.1  # weight init std (as bench/hf_zoo.py: activations spread like a trained model's)
IMAGE, MELS, FRAMES, SAMPLES, SEQ, VOCAB = 32, 16, 64, 400, 16, 256
IMAGE2 = 64  # MobileViT and LeViT downsample by 32 and 16
TARGETS = {"float --bits 16": 0.99, "float --bits 8": 0.9, "ORT QDQ": 0.995, "ORT QOperator": 0.995}
DEFAULT_RUNS = ("float --bits 16", "float --bits 8", "ORT QDQ")
# export key -> (exporter, opset, attention): torch's TorchScript exporter writes SDPA from opset 14 on, so the
# opset-13 export uses transformers' eager attention (the explicit softmax graph)
EXPORTS = {"ts13": ("torchscript", 13, "eager"), "ts14": ("torchscript", 14, None), "ts17": ("torchscript", 17, None),
           "dynamo18": ("dynamo", 18, None)}


@dataclass(frozen=True)
class Spec:
    """One family: how to build it, its inputs (name -> kind) and the outputs compared (attribute names)."""

    name: str
    build: Callable[[str | None], nn.Module]  # transformers' attn_implementation (None: its default)
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    note: str


def _vit(attn: str | None) -> nn.Module:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=IMAGE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, initializer_range=INIT, attn_implementation=attn)
    return ViTModel(cfg, add_pooling_layer=True)


def _deit(attn: str | None) -> nn.Module:
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    cfg = DeiTConfig(image_size=IMAGE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, initializer_range=INIT, num_labels=10, attn_implementation=attn)
    return DeiTForImageClassificationWithTeacher(cfg)


def _swin(attn: str | None) -> nn.Module:
    from transformers import SwinConfig, SwinModel

    cfg = SwinConfig(image_size=IMAGE, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4,
                     initializer_range=INIT, attn_implementation=attn)
    return SwinModel(cfg, add_pooling_layer=True)


def _whisper(attn: str | None) -> nn.Module:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(num_mel_bins=MELS, d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128,
                        max_source_positions=FRAMES // 2, max_target_positions=16, vocab_size=VOCAB, pad_token_id=0,
                        bos_token_id=0, eos_token_id=0, decoder_start_token_id=0, init_std=INIT,
                        attn_implementation=attn)
    return WhisperEncoder(cfg)


def _wav2vec2(attn: str | None) -> nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="group",
                         initializer_range=INIT, attn_implementation=attn)
    return Wav2Vec2Model(cfg)


def _clip(attn: str | None) -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=SEQ, eos_token_id=2, pad_token_id=1, bos_token_id=0)
    vision = dict(image_size=IMAGE, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16, initializer_range=INIT,
                                attn_implementation=attn))


PIXELS = (("pixel_values", "pixels"),)
ZOO = (
    Spec("vit", _vit, PIXELS, ("last_hidden_state", "pooler_output"),
         "Conv2d patch embedding (k=s=8), CLS concat, position add, dense+tanh pooler"),
    Spec("deit", _deit, PIXELS, ("logits", "cls_logits", "distillation_logits"),
         "CLS + distillation tokens, two heads averaged"),
    Spec("swin", _swin, PIXELS, ("last_hidden_state", "pooler_output"),
         "windows 4x4, shifted windows (roll) + mask, relative position bias, patch merging, avg-pooled head"),
    Spec("whisper_encoder", _whisper, (("input_features", "mels"),), ("last_hidden_state",),
         "Conv1d k=3 stem, Conv1d stride 2, GELU, sinusoidal positions"),
    Spec("wav2vec2", _wav2vec2, (("input_values", "audio"),), ("last_hidden_state", "extract_features"),
         "strided Conv1d feature encoder, GroupNorm, grouped positional Conv1d (k=16, 4 groups)"),
    Spec("clip", _clip, (("input_ids", "ids"), ("pixel_values", "pixels"), ("attention_mask", "mask")),
         ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"),
         "text (causal, EOS pooling by run-time index) + vision towers, projections, L2 norm, similarity"),
)



# --- families the zoo had not seen (bench/results/hf_zoo_vision_unseen.md; ``--zoo unseen``) ------------------
def _bn_stats(model: nn.Module, side: int) -> nn.Module:
    """BatchNorm running statistics of the random model's own activations (cumulative averages over 16 random
    images in train mode, then eval): a random model keeps the init's mean 0 / variance 1, under which a stack of
    BatchNorms shrinks the signal by its weights' gain at every layer (MobileViT's logits were ~1e-8); a trained
    model's statistics normalise what each layer actually sees."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(pixel_values=torch.randn(16, 3, side, side, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def _beit(attn: str | None) -> nn.Module:
    from transformers import BeitConfig, BeitModel

    cfg = BeitConfig(image_size=IMAGE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, use_relative_position_bias=True, use_mean_pooling=True,
                     initializer_range=INIT, attn_implementation=attn)
    return BeitModel(cfg, add_pooling_layer=True)


def _dinov2(attn: str | None) -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(image_size=IMAGE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       mlp_ratio=2, initializer_range=INIT, attn_implementation=attn)
    return Dinov2Model(cfg)


def _siglip(attn: str | None) -> nn.Module:
    from transformers import SiglipConfig, SiglipModel

    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=SEQ)
    vision = dict(image_size=IMAGE, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4)
    cfg = SiglipConfig(text_config=text, vision_config=vision, initializer_range=INIT, attn_implementation=attn)
    return SiglipModel(cfg)


def _yolos(attn: str | None) -> nn.Module:
    from transformers import YolosConfig, YolosForObjectDetection

    cfg = YolosConfig(image_size=[IMAGE, IMAGE], patch_size=8, hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=128, num_detection_tokens=4, num_labels=5,
                      initializer_range=INIT, attn_implementation=attn)
    return YolosForObjectDetection(cfg)


_PYRAMID = dict(num_encoder_blocks=4, depths=(1, 1, 1, 1), sr_ratios=(4, 2, 1, 1), hidden_sizes=(8, 16, 24, 32),
                patch_sizes=(7, 3, 3, 3), strides=(4, 2, 2, 2), num_attention_heads=(1, 1, 2, 2),
                mlp_ratios=(2, 2, 2, 2), initializer_range=INIT, drop_path_rate=0.0)


def _segformer(attn: str | None) -> nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    cfg = SegformerConfig(**_PYRAMID, decoder_hidden_size=32, num_labels=5, classifier_dropout_prob=0.0,
                          attn_implementation=attn)
    return _bn_stats(SegformerForSemanticSegmentation(cfg), IMAGE)


def _convnextv2(attn: str | None) -> nn.Module:
    from transformers import ConvNextV2Config, ConvNextV2Model

    cfg = ConvNextV2Config(image_size=IMAGE, patch_size=4, hidden_sizes=(8, 16, 24, 32), depths=(1, 1, 1, 1),
                           initializer_range=INIT)
    return ConvNextV2Model(cfg)


def _mobilevit(attn: str | None) -> nn.Module:
    from transformers import MobileViTConfig, MobileViTForImageClassification

    cfg = MobileViTConfig(image_size=IMAGE2, patch_size=2, hidden_sizes=(16, 24, 32),
                          neck_hidden_sizes=(8, 8, 16, 16, 24, 24, 48), num_attention_heads=2, expand_ratio=2.0,
                          num_labels=5, hidden_dropout_prob=0.0, classifier_dropout_prob=0.0,
                          initializer_range=INIT, attn_implementation=attn)
    return _bn_stats(MobileViTForImageClassification(cfg), IMAGE2)


def _poolformer(attn: str | None) -> nn.Module:
    from transformers import PoolFormerConfig, PoolFormerForImageClassification

    cfg = PoolFormerConfig(hidden_sizes=(8, 16, 24, 32), depths=(1, 1, 1, 1), mlp_ratio=2.0,
                           num_labels=5, initializer_range=INIT)
    return PoolFormerForImageClassification(cfg)


def _levit(attn: str | None) -> nn.Module:
    from transformers import LevitConfig, LevitForImageClassificationWithTeacher

    cfg = LevitConfig(image_size=IMAGE2, patch_size=16, hidden_sizes=(32, 48, 64), num_attention_heads=(2, 3, 4),
                      depths=(1, 1, 1), key_dim=(8, 8, 8), mlp_ratio=(2, 2, 2), attention_ratio=(2, 2, 2),
                      num_labels=5, initializer_range=INIT)
    return _bn_stats(LevitForImageClassificationWithTeacher(cfg), IMAGE2)


def _swinv2(attn: str | None) -> nn.Module:
    from transformers import Swinv2Config, Swinv2Model

    cfg = Swinv2Config(image_size=IMAGE, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4,
                       drop_path_rate=0.0, initializer_range=INIT, attn_implementation=attn)
    return Swinv2Model(cfg, add_pooling_layer=True)


def _pvt_v2(attn: str | None) -> nn.Module:
    from transformers import PvtV2Config, PvtV2Model

    cfg = PvtV2Config(image_size=IMAGE, **_PYRAMID, attn_implementation=attn)
    return PvtV2Model(cfg)


_SPEECH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16,
               num_conv_pos_embedding_groups=4, feat_extract_norm="group", initializer_range=INIT)


def _hubert(attn: str | None) -> nn.Module:
    from transformers import HubertConfig, HubertModel

    return HubertModel(HubertConfig(**_SPEECH, attn_implementation=attn))


def _data2vec_audio(attn: str | None) -> nn.Module:
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    cfg = Data2VecAudioConfig(**{**_SPEECH, "num_conv_pos_embeddings": 3}, conv_pos_kernel_size=5,
                              attn_implementation=attn)
    return Data2VecAudioModel(cfg)


def _sew(attn: str | None) -> nn.Module:
    from transformers import SEWConfig, SEWModel

    return SEWModel(SEWConfig(**_SPEECH, squeeze_factor=2, attn_implementation=attn))


def _ast(attn: str | None) -> nn.Module:
    from transformers import ASTConfig, ASTModel

    cfg = ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=8,
                    frequency_stride=4, time_stride=4, max_length=FRAMES, num_mel_bins=MELS, initializer_range=INIT,
                    attn_implementation=attn)
    return ASTModel(cfg)


class _MAEEncoder(nn.Module):
    """ViTMAE's encoder with mask_ratio 0 and a fixed shuffle (the noise argument as a buffer: the export is
    deterministic; its argsort is a constant subgraph), so every patch is kept, in a permuted order."""

    def __init__(self, model: nn.Module, patches: int):
        super().__init__()
        self.model = model
        self.register_buffer("noise", torch.rand(1, patches, generator=torch.Generator().manual_seed(3)))

    def forward(self, pixel_values: torch.Tensor) -> object:
        return self.model(pixel_values=pixel_values, noise=self.noise.expand(pixel_values.shape[0], -1))


def _vitmae(attn: str | None) -> nn.Module:
    from transformers import ViTMAEConfig, ViTMAEModel

    cfg = ViTMAEConfig(image_size=IMAGE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, mask_ratio=0.0, initializer_range=INIT, attn_implementation=attn)
    return _MAEEncoder(ViTMAEModel(cfg), (IMAGE // 8) ** 2)


def _speech2text(attn: str | None) -> nn.Module:
    from transformers import Speech2TextConfig
    from transformers.models.speech_to_text.modeling_speech_to_text import Speech2TextEncoder

    cfg = Speech2TextConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                            encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
                            conv_channels=32, conv_kernel_sizes=(5, 5), input_feat_per_channel=MELS,
                            max_source_positions=FRAMES, max_target_positions=16, init_std=INIT,
                            attn_implementation=attn)
    return Speech2TextEncoder(cfg)


PIXELS2 = (("pixel_values", "pixels2"),)
UNSEEN = (
    Spec("beit", _beit, PIXELS, ("last_hidden_state", "pooler_output"),
         "relative position bias per layer (table gathered by a constant index), layer scale, mean-pooled head"),
    Spec("dinov2", _dinov2, PIXELS, ("last_hidden_state", "pooler_output"),
         "position embeddings (interpolation path when traced), layer scale, SwiGLU-free MLP"),
    Spec("siglip", _siglip, (("input_ids", "ids"), ("pixel_values", "pixels")),
         ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"),
         "text tower pooled at the last token, vision tower with a multi-head attention pooling head, "
         "logit scale and bias"),
    Spec("yolos", _yolos, PIXELS, ("logits", "pred_boxes"),
         "detection tokens, bicubic interpolation of position embeddings (mid-layer too), sigmoid box head"),
    Spec("segformer", _segformer, PIXELS, ("logits",),
         "overlapping strided patch conv, spatial-reduction attention (strided conv + LayerNorm), depthwise 3x3 "
         "in the MixFFN, all-MLP decoder with bilinear upsampling, BatchNorm"),
    Spec("convnextv2", _convnextv2, PIXELS, ("last_hidden_state", "pooler_output"),
         "channels-first LayerNorm, depthwise 7x7, global response norm (L2 over space), mean-pooled head"),
    Spec("mobilevit", _mobilevit, PIXELS2, ("logits",),
         f"{IMAGE2}x{IMAGE2} image: inverted residuals (BatchNorm, SiLU, depthwise), unfold/fold to patches "
         "(reshape/transpose), global average pool"),
    Spec("poolformer", _poolformer, PIXELS2, ("logits",),
         f"{IMAGE2}x{IMAGE2} image (at 32 the last stage is 1x1 and pool(x) - x is exactly 0: refused as a "
         "cancellation): AvgPool 3x3 stride 1 (count_include_pad False) token mixer, GroupNorm(1), layer scale"),
    Spec("levit", _levit, PIXELS2, ("logits", "cls_logits", "distillation_logits"),
         f"{IMAGE2}x{IMAGE2} image: conv stem + BatchNorm, Hardswish, attention biases gathered by index, "
         "subsampling attention, Linear+BatchNorm1d"),
    Spec("swinv2", _swinv2, PIXELS, ("last_hidden_state", "pooler_output"),
         "cosine attention with a clamped learnt logit scale, continuous position bias MLP (log-spaced table), "
         "post-norm"),
    Spec("pvt_v2", _pvt_v2, PIXELS, ("last_hidden_state",),
         "overlapping patch embedding, spatial-reduction attention, depthwise conv in the MLP"),
    Spec("hubert", _hubert, (("input_values", "audio"),), ("last_hidden_state",),
         "wav2vec2-style conv feature encoder + grouped positional conv"),
    Spec("data2vec_audio", _data2vec_audio, (("input_values", "audio"),), ("last_hidden_state", "extract_features"),
         "stacked positional Conv1d layers with channel LayerNorm"),
    Spec("sew", _sew, (("input_values", "audio"),), ("last_hidden_state",),
         "squeeze (strided pooling conv) then upsample (Linear + reshape) with padding to the input length"),
    Spec("ast", _ast, (("input_values", "mels_t"),), ("last_hidden_state", "pooler_output"),
         "overlapping Conv2d patches over the spectrogram (8x8, stride 4), CLS + distillation tokens"),
    Spec("vitmae", _vitmae, PIXELS, ("last_hidden_state",),
         "mask_ratio 0 encoder: fixed patch shuffle (argsort of a constant noise), Gather of the kept patches"),
    Spec("speech2text_encoder", _speech2text, (("input_features", "mels_t"),), ("last_hidden_state",),
         "Conv1d subsampler (stride 2, GLU), sinusoidal positions, ReLU FFN"),
)

ZOOS = {"seen": ZOO, "unseen": UNSEEN, "all": (*ZOO, *UNSEEN)}


class Wrapper(nn.Module):
    """Positional inputs -> the listed outputs (the signature both exporters trace)."""

    def __init__(self, model: nn.Module, spec: Spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**{k: a for (k, _), a in zip(self.spec.inputs, args)})
        return tuple(getattr(out, o) for o in self.spec.outputs)


def make_inputs(spec: Spec, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Images ~ N(0, 1) (normalized pixels), log-mel features ~ N(0, 1), raw audio (sines + noise), token ids
    starting with BOS and ending with EOS (CLIP pools at EOS), right-padded masks on every other row."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for k, kind in spec.inputs:
        if kind in ("pixels", "pixels2"):
            side = IMAGE if kind == "pixels" else IMAGE2
            out[k] = rng.normal(0, 1, (rows, 3, side, side)).astype(np.float32)
        elif kind == "mels":
            out[k] = rng.normal(0, 1, (rows, MELS, FRAMES)).astype(np.float32)
        elif kind == "mels_t":  # frames x mel bins (AST, Speech2Text)
            out[k] = rng.normal(0, 1, (rows, FRAMES, MELS)).astype(np.float32)
        elif kind == "audio":
            t = np.arange(SAMPLES) / 16000.0
            f = rng.uniform(100, 2000, (rows, 1))
            out[k] = (0.5 * np.sin(2 * np.pi * f * t) + 0.1 * rng.normal(0, 1, (rows, SAMPLES))).astype(np.float32)
        elif kind == "ids":
            ids = rng.integers(3, VOCAB, (rows, SEQ)).astype(np.int64)
            ids[:, 0], ids[:, -1] = 0, 2
            out[k] = ids
        elif kind == "mask":
            m = np.ones((rows, SEQ), np.int64)
            for r in range(1, rows, 2):
                m[r, SEQ - int(rng.integers(1, 5)) - 1:SEQ - 1] = 0  # padding before the final EOS is kept
            out[k] = m
    return out


def export(model: nn.Module, spec: Spec, feeds: dict[str, np.ndarray], dst: Path, how: str, opset: int) -> str:
    """Batch axis dynamic (pinned to 1 for lasercc), other shapes static. Returns a note: when torch.export
    refuses the dynamic batch (a guard that specialises it -- torch's limitation, not the model's), the dynamo
    export is retried with a static batch of 1, the shape lasercc and the row-by-row references run anyway."""
    w = Wrapper(model, spec).eval()
    names = [k for k, _ in spec.inputs]
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in names)
    note = ""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=64)
            shapes = {"args": tuple({0: batch} for _ in names)}
            try:
                prog = torch.onnx.export(w, args, dynamo=True, opset_version=opset, input_names=names,
                                         output_names=list(spec.outputs), dynamic_shapes=shapes)
            except Exception as e:  # noqa: BLE001 - torch.export's own refusal; retried, and said in the row
                chain, c = [], e
                while c is not None and len(chain) < 8:
                    chain.append(str(c))
                    c = c.__cause__ or c.__context__
                why = next((ln.strip(" -") for t in chain for ln in t.splitlines() if "generated guard" in ln),
                           "")
                note = ("torch.export refused the dynamic batch" + (f" ({why.replace('|', '/')[:140]})" if why else
                                                                    f" ({type(e).__name__})")
                        + ": exported with static batch 1; ")
                logging.getLogger("torch").setLevel(logging.ERROR)
                prog = torch.onnx.export(w, args, dynamo=True, opset_version=opset, input_names=names,
                                         output_names=list(spec.outputs))
            prog.save(str(dst))
        else:
            dyn = {k: {0: "batch"} for k in (*names, *spec.outputs)}
            torch.onnx.export(w, args, str(dst), dynamo=False, opset_version=opset, input_names=names,
                              output_names=list(spec.outputs), dynamic_axes=dyn)
    m = onnx.load(str(dst))
    if how != "dynamo":
        m.ir_version = 8
    onnx.save(m, str(dst))
    return note


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


def quantize_qdq(src: Path, dst: Path, calib: dict[str, np.ndarray], qoperator: bool = False) -> None:
    """onnxruntime's static quantizer: QDQ (or QOperator: QLinearConv / QLinearMatMul ops)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    logging.disable(logging.WARNING)
    try:
        quantize_static(str(src), str(dst), _Reader(calib),
                        quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=["MatMul", "Gemm", "Conv"])
    finally:
        logging.disable(logging.NOTSET)


def ort_run(path: Path, feeds: dict[str, np.ndarray], optimize: bool = True) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    k0 = next(iter(feeds))
    rows = [sess.run(names, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(len(feeds[k0]))]
    return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(names)}


def lasercc_run(path: Path, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                bits: int | None) -> tuple[dict[str, np.ndarray], float, int]:
    """Compile (batch pinned to 1) and run the NumPy backend: outputs by ONNX name, compile seconds, IR nodes."""
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


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def one_error(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return s if len(s) < 200 else s[:197] + "..."


def run_model(spec: Spec, work: Path, export_key: str, verbose: bool = False, qoperator: bool = False,
              diagnose: bool = False) -> list[dict]:
    """Rows for one family and one export: float 16 / 8 bits and the ORT QDQ model (and QOperator model)."""
    how, opset, attn = EXPORTS[export_key]
    torch.manual_seed(0)
    tag = f"{spec.name}.{export_key}"
    base = {"family": spec.name, "export": export_key}
    try:
        model = spec.build(attn).eval()
    except Exception as e:  # noqa: BLE001 - a zoo row records any failure
        return [{**base, "run": "build", "ok": False, "error": one_error(e)}]
    calib, held = make_inputs(spec, CALIB_ROWS, 1), make_inputs(spec, EVAL_ROWS, 2)
    fp, qp = work / f"{tag}.onnx", work / f"{tag}.qdq.onnx"
    try:
        export_note = export(model, spec, calib, fp, how, opset)
        ref_f = ort_run(fp, held)
        with torch.no_grad():  # row by row, as onnxruntime and lasercc run (CLIP's similarities are per batch)
            w = Wrapper(model, spec)
            per = [w(*(torch.from_numpy(held[k][i:i + 1]) for k, _ in spec.inputs)) for i in range(EVAL_ROWS)]
        exp_cos = min(cosine(np.concatenate([r[j].numpy() for r in per]), ref_f[o])
                      for j, o in enumerate(spec.outputs))
    except Exception as e:  # noqa: BLE001
        if verbose:
            traceback.print_exc()
        # the exporter itself cannot write this opset (SDPA needs opset 14): not a lasercc row
        na = type(e).__name__ == "UnsupportedOperatorError"
        return [{**base, "run": "export", "ok": False, "na": na, "error": one_error(e)}]
    rows: list[dict] = []
    runs: list[tuple[str, Path, int | None, dict[str, np.ndarray] | None]] = [
        ("float --bits 16", fp, 16, ref_f), ("float --bits 8", fp, 8, ref_f)]
    try:
        quantize_qdq(fp, qp, calib)
        runs.append(("ORT QDQ", qp, None, ort_run(qp, held, optimize=False)))
    except Exception as e:  # noqa: BLE001
        rows.append({**base, "run": "ORT QDQ (quantizer)", "ok": False, "error": one_error(e)})
    if qoperator:
        op = work / f"{tag}.qop.onnx"
        try:
            quantize_qdq(fp, op, calib, qoperator=True)
            runs.append(("ORT QOperator", op, None, ort_run(op, held, optimize=False)))
        except Exception as e:  # noqa: BLE001 - onnxruntime's own quantizer failing is recorded, not counted
            rows.append({**base, "run": "ORT QOperator (quantizer)", "ok": False, "na": True, "error": one_error(e)})
    ops = sorted({n.op_type for n in onnx.load(str(fp)).graph.node} & {"Conv", "Pad", "GlobalAveragePool",
                                                                      "AveragePool", "InstanceNormalization",
                                                                      "LayerNormalization", "ReduceMean"})
    for label, path, bits, ref in runs:
        try:
            got, sec, nodes = lasercc_run(path, calib, held, bits)
        except Exception as e:  # noqa: BLE001
            if verbose:
                traceback.print_exc()
            rows.append({**base, "run": label, "ok": False, "error": one_error(e)})
            continue
        assert ref is not None
        cos = {o: cosine(ref[o], got[o]) for o in ref}
        ok = min(cos.values()) >= TARGETS[label]
        note = export_note + f"export vs torch cos {exp_cos:.6f}; " + ", ".join(ops)
        if not ok and diagnose:
            note += "; " + diagnosis(label, path, calib, held, bits, ref)
        rows.append({**base, "run": label, "ok": True, "cos": cos, "sec": sec, "nodes": nodes, "pass": ok,
                     "note": note})
    return rows


def diagnosis(label: str, path: Path, calib: dict[str, np.ndarray], held: dict[str, np.ndarray], bits: int | None,
              ref: dict[str, np.ndarray]) -> str:
    """Why a compiled row misses its target, measured: a float row is compiled again with the held-out rows added
    to the calibration (a cosine that recovers: held-out values beyond the 16 calibrated rows' ranges saturated --
    calibration coverage, not arithmetic); a quantized file is run by onnxruntime against itself with every
    quantizer input scaled by 1 + 2^-20 (``_ort_conditioning``: a cosine below the target means no
    implementation that is not bit-identical to onnxruntime's kernels can meet it)."""
    try:
        if label.startswith("float"):
            both = {k: np.concatenate([calib[k], held[k]]) for k in calib}
            got, _, _ = lasercc_run(path, both, held, bits)
            return f"calibrated with the held-out rows too: min cos {min(cosine(ref[o], got[o]) for o in ref):.5f}"
        sys.path.insert(0, str(Path(__file__).parent))
        import _ort_conditioning

        pert, count = _ort_conditioning.perturbed_outputs(path, held)
        return (f"ORT vs ORT with its {count} quantizer inputs x(1+2^-20): min cos "
                f"{min(cosine(ref[o], pert[o]) for o in ref):.5f}")
    except Exception as e:  # noqa: BLE001 - a diagnosis that fails is reported, not raised
        return f"diagnosis failed: {one_error(e)}"



def summary(rows: list[dict], families: list[str], exports: list[str], runs: tuple[str, ...]) -> str:
    out = ["| family | compiled / total | meets target / total | " + " | ".join(
        f"cos {r}" + (" (min over outputs)" if k == 0 else "") for k, r in enumerate(runs)) + " | compile s |",
        "|---|---:|---:|" + "---|" * len(runs) + "---|"]
    for f in families:
        rs = [r for r in rows if r["family"] == f and r["export"] in exports]
        total = (len(exports) - sum(bool(r.get("na")) and r["run"] == "export" for r in rs)) * len(runs) \
            - sum(bool(r.get("na")) and r["run"] != "export" for r in rs)
        ok = [r for r in rs if r["ok"]]

        def rng(label: str, rs: list[dict] = ok) -> str:
            v = [min(r["cos"].values()) for r in rs if r["run"] == label]
            return f"{min(v):.4f} - {max(v):.4f}" if v else "-"

        secs = [r["sec"] for r in ok]
        out.append(f"| {f} | {len(ok)} / {total} | {sum(r['pass'] for r in ok)} / {total} | "
                   + " | ".join(rng(r) for r in runs) + " | "
                   f"{(f'{min(secs):.1f} - {max(secs):.1f}') if secs else '-'} |")
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    out = ["| family | export | run | compile | cosine per output (vs ORT; QDQ: ORT, optimizations off) | target | "
           "IR nodes | compile s | notes |", "|---|---|---|---|---|---|---:|---:|---|"]
    for r in rows:
        if r["ok"]:
            cs = ", ".join(f"{k} {v:.5f}" for k, v in r["cos"].items())
            out.append(f"| {r['family']} | {r['export']} | {r['run']} | ok | {cs} | "
                       f"{'yes' if r['pass'] else '**no**'} | {r['nodes']} | {r['sec']:.1f} | {r['note']} |")
        elif r.get("na"):
            who = "exporter" if r["run"] == "export" else "ORT quantizer"
            out.append(f"| {r['family']} | {r['export']} | {r['run']} | n/a ({who}) | | | | | {r['error']} |")
        else:
            out.append(f"| {r['family']} | {r['export']} | {r['run']} | **fail** | | | | | {r['error']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", choices=list(ZOOS), default="seen",
                    help="seen: the first six families (hf_zoo_vision.md); unseen: the later ones "
                         "(hf_zoo_vision_unseen.md)")
    ap.add_argument("--models", nargs="*", default=None, help="subset of the families (default: all of --zoo)")
    ap.add_argument("--exports", nargs="*", default=list(EXPORTS), choices=list(EXPORTS),
                    help="TorchScript at opsets 13/14/17, dynamo at opset 18")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_hf_zoo_vision"), help="where ONNX files go")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/hf_zoo_vision[_unseen].md")
    ap.add_argument("--qoperator", action="store_true",
                    help="also onnxruntime's QOperator model (QLinearConv, QLinearMatMul) vs its own arithmetic")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    ap.add_argument("--diagnose", action="store_true",
                    help="for a row under its target: recompile a float row calibrated with the held-out rows too; "
                         "run a quantized file's onnxruntime against itself with quantizer inputs x(1+2^-20)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import _provenance

    _provenance.commit()  # cached now: files edited while the bench runs do not change the recorded commit
    t_start = time.perf_counter()
    runs = DEFAULT_RUNS + (("ORT QOperator",) if args.qoperator else ())
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    zoo = ZOOS[args.zoo]
    if args.models is None:
        args.models = [s.name for s in zoo]
    if args.out is None:
        args.out = Path(__file__).parent / "results" / ("hf_zoo_vision.md" if args.zoo == "seen"
                                                        else "hf_zoo_vision_unseen.md")
    specs = {s.name: s for s in (*ZOO, *UNSEEN)}
    unknown = [m for m in args.models if m not in specs]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; the zoo has {list(specs)}")
    rows: list[dict] = []
    for name in args.models:
        for ex in args.exports:
            new = run_model(specs[name], args.work, ex, verbose=args.verbose, qoperator=args.qoperator,
                            diagnose=args.diagnose)
            rows += new
            print(table(new).split("\n", 2)[-1], flush=True)
    import transformers

    cmd = "`.venv/bin/python bench/hf_zoo_vision.py" + \
        ("" if args.zoo == "seen" else f" --zoo {args.zoo}") + \
        ("" if args.models == [s.name for s in zoo] else " --models " + " ".join(args.models)) + \
        ("" if args.exports == list(EXPORTS) else " --exports " + " ".join(args.exports)) + \
        (" --qoperator" if args.qoperator else "") + (" --diagnose" if args.diagnose else "") + \
        (f" --out {args.out.name}" if args.out.name not in ("hf_zoo_vision.md", "hf_zoo_vision_unseen.md") else "") \
        + "`"
    notes = "\n".join(f"- **{s.name}**: {s.note}" for s in (*ZOO, *UNSEEN) if s.name in args.models)
    text = "\n".join([
        "# Vision and audio zoo: tiny random Hugging Face models through lasercc", "",
        f"Command: {cmd}  ",
        f"Commit {_provenance.commit()}, {_provenance.date()}; {time.perf_counter() - t_start:.0f} s  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnx {onnx.__version__}, ORT {ort.__version__}  ",
        "Models: random init (torch.manual_seed(0), init std 0.1), 2 layers, transformers' default attention "
        "(ts13: eager, the exporter writes SDPA from opset 14 on); "
        f"images 3x{IMAGE}x{IMAGE} (MobileViT, PoolFormer, LeViT: {IMAGE2}x{IMAGE2}), {MELS} mel bins x {FRAMES} "
        f"frames, {SAMPLES} audio samples, {SEQ} tokens"
        + ("" if args.zoo == "seen" else "; BatchNorm running statistics of each random model's own activations "
           "(16 random images; with the init's 0/1 statistics MobileViT's signal vanished to 1e-8)") + ". "
        "Exports: TorchScript at opsets 13, 14, 17 and dynamo at opset 18, dynamic batch (pinned to 1 for lasercc). "
        f"Calibration {CALIB_ROWS} random rows; cosine over all elements of {EVAL_ROWS} other rows, per graph "
        "output (the summary takes the minimum over outputs). ORT QDQ = quantize_static (MatMul, Gemm, Conv; u8 "
        "activations, s8 per-channel reduce_range weights), compared with onnxruntime running it with graph "
        "optimizations disabled (ORT QOperator: the same quantizer's QOperator format, same reference). Targets: "
        + ", ".join(f"{k} >= {v}" for k, v in TARGETS.items() if k in runs) + ". "
        "'n/a (exporter)' / 'n/a (ORT quantizer)': torch's exporter cannot write that opset, or onnxruntime's "
        "quantizer fails on the model (not counted in the totals).", "",
        "## Per family", "", summary(rows, args.models, args.exports, runs), "", notes, "",
        "## Every run", "", table(rows), ""])
    print(text)
    if not args.no_write:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
