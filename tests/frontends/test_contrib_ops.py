"""onnxruntime's fused com.microsoft ops (lasercc.frontends.onnx.ops_contrib) against onnxruntime.

Two kinds of models: the committed tiny BERT / GPT exports run through onnxruntime's own transformer
optimizer (``optimize_model``: Attention, SkipLayerNormalization, BiasGelu, Gelu), and small graphs
built here with onnx.helper for the fused ops the optimizer writes on other models
(EmbedLayerNormalization, Attention with a raw or causal mask, FastGelu with bias, QuickGelu,
BiasAdd, (Skip)SimplifiedLayerNormalization). Each compiled graph runs on the NumPy backend and is
compared with onnxruntime running the same model on held-out inputs.

Thresholds: cosine >= 0.999 against onnxruntime, as the other frontend tests. Measured: float models
at --bits 16 0.99987-1.0; the QDQ models (8-bit MatMuls) 0.9998-1.0. Dropping BiasGelu's bias
(measured) gives 0.998 on the tiny GPT, below the bound; an ignored padding mask is caught by
test_attention_mask_is_used.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from frontend_models import Reader, vi
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.frontends.onnx.compare import compare
from lasercc.frontends.onnx.load import FrontendError
from lasercc.ir.nodes import ASNCSegment, Mask
from lasercc.runtime import run_graph

logging.getLogger().setLevel(logging.ERROR)
MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
SEQ, D, HEADS, VOCAB = 16, 32, 2, 64
COS = 0.999


def _feeds(model: onnx.ModelProto, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids, right-padded 0/1 masks, segment ids or normal floats for each graph input (batch 1 each)."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for i in model.graph.input:
        if i.name in inits:
            continue
        dims = [d.dim_value or SEQ for d in i.type.tensor_type.shape.dim][1:]
        dt = np.int32 if i.type.tensor_type.elem_type == TensorProto.INT32 else np.int64
        if "mask" in i.name:
            lengths = rng.integers(SEQ // 2, SEQ + 1, size=rows)
            out[i.name] = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(dt)
        elif "segment" in i.name or "token_type" in i.name:
            out[i.name] = (np.arange(SEQ)[None, :] >= rng.integers(2, SEQ, size=(rows, 1))).astype(dt)
        elif "ids" in i.name:
            out[i.name] = rng.integers(0, VOCAB, size=(rows, *dims)).astype(dt)
        else:
            out[i.name] = rng.standard_normal((rows, *dims)).astype(np.float32)
    return out


def _check(path: Path, bits: int | None = None, cos: float = COS) -> dict[str, dict]:
    model = onnx.load(str(path))
    shapes = {k: (1, *v.shape[1:]) for k, v in _feeds(model, 1, 0).items()}
    art = lasercc.compile(path, bits=bits, calibration=_feeds(model, 16, 0), input_shapes=shapes, progress=False)
    x = _feeds(model, 4, 1)
    res = run_graph(art.graph, x)
    m = compare(path, art.graph, x, res.values, res.codes, art.manifest["onnx_outputs"])
    for k, v in m.items():
        assert v["cosine"] >= cos, (path.name, bits, k, v)
    return {"metrics": m, "graph": art.graph}


def _optimize(tmp: Path, name: str, model_type: str) -> tuple[Path, set[str]]:
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = optimizer.optimize_model(str(MODELS / f"{name}.onnx"), model_type=model_type, num_heads=HEADS,
                                     hidden_size=D, opt_level=1, use_gpu=False)
    m = o.model
    for i in m.graph.input:  # pin the dynamic sequence axis (the quantizer's calibration needs static shapes)
        for d in i.type.tensor_type.shape.dim:
            if not d.dim_value:
                d.Clear()
                d.dim_value = SEQ
    path = tmp / f"{name}_{model_type}.onnx"
    onnx.save(m, str(path))
    return path, {n.op_type for n in m.graph.node if n.domain == "com.microsoft"}


def _qdq(src: Path, ops: list[str]) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    dst = src.with_suffix(".qdq.onnx")
    quantize_static(str(src), str(dst), Reader(_feeds(onnx.load(str(src)), 16, 0), 1), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=ops, reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return dst


# ---- optimizer output ------------------------------------------------------------------------------


def test_optimized_bert_float_and_qdq(tmp_path: Path) -> None:
    """BERT: Attention (1-D mask_index from ReduceSum of the padding mask), SkipLayerNormalization with
    bias, BiasGelu -- float at 16 bits and QDQ (MatMul/Gemm, per channel, reduce_range)."""
    path, fused = _optimize(tmp_path, "tiny_bert", "bert")
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= fused, fused
    g = _check(path, bits=16)["graph"]
    # "step": the lengths -> padding-mask table (the mask reached the softmax)
    assert {"gelu", "step", "exp", "rsqrt"} <= {n.function for n in g.nodes if isinstance(n, ASNCSegment)}
    _check(_qdq(path, ["MatMul", "Gemm"]))


def test_optimized_gpt_float_and_qdq(tmp_path: Path) -> None:
    """GPT-2: SkipLayerNormalization whose input_skip_bias_sum output is the residual stream, BiasGelu
    (model_type gpt2) / Gelu (model_type bert)."""
    path, fused = _optimize(tmp_path, "tiny_gpt", "gpt2")
    assert {"SkipLayerNormalization", "BiasGelu"} <= fused, fused
    _check(path, bits=16)
    _check(_qdq(path, ["MatMul"]))  # onnxruntime's quantizer cannot quantize these Gemm biases itself
    path_b, fused_b = _optimize(tmp_path, "tiny_gpt", "bert")
    assert "Gelu" in fused_b, fused_b
    _check(path_b, bits=16)


# ---- hand-built graphs -----------------------------------------------------------------------------


def _w(rng: np.random.Generator, *shape: int, s: float = 1.0) -> np.ndarray:
    return (s * rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def _model(nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _embed_attention(mask_kind: str, unidirectional: int = 0, seed: int = 0) -> onnx.ModelProto:
    """EmbedLayerNormalization (word + position + segment) -> Attention -> output.

    mask_kind: "index" (EmbedLayerNormalization's mask_index output), "raw" (the [B, S] mask itself),
    "none".
    """
    rng = np.random.default_rng(seed)
    inits = {"word": rng.standard_normal((VOCAB, D)).astype(np.float32),
             "pos": (0.5 * rng.standard_normal((SEQ, D))).astype(np.float32),
             "seg": (0.5 * rng.standard_normal((2, D))).astype(np.float32),
             "gamma": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
             "beta": (0.1 * rng.standard_normal(D)).astype(np.float32),
             "wqkv": _w(rng, D, 3 * D, s=2.0), "bqkv": (0.1 * rng.standard_normal(3 * D)).astype(np.float32)}
    i32 = TensorProto.INT32
    emb_in = ["input_ids", "segment_ids", "word", "pos", "seg", "gamma", "beta"] + (["mask"] if mask_kind != "none"
                                                                                     else [])
    nodes = [helper.make_node("EmbedLayerNormalization", emb_in, ["emb", "mask_index"], domain="com.microsoft",
                              epsilon=1e-12)]
    mask_in = {"index": "mask_index", "raw": "mask", "none": ""}[mask_kind]
    nodes.append(helper.make_node("Attention", ["emb", "wqkv", "bqkv", mask_in], ["y"], domain="com.microsoft",
                                  num_heads=HEADS, unidirectional=unidirectional))
    inputs = [vi("input_ids", [1, SEQ], i32), vi("segment_ids", [1, SEQ], i32)]
    if mask_kind != "none":
        inputs.append(vi("mask", [1, SEQ], i32))
    return _model(nodes, inputs, [vi("y", [1, SEQ, D])], inits)


@pytest.mark.parametrize(("mask_kind", "uni"), [("index", 0), ("raw", 0), ("none", 1), ("raw", 1)])
def test_embed_layernorm_and_attention(tmp_path: Path, mask_kind: str, uni: int) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_embed_attention(mask_kind, uni), str(path))
    g = _check(path, bits=16)["graph"]
    # a constant (causal) mask alone is a Mask node; with an input mask it joins the input-dependent drop mask
    assert any(isinstance(n, Mask) for n in g.nodes) == (uni == 1 and mask_kind == "none")
    assert any(isinstance(n, ASNCSegment) and n.function == "step" for n in g.nodes) == (mask_kind == "index")


def test_attention_mask_is_used(tmp_path: Path) -> None:
    """The padding mask changes the result: a graph that ignored it would not match onnxruntime, and
    the same graph fed an all-ones mask differs from the padded one."""
    path = tmp_path / "m.onnx"
    model = _embed_attention("index")
    onnx.save(model, str(path))
    art = lasercc.compile(path, bits=16, calibration=_feeds(model, 16, 0), progress=False)
    x = _feeds(model, 4, 1)
    full = dict(x, mask=np.ones_like(x["mask"]))
    y = art.graph.outputs[0]
    a, b = run_graph(art.graph, x).values[y], run_graph(art.graph, full).values[y]
    padded = x["mask"].min(axis=1) == 0
    assert padded.any() and np.abs(a - b)[padded].max() > 0.05


def _activations() -> onnx.ModelProto:
    """x -> FastGelu(bias) -> QuickGelu -> SkipSimplifiedLayerNormalization(skip=x, bias)
    -> SimplifiedLayerNormalization -> SkipLayerNormalization(no bias, skip=x; output 3 used) -> y, sum.
    (BiasAdd has no CPU kernel in onnxruntime, so it is not compared here.)"""
    rng = np.random.default_rng(3)
    inits = {"b1": (0.3 * rng.standard_normal(D)).astype(np.float32),
             "b3": (0.3 * rng.standard_normal(D)).astype(np.float32),
             "g1": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
             "g2": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
             "g3": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
             "be3": (0.1 * rng.standard_normal(D)).astype(np.float32)}
    ms = "com.microsoft"
    nodes = [helper.make_node("FastGelu", ["x", "b1"], ["a1"], domain=ms),
             helper.make_node("QuickGelu", ["a1"], ["a2"], domain=ms, alpha=1.5),
             helper.make_node("SkipSimplifiedLayerNormalization", ["a2", "x", "g1", "b3"], ["a4"], domain=ms,
                              epsilon=1e-6),
             helper.make_node("SimplifiedLayerNormalization", ["a4", "g2"], ["a5"], epsilon=1e-6, axis=-1),
             helper.make_node("SkipLayerNormalization", ["a5", "x", "g3", "be3"], ["y", "", "", "s"], domain=ms,
                              epsilon=1e-5)]
    return _model(nodes, [vi("x", [1, SEQ, D])], [vi("y", [1, SEQ, D]), vi("s", [1, SEQ, D])], inits)


def test_fused_activations_and_norms(tmp_path: Path) -> None:
    path = tmp_path / "act.onnx"
    onnx.save(_activations(), str(path))
    g = _check(path, bits=16)["graph"]
    fns = {n.function for n in g.nodes if isinstance(n, ASNCSegment)}
    assert {"gelu_tanh", "quick_gelu", "rsqrt"} <= fns, fns


def test_unsupported_attention_forms_name_the_input(tmp_path: Path) -> None:
    model = _embed_attention("raw")
    att = next(n for n in model.graph.node if n.op_type == "Attention")
    att.input.extend(["", "bias_extra"])  # attention_bias (input 5)
    model.graph.input.append(vi("bias_extra", [1, HEADS, SEQ, SEQ]))
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(FrontendError, match="attention_bias"):
        lasercc.compile(path, bits=16, calibration=_feeds(model, 2, 0), progress=False)
