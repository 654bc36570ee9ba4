"""Models quantized by other tools than quantize_static's defaults, compiled and compared with onnxruntime.

One test per tool path (see bench/quant_tools.py for the full table on tiny_gpt / tiny_llama):

* onnxruntime ``MatMulNBitsQuantizer`` 4-bit: com.microsoft.MatMulNBits (QOperator) and int4
  ``DequantizeLinear(block_size)`` (QDQ, opset 21); quantize_static with int4 per-channel weights.
* torch: eager QAT (``FakeQuantize`` modules) and fake-quantized Linear inputs/weights, exported with the
  TorchScript exporter.
* onnxruntime QDQ with int8 symmetric activations after ``quant_pre_process``; Entropy / Percentile
  calibration.

Reference: onnxruntime running the same file with graph optimisations OFF -- the model's own QDQ
arithmetic. (With them on, onnxruntime's fused u8s8/s8s8 MatMul saturates on CPUs without VNNI when
weights use the full int8 range, which torch and ``reduce_range=False`` do: measured cosine 0.990-0.997
against its own unoptimised run, bench/results/quant_tools.md.) Thresholds: cosine > 0.999 on the
logits and top-1 >= 0.95 (measured 0.9994-0.99997 and 0.98-1.0); the MatMulNBits dequantization must
equal onnxruntime's bit for bit.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper, version_converter

import lasercc
from lasercc.frontends.onnx import nbits
from lasercc.frontends.onnx.load import FrontendError
from lasercc.ir.nodes import Soma
from lasercc.runtime import run_graph

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"
GPT = MODELS / "tiny_gpt.onnx"
COS, TOP1 = 0.999, 0.95


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.disable(logging.WARNING)  # matmul_nbits_quantizer sets the root logger to INFO on import
    yield
    logging.disable(logging.NOTSET)


def _data() -> tuple[dict, dict]:
    calib = {k: v[:16] for k, v in np.load(MODELS / "tiny_gpt.calib.npz").items()}
    held = {k: v[:6] for k, v in np.load(MODELS / "tiny_gpt.heldout.npz").items()}
    return calib, held


def _ort(path: Path, feeds: dict, optimize: bool = False) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    return np.concatenate([s.run(None, {k: v[i:i + 1] for k, v in feeds.items()})[0] for i in range(n)])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(path: Path, fmt: str) -> lasercc.Artifact:
    calib, held = _data()
    art = lasercc.compile(path, calibration=calib, progress=False)
    assert art.manifest["frontend"]["format"] == fmt
    got = run_graph(art.graph, held).values[art.graph.outputs[0]]
    ref = _ort(path, held)
    cos, top1 = _cos(ref, got), float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    assert cos > COS and top1 >= TOP1, (cos, top1, float(np.abs(ref - got).max()))
    return art


# ---- MatMulNBits ------------------------------------------------------------------------------


def _nbits_node_model(k: int, n: int, bits: int, block: int, zp: str, seed: int) -> tuple[onnx.ModelProto, dict]:
    rng = np.random.default_rng(seed)
    nb = -(-k // block)
    inits: dict[str, np.ndarray] = {"B": rng.integers(0, 256, size=(n, nb, block * bits // 8)).astype(np.uint8),
                                    "S": rng.uniform(-0.1, 0.1, size=(n, nb)).astype(np.float32)}
    if zp == "packed":
        inits["Z"] = rng.integers(0, 256, size=(n, -(-nb * bits // 8))).astype(np.uint8)
    elif zp == "float":
        inits["Z"] = rng.uniform(0, 2**bits - 1, size=(n, nb)).astype(np.float32)
    node = helper.make_node("MatMulNBits", ["A", "B", "S"] + (["Z"] if "Z" in inits else []), ["Y"],
                            domain="com.microsoft", K=k, N=n, bits=bits, block_size=block)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [k, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [k, n])],
                          [numpy_helper.from_array(v, name) for name, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m, inits


@pytest.mark.parametrize(("k", "bits", "block", "zp"), [
    (64, 4, 32, "none"), (64, 4, 16, "packed"), (50, 4, 16, "packed"), (64, 4, 32, "float"),
    (64, 2, 32, "packed"), (64, 8, 16, "packed"), (96, 4, 128, "packed")])
def test_nbits_dequantization_is_onnxruntimes(k: int, bits: int, block: int, zp: str) -> None:
    """A = identity: onnxruntime's output is its dequantized B, which ours must equal exactly."""
    m, inits = _nbits_node_model(k, 24, bits, block, zp, seed=k + bits + block)
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"A": np.eye(k, dtype=np.float32)})[0]
    w = nbits.dequantize_nbits(inits["B"], inits["S"], inits.get("Z"), k, 24, bits, block)
    np.testing.assert_array_equal(w, y)


