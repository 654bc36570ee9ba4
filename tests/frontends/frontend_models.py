"""Small ONNX models built with onnx.helper and quantized with onnxruntime, for the frontend tests.

Everything is built in memory / tmp dirs, deterministically (fixed seeds), so the tests need no
committed model files. IR version and opset are pinned to what both environments' onnxruntime load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def make_model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:  # noqa: ANN001
    g = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def vi(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:  # noqa: ANN001
    return helper.make_tensor_value_info(name, dtype, shape)


def linear_model(rows: int = 256, k: int = 64, n1: int = 48, n2: int = 32, seed: int = 0) -> onnx.ModelProto:
    """x -> MatMul(W1) + b1 -> Gemm(W2^T, b2, transB) -> h2 @ h2^T (activation x activation)."""
    rng = np.random.default_rng(seed)
    inits = {
        "W1": (rng.standard_normal((k, n1)) / np.sqrt(k)).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(n1)).astype(np.float32),
        "W2": (rng.standard_normal((n2, n1)) / np.sqrt(n1)).astype(np.float32),
        "b2": (0.1 * rng.standard_normal(n2)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["mm1"], name="mm1"),
        helper.make_node("Add", ["mm1", "b1"], ["h1"], name="add1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["h2"], name="gemm2", transB=1),
        helper.make_node("Transpose", ["h2"], ["h2t"], name="tr", perm=[1, 0]),
        helper.make_node("MatMul", ["h2", "h2t"], ["y"], name="mm3"),
    ]
    return make_model(nodes, [vi("x", [rows, k])], [vi("y", [rows, rows])], inits)


def attention_model(seq: int = 16, d: int = 32, ff: int = 64, seed: int = 1) -> onnx.ModelProto:
    """One pre-LN causal attention block + GELU (erf form) FFN, as torch exports it."""
    rng = np.random.default_rng(seed)

    def w(*s: int) -> np.ndarray:
        return (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32)

    causal = np.triu(np.full((seq, seq), np.finfo(np.float32).min, np.float32), 1)
    inits = {"Wq": w(d, d), "Wk": w(d, d), "Wv": w(d, d), "Wo": w(d, d), "W1": w(d, ff), "W2": w(ff, d),
             "b1": (0.1 * rng.standard_normal(ff)).astype(np.float32),
             "g1": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
             "be1": (0.1 * rng.standard_normal(d)).astype(np.float32),
             "g2": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32), "be2": np.zeros(d, np.float32),
             "mask": causal, "scale": np.array(1 / np.sqrt(d), np.float32), "sqrt2": np.array(np.sqrt(2), np.float32),
             "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g1", "be1"], ["ln1"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["ln1", "Wq"], ["q"]),
        helper.make_node("MatMul", ["ln1", "Wk"], ["k"]),
        helper.make_node("MatMul", ["ln1", "Wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s0"]),
        helper.make_node("Mul", ["s0", "scale"], ["s1"]),
        helper.make_node("Add", ["s1", "mask"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["a"]),
        helper.make_node("MatMul", ["a", "Wo"], ["o"]),
        helper.make_node("Add", ["x", "o"], ["r1"]),
        helper.make_node("LayerNormalization", ["r1", "g2", "be2"], ["ln2"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["ln2", "W1"], ["f0"]),
        helper.make_node("Add", ["f0", "b1"], ["f1"]),
        helper.make_node("Div", ["f1", "sqrt2"], ["g0"]),
        helper.make_node("Erf", ["g0"], ["g1e"]),
        helper.make_node("Add", ["g1e", "one"], ["g2e"]),
        helper.make_node("Mul", ["f1", "g2e"], ["g3"]),
        helper.make_node("Mul", ["g3", "half"], ["g4"]),
        helper.make_node("MatMul", ["g4", "W2"], ["f2"]),
        helper.make_node("Add", ["r1", "f2"], ["y"]),
    ]
    return make_model(nodes, [vi("x", [1, seq, d])], [vi("y", [1, seq, d])], inits)


class Reader:
    """onnxruntime CalibrationDataReader over rows stacked on axis 0."""

    def __init__(self, data: dict[str, np.ndarray], batch: int):
        k0 = next(iter(data))
        n = data[k0].shape[0] // batch
        self.items = [{k: v[i * batch:(i + 1) * batch] for k, v in data.items()} for i in range(n)]
        self.i = 0

    def get_next(self):  # noqa: ANN201
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def quantize(model: onnx.ModelProto, tmp: Path, data: dict[str, np.ndarray], batch: int, fmt: str = "qdq",
             act: str = "uint8", per_channel: bool = False, ops: list[str] | None = None, tag: str = "") -> Path:
    """Static quantization with onnxruntime (QDQ or QOperator); returns the quantized model path.

    uint8 activations use ``reduce_range`` (7-bit weights), as onnxruntime recommends for U8S8 on x86:
    its AVX2 kernel sums u8*s8 pairs in saturating int16 (vpmaddubsw), so full-range weights can make
    onnxruntime's own integer result deviate from the exact one -- a platform artifact, not a model fact.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src = tmp / f"float{tag}.onnx"
    onnx.save(model, src)
    dst = tmp / f"{fmt}_{act}_{'pc' if per_channel else 'pt'}{tag}.onnx"
    quantize_static(str(src), str(dst), Reader(data, batch),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8 if act == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel, op_types_to_quantize=ops,
                    reduce_range=act == "uint8",
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return dst


def boundary_model(width: int = 4) -> onnx.ModelProto:
    """y = DQ(Q(x * 1)) * DQ(Q(2)), scale 1, int8: one run-time quantizer (Q of ``x * 1``) and one of a constant.
    An input k + 0.5 sits on a rounding boundary (round half to even), so any upward nudge flips its code: the
    smallest file whose output float32 rounding decides."""
    nodes = [helper.make_node("Mul", ["x", "one"], ["h"]),
             helper.make_node("QuantizeLinear", ["h", "scale", "zp"], ["q"]),
             helper.make_node("QuantizeLinear", ["w", "scale", "zp"], ["wq"]),
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"]),
             helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["wdq"]),
             helper.make_node("Mul", ["dq", "wdq"], ["y"])]
    inits = {"one": np.array(1.0, np.float32), "scale": np.array(1.0, np.float32), "zp": np.array(0, np.int8),
             "w": np.array([2.0], np.float32)}
    return make_model(nodes, [vi("x", [1, width])], [vi("y", [1, width])], inits)
