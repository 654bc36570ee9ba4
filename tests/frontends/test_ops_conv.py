"""Convolution, pooling and Pad (ops_conv.py, ops_move.py) against onnxruntime.

* QOperator (``QLinearConv``) and ``ConvInteger``: identical integers to onnxruntime's integer kernels;
* a static-QDQ Conv (onnxruntime fuses DQ -> Conv -> Q into QLinearConv under its default optimizations): the
  same codes as onnxruntime running that QDQ model -- the Soma's ``ort`` requantization is QLinearConv's;
* float Conv1d/Conv2d, AveragePool, MaxPool, GlobalAveragePool, Pad: within the node-test harness's code-step
  tolerance at 16 bits (an independent reference: onnxruntime's float kernels).

Every attribute family is exercised: strides, dilations, explicit and SAME/VALID pads, groups (depthwise
included), ceil_mode, count_include_pad, Pad's four modes and negative pads.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import lasercc
from lasercc.onnx_conformance import tolerance


def _model(nodes, inputs, outputs, inits=(), opset=17):  # noqa: ANN001
    g = h.make_graph(nodes, "m", inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def _ort(m: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def _run(m: onnx.ModelProto, calib: dict, feeds: dict, bits: int = 16) -> dict[str, np.ndarray]:
    """Compile calibrated on ``calib`` plus the evaluated rows (a held-out row beyond the calibrated range would
    saturate: that is calibration, not the op under test), run on ``feeds``."""
    calib = {k: np.concatenate([v, feeds[k]]) for k, v in calib.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=bits, calibration=calib, passes="", progress=False)
    got = art.run(dict(feeds))
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    return {onnx_of.get(k, k): v for k, v in got.items()}


def _c(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def _vi(name: str, dt: int, shape) -> onnx.ValueInfoProto:  # noqa: ANN001
    return h.make_tensor_value_info(name, dt, shape)


def _close(got: np.ndarray, ref: np.ndarray, bits: int = 16) -> None:
    assert got.shape == ref.shape
    tol, step = tolerance(ref, bits)
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    assert err <= tol, f"max error {err:.3g} = {err / step:.1f} steps"


CONV_CASES = [  # (input shape, weight shape, attributes)
    ((1, 3, 9, 9), (4, 3, 3, 3), {}),
    ((1, 3, 9, 9), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 9), (4, 3, 3, 2), {"dilations": [2, 1], "pads": [0, 1, 2, 0]}),
    ((1, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "auto_pad": "SAME_UPPER"}),          # depthwise
    ((1, 4, 8, 8), (6, 2, 2, 2), {"group": 2, "auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ((1, 3, 16, 16), (8, 3, 4, 4), {"strides": [4, 4]}),                              # ViT patch embedding
    ((1, 5, 20), (6, 5, 3), {"strides": [2], "pads": [1, 1]}),                        # Whisper conv1d stem
    ((1, 1, 40), (4, 1, 10), {"strides": [5]}),                                       # wav2vec2 feature stem
    ((1, 8, 12), (8, 2, 4), {"group": 4, "pads": [2, 2]}),                            # wav2vec2 pos conv
    ((1, 2, 5, 5), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
]


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_float_conv_tracks_onnxruntime(xs, ws, attrs):  # noqa: ANN001
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, ws).astype(np.float32)
    b = rng.normal(0, 0.3, ws[0]).astype(np.float32)
    m = _model([h.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], [_vi("x", T.FLOAT, xs)],
               [_vi("y", T.FLOAT, None)], [_c("w", w), _c("b", b)])
    calib = {"x": rng.normal(0, 1, (8, *xs[1:])).astype(np.float32)}
    x = {"x": rng.normal(0, 1, xs).astype(np.float32)}
    _close(_run(m, calib, x)["y"], _ort(m, x)["y"])


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_convinteger_is_exact(xs, ws, attrs):  # noqa: ANN001
    rng = np.random.default_rng(1)
    w = rng.integers(-64, 64, ws).astype(np.int8)
    m = _model([h.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], **attrs)], [_vi("x", T.UINT8, xs)],
               [_vi("y", T.INT32, None)], [_c("w", w), _c("xz", np.uint8(117)), _c("wz", np.int8(3))], opset=13)
    x = {"x": rng.integers(0, 256, xs).astype(np.uint8)}
    got, ref = _run(m, x, x)["y"], _ort(m, x)["y"]
    np.testing.assert_array_equal(got.astype(np.int64), ref.astype(np.int64))


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_qlinearconv_is_bit_exact(xs, ws, attrs):  # noqa: ANN001
    rng = np.random.default_rng(2)
    # 7-bit weights (the quantizer's reduce_range): without VNNI onnxruntime's u8s8 kernels saturate pairs of
    # full-range int8 products in int16, so full-range weights make onnxruntime itself inexact
    w = rng.integers(-64, 64, ws).astype(np.int8)
    inits = [_c("sx", np.float32(0.05)), _c("zx", np.uint8(120)), _c("w", w),
             _c("sw", rng.uniform(0.005, 0.02, ws[0]).astype(np.float32)), _c("zw", np.zeros(ws[0], np.int8)),
             _c("sy", np.float32(0.4)), _c("zy", np.uint8(128)),
             _c("bias", rng.integers(-500, 500, ws[0]).astype(np.int32))]
    node = h.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "bias"], ["y"], **attrs)
    m = _model([node], [_vi("x", T.UINT8, xs)], [_vi("y", T.UINT8, None)], inits, opset=13)
    x = {"x": rng.integers(0, 256, xs).astype(np.uint8)}
    np.testing.assert_array_equal(_run(m, x, x)["y"].astype(np.int64), _ort(m, x)["y"].astype(np.int64))


def test_qdq_conv_equals_onnxruntimes_fused_qlinearconv(tmp_path):  # noqa: ANN001
    """onnxruntime's static QDQ quantizer on a Conv model (per-channel s8 weights, int32 bias), run by
    onnxruntime as it fuses it (QLinearConv): lasercc gives the same codes."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(3)
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2", "b2"], ["y"], group=2, pads=[1, 1, 1, 1])]
    inits = [_c("w1", rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)),
             _c("b1", rng.normal(0, 0.1, 4).astype(np.float32)),
             _c("w2", rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32)),
             _c("b2", rng.normal(0, 0.1, 4).astype(np.float32))]
    m = _model(nodes, [_vi("x", T.FLOAT, (1, 3, 10, 10))], [_vi("y", T.FLOAT, None)], inits, opset=17)
    src, dst = tmp_path / "conv.onnx", tmp_path / "conv.qdq.onnx"
    onnx.save(m, str(src))
    calib = rng.normal(0, 1, (8, 3, 10, 10)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter({"x": calib[i:i + 1]} for i in range(len(calib)))

        def get_next(self):  # noqa: ANN202
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    q = onnx.load(str(dst))
    assert {n.op_type for n in q.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    x = {"x": rng.normal(0, 1, (1, 3, 10, 10)).astype(np.float32)}
    got, ref = _run(q, {"x": calib}, x)["y"], _ort(q, x)["y"]
    sy = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name.startswith("y_scale"))
    assert np.max(np.abs(got - ref)) <= 1e-6 * float(sy) + 1e-12, np.max(np.abs(got - ref)) / float(sy)


POOL_CASES = [
    ("AveragePool", {"kernel_shape": [3, 3]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "dilations": [1, 2]}),
    ("GlobalAveragePool", {}),
    ("GlobalMaxPool", {}),
]


@pytest.mark.parametrize(("op", "attrs"), POOL_CASES)
def test_pooling_tracks_onnxruntime(op, attrs):  # noqa: ANN001
    rng = np.random.default_rng(4)
    xs = (1, 3, 7, 8)
    m = _model([h.make_node(op, ["x"], ["y"], **attrs)], [_vi("x", T.FLOAT, xs)], [_vi("y", T.FLOAT, None)])
    calib = {"x": rng.normal(0, 1, (8, *xs[1:])).astype(np.float32)}
    x = {"x": rng.normal(0, 1, xs).astype(np.float32)}
    _close(_run(m, calib, x)["y"], _ort(m, x)["y"])


@pytest.mark.parametrize(("mode", "pads", "value"), [
    ("constant", [0, 0, 1, 2, 0, 0, 2, 1], 0.0), ("constant", [0, 1, 1, 0, 0, 0, 0, 3], 5.0),
    ("reflect", [0, 0, 2, 1, 0, 0, 1, 3], None), ("edge", [0, 0, 3, 0, 0, 0, 0, 2], None),
    ("wrap", [0, 0, 1, 2, 0, 0, 2, 1], None), ("constant", [0, 0, -1, 2, 0, 0, 1, -2], -1.5),
    ("reflect", [0, 0, -1, 1, 0, 0, 2, -1], None)])
def test_pad_tracks_onnxruntime(mode, pads, value):  # noqa: ANN001
    rng = np.random.default_rng(5)
    xs = (1, 2, 5, 6)
    ins = ["x", "pads"] + (["value"] if value is not None else [])
    inits = [_c("pads", np.array(pads, np.int64))] + ([_c("value", np.float32(value))] if value is not None else [])
    m = _model([h.make_node("Pad", ins, ["y"], mode=mode)], [_vi("x", T.FLOAT, xs)], [_vi("y", T.FLOAT, None)],
               inits, opset=19)
    calib = {"x": rng.normal(0, 1, (8, *xs[1:])).astype(np.float32)}
    x = {"x": rng.normal(0, 1, xs).astype(np.float32)}
    _close(_run(m, calib, x)["y"], _ort(m, x)["y"])


def test_pad_reflect_moves_codes_only():
    """reflect/edge/wrap Pad is data movement: the output codes are the input's codes (no Soma at all)."""
    from lasercc.ir.nodes import Soma

    xs = (1, 2, 4, 4)
    m = _model([h.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], [_vi("x", T.FLOAT, xs)],
               [_vi("y", T.FLOAT, None)], [_c("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], opset=19)
    x = {"x": np.random.default_rng(6).normal(0, 1, (4, *xs[1:])).astype(np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=8, calibration=x, passes="", progress=False)
    assert not any(isinstance(n, Soma) for n in art.graph.nodes)


@pytest.mark.parametrize(("xs", "ws", "attrs"), [CONV_CASES[1], CONV_CASES[4], CONV_CASES[6]])
def test_conv_with_run_time_weights_tracks_onnxruntime(xs, ws, attrs):  # noqa: ANN001
    """Weights fed as a graph input (an activation): im2col of x, the weights moved to the matmul layout,
    a DecodeMAC per group; a constant bias added after."""
    rng = np.random.default_rng(7)
    b = rng.normal(0, 0.3, ws[0]).astype(np.float32)
    m = _model([h.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], [_vi("x", T.FLOAT, xs), _vi("w", T.FLOAT, ws)],
               [_vi("y", T.FLOAT, None)], [_c("b", b)])
    calib = {"x": rng.normal(0, 1, (8, *xs[1:])).astype(np.float32),
             "w": rng.normal(0, 0.3, (8 * ws[0], *ws[1:])).astype(np.float32)}  # rows: multiples of C_out
    x = {"x": rng.normal(0, 1, xs).astype(np.float32), "w": rng.normal(0, 0.3, ws).astype(np.float32)}
    _close(_run(m, calib, x)["y"], _ort(m, x)["y"])


@pytest.mark.parametrize("group", [1, 3])
def test_dynamic_quantized_conv_tracks_onnxruntime(tmp_path, group):  # noqa: ANN001
    """quantize_dynamic's Conv (DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul by x_scale * w_scale -> Add
    bias): one Soma with the model's integer weights, its scale fixed from calibration."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(8)
    inits = [_c("w", rng.normal(0, 0.3, (6, 3 // group, 3, 3)).astype(np.float32)),
             _c("b", rng.normal(0, 0.3, 6).astype(np.float32))]
    m = _model([h.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 1], group=group)],
               [_vi("x", T.FLOAT, (1, 3, 8, 8))], [_vi("y", T.FLOAT, None)], inits)
    src, dst = tmp_path / "c.onnx", tmp_path / "c.dyn.onnx"
    onnx.save(m, str(src))
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
    q = onnx.load(str(dst))
    assert "ConvInteger" in {n.op_type for n in q.graph.node}
    calib = {"x": rng.normal(0, 1, (8, 3, 8, 8)).astype(np.float32)}
    x = {"x": calib["x"][:1]}
    _close(_run(q, calib, x, bits=8)["y"], _ort(q, x)["y"], bits=8)


@pytest.mark.parametrize(("op", "attrs"), [
    ("QLinearGlobalAveragePool", {}), ("QLinearGlobalAveragePool", {"channels_last": 1}),
    ("QLinearAveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("QLinearAveragePool", {"kernel_shape": [2, 2], "count_include_pad": 1, "pads": [1, 0, 1, 0]}),
    ("QLinearAveragePool", {"kernel_shape": [3, 3], "channels_last": 1})])
def test_qlinear_pooling_within_one_code_of_onnxruntime(op, attrs):  # noqa: ANN001
    """onnxruntime's QOperator pooling (com.microsoft): codes equal to onnxruntime's up to 1 (its requantization
    scale is s_x / (s_y * S), the Soma's s_x * (1/S) / s_y: float32 rounding may differ in the last bit)."""
    rng = np.random.default_rng(9)
    xs = (1, 4, 7, 6)
    inits = [_c("sx", np.float32(0.05)), _c("zx", np.uint8(120)), _c("sy", np.float32(0.03)), _c("zy", np.uint8(110))]
    node = h.make_node(op, ["x", "sx", "zx", "sy", "zy"], ["y"], domain="com.microsoft", **attrs)
    g = h.make_graph([node], "m", [_vi("x", T.UINT8, xs)], [_vi("y", T.UINT8, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    x = {"x": rng.integers(0, 256, xs).astype(np.uint8)}
    got, ref = _run(m, x, x)["y"].astype(np.int64), _ort(m, x)["y"].astype(np.int64)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 1 and np.mean(got == ref) > 0.9, (np.max(np.abs(got - ref)),
                                                                          np.mean(got == ref))


@pytest.mark.parametrize("live_affine", [False, True])
def test_instance_normalization_tracks_onnxruntime(live_affine):  # noqa: ANN001
    """GroupNorm's export (per-channel normalisation over the spatial axes); scale and B as constants or fed at
    run time."""
    rng = np.random.default_rng(10)
    xs = (1, 4, 5, 6)
    sv, bv = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(0, 1, 4).astype(np.float32)
    node = h.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)
    if live_affine:
        m = _model([node], [_vi("x", T.FLOAT, xs), _vi("s", T.FLOAT, [4]), _vi("b", T.FLOAT, [4])],
                   [_vi("y", T.FLOAT, None)])
        calib = {"x": rng.normal(1, 2, (8, *xs[1:])).astype(np.float32), "s": np.tile(sv, 8), "b": np.tile(bv, 8)}
        x = {"x": rng.normal(1, 2, xs).astype(np.float32), "s": sv, "b": bv}
    else:
        m = _model([node], [_vi("x", T.FLOAT, xs)], [_vi("y", T.FLOAT, None)], [_c("s", sv), _c("b", bv)])
        calib = {"x": rng.normal(1, 2, (8, *xs[1:])).astype(np.float32)}
        x = {"x": rng.normal(1, 2, xs).astype(np.float32)}
    _close(_run(m, calib, x)["y"], _ort(m, x)["y"])