def _nbits(tmp_path: Path, block: int, sym: bool, qdq: bool) -> Path:
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    m = onnx.load(str(GPT))
    if qdq:
        m = version_converter.convert_version(m, 21)
    q = MatMulNBitsQuantizer(m, bits=4, block_size=block, is_symmetric=sym,
                             quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator)
    q.process()
    path = tmp_path / f"nb{block}{'s' if sym else 'a'}{'q' if qdq else ''}.onnx"
    q.model.save_model_to_file(str(path), False)
    return path


def test_matmul_nbits_blockwise_tracks_onnxruntime(tmp_path: Path) -> None:
    """Symmetric (negative scales), block 16 < K: weights dequantized and re-quantized per channel."""
    path = _nbits(tmp_path, 16, True, False)
    art = _check(path, "weight-only")
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    node = next(n for n in m.graph.node if n.op_type == "MatMulNBits" and "blocks.1/out" in n.name)  # K = 128
    w4 = nbits.dequantize_nbits(inits[node.input[1]], inits[node.input[2]], None, 128, 32, 4, 16)
    soma = next(n for n in art.graph.nodes if isinstance(n, Soma) and "blocks.1/out" in n.name)
    s = np.asarray(soma.scale_w)
    w8 = np.asarray(art.graph.constants[soma.weights[0]]) * s
    assert np.all(np.abs(w8 - w4) <= s / 2 * (1 + 1e-6))  # nearest point of the 8-bit per-channel grid
    np.testing.assert_allclose(s, np.abs(w4).max(axis=0) / 127, rtol=1e-6)


def test_matmul_nbits_single_block_keeps_the_integers(tmp_path: Path) -> None:
    """block 32 = K: each column is one block, so the Soma weights are exactly q - zp with the model's scales."""
    path = _nbits(tmp_path, 32, False, False)
    art = _check(path, "weight-only")
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    node = next(n for n in m.graph.node if n.op_type == "MatMulNBits" and "qkv" in n.name)
    q = nbits.unpack_bits(inits[node.input[1]].reshape(96, -1), 4, 32).T.astype(np.int64)
    z = nbits.unpack_bits(inits[node.input[3]].reshape(96, -1), 4, 1).reshape(-1)
    soma = next(n for n in art.graph.nodes if isinstance(n, Soma) and "qkv" in n.name)
    np.testing.assert_array_equal(np.asarray(art.graph.constants[soma.weights[0]]), q - z)
    np.testing.assert_allclose(soma.scale_w, inits[node.input[2]].reshape(-1), rtol=0)


def test_matmul_nbits_rejects_g_idx() -> None:
    m, _ = _nbits_node_model(64, 24, 4, 32, "packed", seed=0)
    node = m.graph.node[0]
    node.input.extend(["G"])
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(64, np.int32), "G"))
    with pytest.raises(FrontendError, match="g_idx"):
        lasercc.compile(m, calibration={"A": np.random.default_rng(0).standard_normal((128, 64))}, progress=False)


@pytest.mark.parametrize(("block", "sym"), [(16, False), (32, True)])
def test_matmul_nbits_qdq_blocked_dequantize(tmp_path: Path, block: int, sym: bool) -> None:
    """int4/uint4 DequantizeLinear(block_size) -> MatMul; block 32 = K for most layers: exact integers, with
    the symmetric quantizer's negative scales folded into the integers' signs."""
    art = _check(_nbits(tmp_path, block, sym, True), "weight-only")
    if block == 32:
        soma = next(n for n in art.graph.nodes if isinstance(n, Soma) and "qkv" in n.name)
        assert min(soma.scale_w) > 0 and int(np.abs(np.asarray(art.graph.constants[soma.weights[0]])).max()) <= 8


