"""onnxruntime's quantized fused graphs against onnxruntime running the same file.

A small BERT-style block is built here with the ops onnxruntime's ``optimize_model`` writes
(EmbedLayerNormalization -> Attention -> MatMul -> SkipLayerNormalization -> MatMul + FastGelu -> MatMul) and
passed through onnxruntime's own tools: ``quantize_dynamic`` (QAttention, QEmbedLayerNormalization,
DynamicQuantizeLinear + MatMulInteger), the file onnxruntime saves with its CPU graph optimisations
(DynamicQuantizeMatMul / MatMulIntegerToFloat), and ``quant_pre_process`` + ``quantize_static`` QOperator with
the default op list. Reference: onnxruntime on the same file with graph optimisations off (the model's own
arithmetic); bound 0.995 (issue 12). Measured: 0.9999+ on each.

QOperator attention masks: ``quantize_static``'s default op list quantizes the additive finfo.min mask with
the scores (scale ~1e36), which rounds every unmasked score of the file to one code; lasercc keeps a mask a
mask (README, "QOperator attention masks"), so there the reference is onnxruntime on the float model, and the
test also checks that the quantized file's own output really is far from it (else the choice would not matter).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import Reader, vi
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.ir.nodes import Mask

SEQ, D, HEADS, VOCAB, FF = 16, 32, 2, 64, 64
FMIN = float(np.finfo(np.float32).min)
COS = 0.995


def _model(nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _bert_block(seed: int = 0) -> onnx.ModelProto:
    """One encoder layer in onnxruntime's fused form (what optimize_model(model_type='bert') writes)."""
    rng = np.random.default_rng(seed)

    def w(*s: int, k: float = 1.0) -> np.ndarray:
        return (k * rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32)

    def v(n: int, k: float = 0.1) -> np.ndarray:
        return (k * rng.standard_normal(n)).astype(np.float32)

    inits = {"word": rng.standard_normal((VOCAB, D)).astype(np.float32), "pos": w(SEQ, D, k=2.0),
             "seg": w(2, D), "g0": 1 + v(D), "b0": v(D), "wqkv": w(D, 3 * D, k=2.0), "bqkv": v(3 * D),
             "wo": w(D, D), "bo": v(D), "g1": 1 + v(D), "b1": v(D), "w1": w(D, FF), "c1": v(FF), "w2": w(FF, D)}
    ms = "com.microsoft"
    nodes = [
        helper.make_node("EmbedLayerNormalization", ["input_ids", "segment_ids", "word", "pos", "seg", "g0", "b0",
                                                     "mask"], ["emb", "mask_index"], domain=ms, epsilon=1e-12),
        helper.make_node("Attention", ["emb", "wqkv", "bqkv", "mask_index"], ["att"], domain=ms, num_heads=HEADS),
        helper.make_node("MatMul", ["att", "wo"], ["proj"]),
        helper.make_node("SkipLayerNormalization", ["proj", "emb", "g1", "b1", "bo"], ["ln1"], domain=ms,
                         epsilon=1e-12),
        helper.make_node("MatMul", ["ln1", "w1"], ["ff"]),
        helper.make_node("FastGelu", ["ff", "c1"], ["act"], domain=ms),
        helper.make_node("MatMul", ["act", "w2"], ["y"]),
    ]
    i32 = TensorProto.INT32
    inputs = [vi("input_ids", [1, SEQ], i32), vi("segment_ids", [1, SEQ], i32), vi("mask", [1, SEQ], i32)]
    return _model(nodes, inputs, [vi("y", [1, SEQ, D])], inits)


def _feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(SEQ // 2, SEQ + 1, rows)
    return {"input_ids": rng.integers(0, VOCAB, (rows, SEQ)).astype(np.int32),
            "segment_ids": (np.arange(SEQ)[None] >= rng.integers(2, SEQ, (rows, 1))).astype(np.int32),
            "mask": (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)}


def _ort(path: Path, feeds: dict, optimize: bool = False) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    n = len(next(iter(feeds.values())))
    return np.concatenate([s.run(None, {k: v[i:i + 1] for k, v in feeds.items() if k in names})[0] for i in range(n)])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    """Minimum over rows of the row cosine."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _compiled(path: Path, cal: dict, held: dict, bits: int | None = None):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(path, bits=bits, calibration=cal, progress=False,
                              input_shapes={k: (1, *v.shape[1:]) for k, v in held.items()})
    return art, art.run(held)[art.graph.outputs[0]]


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("ortq") / "block.onnx"
    onnx.save(_bert_block(), str(p))
    return p


def _dynamic(src: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = src.with_suffix(".dyn.onnx")
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})  # contrib outputs: untyped
    finally:
        logging.disable(logging.NOTSET)
    return dst


def test_quantize_dynamic_of_fused_bert(block: Path) -> None:
    """QAttention (run-time input scale made static by calibration, the model's int8 Q/K/V weights) and
    QEmbedLayerNormalization (uint8 tables) track onnxruntime on the same file."""
    q = _dynamic(block)
    assert {"QAttention", "QEmbedLayerNormalization", "MatMulInteger", "DynamicQuantizeLinear"} <= _ops(q)
    held = _feeds(4, 1)
    _, got = _compiled(q, _feeds(16, 0), held)
    assert _cos(_ort(q, held), got) >= COS


def test_onnxruntime_saved_dynamic_matmuls(block: Path) -> None:
    """The same file as onnxruntime saves it with its graph optimisations on: DynamicQuantizeMatMul /
    MatMulIntegerToFloat, still QAttention."""
    q = _dynamic(block)
    saved = block.with_suffix(".saved.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(saved)
    so.log_severity_level = 3
    ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    ops = _ops(saved)
    assert ops & {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} and "QAttention" in ops, ops
    held = _feeds(4, 1)
    _, got = _compiled(saved, _feeds(16, 0), held)
    assert _cos(_ort(saved, held), got) >= COS


def test_quantize_static_qoperator_of_fused_bert(block: Path) -> None:
    """quant_pre_process + quantize_static (QOperator, default op list): QLinearMatMul, QEmbedLayerNormalization."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, q = block.with_suffix(".pre.onnx"), block.with_suffix(".qop.onnx")
    logging.disable(logging.WARNING)
    try:
        quant_pre_process(str(block), str(pre), skip_optimization=True)
        quantize_static(str(pre), str(q), Reader(_feeds(16, 0), 1), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
    finally:
        logging.disable(logging.NOTSET)
    assert {"QLinearMatMul", "QEmbedLayerNormalization"} <= _ops(q), _ops(q)
    held = _feeds(4, 1)
    _, got = _compiled(q, _feeds(16, 0), held)
    assert _cos(_ort(q, held), got) >= COS


def test_fused_matmul_alpha_and_transposes(tmp_path: Path) -> None:
    """FusedMatMul (MatMulScaleFusion's output): alpha * A @ B^T of two activations, and A^T @ W."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    nodes = [helper.make_node("FusedMatMul", ["a", "b"], ["s"], domain="com.microsoft", alpha=0.25, transB=1),
             helper.make_node("FusedMatMul", ["s", "w"], ["y"], domain="com.microsoft", alpha=2.0, transA=1)]
    m = _model(nodes, [vi("a", [1, 2, 8, 4]), vi("b", [1, 2, 8, 4])], [vi("y", [1, 2, 8, 5])], {"w": w})
    p = tmp_path / "fm.onnx"
    onnx.save(m, str(p))
    cal = {k: rng.standard_normal((16, 2, 8, 4)).astype(np.float32) for k in ("a", "b")}
    held = {k: rng.standard_normal((4, 2, 8, 4)).astype(np.float32) for k in ("a", "b")}
    _, got = _compiled(p, cal, held, bits=16)
    assert _cos(_ort(p, held), got) >= 0.999


# ---- attention masks reaching QLinearAdd ---------------------------------------------------------------------


def _masked_attention(kind: str, seed: int = 0) -> onnx.ModelProto:
    """x -> Q, K, V projections -> scores = Q K^T / sqrt(d) + mask -> Softmax -> @ V, single head.

    kind: ``input`` (``(1 - mask) * finfo.min`` from the attention_mask input), ``where``
    (``Where(mask, 0, finfo.min)``), ``causal`` (a constant finfo.min upper triangle)."""
    rng = np.random.default_rng(seed)
    inits = {f"w{c}": (3 * rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32) for c in "qkv"}
    inits |= {"scale": np.array(1 / np.sqrt(D), np.float32), "one": np.array(1.0, np.float32),
              "fmin": np.array(FMIN, np.float32), "zero": np.array(0.0, np.float32), "ax": np.array([1], np.int64)}
    nodes = [helper.make_node("MatMul", ["x", f"w{c}"], [c]) for c in "qkv"]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["q", "kt"], ["qk"]), helper.make_node("Mul", ["qk", "scale"], ["s"])]
    inputs = [vi("x", [1, SEQ, D])]
    if kind == "causal":
        inits["causal"] = np.where(np.triu(np.ones((SEQ, SEQ), bool), 1), FMIN, 0).astype(np.float32)[None]
        nodes.append(helper.make_node("Add", ["s", "causal"], ["sm"]))
    else:
        inputs.append(vi("mask", [1, SEQ], TensorProto.INT64))
        nodes.append(helper.make_node("Unsqueeze", ["mask", "ax"], ["m3"]))
        if kind == "input":
            nodes += [helper.make_node("Cast", ["m3"], ["mf"], to=TensorProto.FLOAT),
                      helper.make_node("Sub", ["one", "mf"], ["inv"]),
                      helper.make_node("Mul", ["inv", "fmin"], ["add"])]
        else:
            nodes += [helper.make_node("Cast", ["m3"], ["mb"], to=TensorProto.BOOL),
                      helper.make_node("Where", ["mb", "zero", "fmin"], ["add"])]
        nodes.append(helper.make_node("Add", ["s", "add"], ["sm"]))
    nodes += [helper.make_node("Softmax", ["sm"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    g = helper.make_graph(nodes, "att", inputs, [vi("y", [1, SEQ, D])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _att_feeds(rows: int, seed: int, mask: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"x": rng.standard_normal((rows, SEQ, D)).astype(np.float32)}
    if mask:
        lengths = rng.integers(SEQ // 2, SEQ, rows)
        out["mask"] = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int64)
    return out


@pytest.mark.parametrize("kind", ["input", "where", "causal"])
def test_qoperator_mask_in_qlinear_add(tmp_path: Path, kind: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, q = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(_masked_attention(kind), str(src))
    cal, held = _att_feeds(16, 0, kind != "causal"), _att_feeds(4, 1, kind != "causal")
    logging.disable(logging.WARNING)
    try:
        quantize_static(str(src), str(q), Reader(cal, 1), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    m = onnx.load(str(q))
    add = next(n for n in m.graph.node if n.op_type == "QLinearAdd")
    assert any("s" in i for i in add.input[:1]), "the scores reach a QLinearAdd with the mask"
    art, got = _compiled(q, cal, held)
    ref_float, ref_file = _ort(src, held), _ort(q, held)
    assert _cos(ref_float, got) >= 0.99, "lasercc keeps the mask a mask: close to the float model"
    assert _cos(ref_float, ref_file) < 0.98, "the file's own arithmetic really erases the scores (choice matters)"
    if kind == "causal":
        assert any(isinstance(n, Mask) for n in art.graph.nodes)