def test_quantize_static_int4_weights(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    sys.path.insert(0, str(ROOT / "examples"))
    import build_models as bm

    src = tmp_path / "o21.onnx"
    onnx.save(version_converter.convert_version(onnx.load(str(GPT)), 21), str(src))
    calib, _ = _data()
    quantize_static(str(src), str(tmp_path / "w4.onnx"), bm.RowReader(calib), quant_format=QuantFormat.QDQ,
                    weight_type=QuantType.QInt4, per_channel=True, op_types_to_quantize=bm.QUANT_OPS)
    art = _check(tmp_path / "w4.onnx", "qdq")
    w = [np.asarray(art.graph.constants[n.weights[0]]) for n in art.graph.nodes if isinstance(n, Soma)
         and n.forms == ("matmul",)]
    assert max(int(np.abs(x).max()) for x in w) <= 8  # the int4 integers themselves, not re-quantized


# ---- onnxruntime static QDQ variants ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["s8sym_preprocess", "entropy", "percentile"])
def test_ort_static_variants(tmp_path: Path, variant: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sys.path.insert(0, str(ROOT / "examples"))
    import build_models as bm

    calib, _ = _data()
    src = GPT
    if variant == "s8sym_preprocess":
        src = tmp_path / "pre.onnx"
        quant_pre_process(str(GPT), str(src))
    sym = variant == "s8sym_preprocess"
    method = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}.get(
        variant, CalibrationMethod.MinMax)
    quantize_static(str(src), str(tmp_path / "q.onnx"), bm.RowReader(calib), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8 if sym else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=bm.QUANT_OPS, calibrate_method=method,
                    extra_options={"ActivationSymmetric": sym})
    _check(tmp_path / "q.onnx", "qdq")


# ---- torch ------------------------------------------------------------------------------------


def _torch_gpt() -> torch.nn.Module:
    sys.path.insert(0, str(ROOT / "examples"))
    import build_models as bm

    torch.manual_seed(0)
    return bm.CausalLM(bm.tiny_gpt_config()).eval()


def _export(model: torch.nn.Module, path: Path) -> None:
    ids = torch.from_numpy(_data()[0]["input_ids"][:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids,), str(path), dynamo=False, opset_version=17, input_names=["input_ids"],
                          output_names=["logits"])


def test_torch_eager_qat_export(tmp_path: Path) -> None:
    import torch.ao.quantization as tq

    model = _torch_gpt().train()
    qc = tq.QConfig(
        activation=tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                             dtype=torch.quint8),
        weight=tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                         quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.qconfig = qc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq.prepare_qat(model, inplace=True)
        with torch.no_grad():
            model(torch.from_numpy(_data()[0]["input_ids"]))
    model.apply(tq.disable_observer).eval()
    _export(model, tmp_path / "qat.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "qat.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    _check(tmp_path / "qat.onnx", "qdq")


def _fake_quant_linear(lin: torch.nn.Linear, lo: float, hi: float) -> Callable:
    ws = (lin.weight.detach().abs().amax(1) / 127.5).clamp_min(1e-8)
    wz = torch.zeros(ws.shape, dtype=torch.int32)
    xs = (max(hi, 0.0) - min(lo, 0.0)) / 255
    xz = int(round(-min(lo, 0.0) / xs))

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, xs, xz, 0, 255)
        w = torch.fake_quantize_per_channel_affine(lin.weight, ws, wz, 0, -128, 127)
        return torch.nn.functional.linear(x, w, lin.bias)

    return forward


def test_torch_fake_quant_linear_export(tmp_path: Path) -> None:
    """Q/DQ on each Linear's input and on its float weight initializer (per-channel, full int8 range)."""
    model = _torch_gpt()
    ids = torch.from_numpy(_data()[0]["input_ids"])
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    seen: dict[int, tuple[float, float]] = {}
    hooks = [m.register_forward_hook(lambda mod, a, o: seen.__setitem__(id(mod), (float(a[0].min()),
                                                                                  float(a[0].max()))))
             for m in lins]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    for m in lins:
        m.forward = _fake_quant_linear(m, *seen[id(m)])
    _export(model, tmp_path / "fq.onnx")
    m = onnx.load(str(tmp_path / "fq.onnx"))
    inits = {i.name for i in m.graph.initializer}
    assert any(n.op_type == "QuantizeLinear" and n.input[0] in inits for n in m.graph.node)  # float weight -> Q
    _check(tmp_path / "fq.onnx", "qdq")
