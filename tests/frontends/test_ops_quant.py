"""Quantization ops (ops_quant.py), calibration robustness (calibrate.py) and float16 widening (widen.py).

Tiny models built with onnx.helper, compiled for the numpy target at 16 bits and compared with onnxruntime:
integer outputs exactly, float outputs within the node-test harness's code-step tolerance.
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
from lasercc.frontends.onnx.calibrate import NodeRunner
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.widen import widen_half
from lasercc.onnx_conformance import tolerance


def _model(nodes, inputs, outputs, inits=(), opset=21):  # noqa: ANN001
    g = h.make_graph(nodes, "m", inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _compile(m, feeds, bits=16):  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(m, target="numpy", bits=bits, calibration=feeds, passes="", progress=False)


def _check(m, feeds, bits=16, ref=None):  # noqa: ANN001
    art = _compile(m, feeds, bits)
    got = art.run(dict(feeds))
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    got = {onnx_of.get(k, k): v for k, v in got.items()}
    if ref is None:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    for k, exp in ref.items():
        g = np.asarray(got[k])
        assert g.shape == exp.shape, k
        if exp.dtype.kind in "iu":
            np.testing.assert_array_equal(g.astype(np.int64), exp.astype(np.int64), err_msg=k)
        else:
            tol, _ = tolerance(exp.astype(np.float32), bits)
            assert np.max(np.abs(g - exp.astype(np.float64))) <= tol, k
    return art


def _c(name, arr):  # noqa: ANN001
    return numpy_helper.from_array(np.asarray(arr), name)


# ---- calibration -----------------------------------------------------------------------------------------


def test_scalar_input_calibrates():
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, [])],
               [h.make_tensor_value_info("y", T.UINT8, [])], [_c("s", np.float32(0.5)), _c("z", np.uint8(10))],
               opset=13)
    _check(m, {"x": np.array(1.5, np.float32)})


def test_zero_size_input():
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [2, 0])], [h.make_tensor_value_info("y", T.UINT8, [2, 0])],
               [_c("s", np.float32(0.5)), _c("z", np.uint8(10))],
               opset=13)
    _check(m, {"x": np.zeros((2, 0), np.float32)})


def test_ort_gap_falls_back_to_reference_with_a_note():
    """QuantizeLinear at opset 28 (no onnxruntime 1.32 kernel): node by node, onnx.reference."""
    x = np.array([[-3.0, -1.0, 0.0, 0.5, 2.25, 4.0]], np.float32)
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [1, 6])], [h.make_tensor_value_info("y", T.INT16, [1, 6])],
               [_c("s", np.float32(0.01)), _c("z", np.int16(-7))], opset=28)
    exp = np.clip(np.rint(x / np.float32(0.01)) - 7, -32768, 32767).astype(np.int16)
    art = _check(m, {"x": x}, ref={"y": exp})
    notes = " ".join(art.manifest["frontend"].get("notes", []))
    assert "onnx.reference" in notes


def test_unevaluable_node_names_model_and_node():
    m = _model([h.make_node("Nope", ["x"], ["y"], name="bad", domain="no.such")],
               [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    m.opset_import.append(h.make_opsetid("no.such", 1))
    with pytest.raises(FrontendError, match=r"'m'.*'bad' \(no\.such\.Nope\)"):
        NodeRunner(m, {"y"}, {}, None).run({"x": np.ones(2, np.float32)})


# ---- Q / DQ -----------------------------------------------------------------------------------------------


def test_quantize_per_axis_activation_and_dequantize_codes_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    q = rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8)
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1),
                h.make_node("DequantizeLinear", ["q", "s2", "z2"], ["d"], axis=-1)],
               [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4]), h.make_tensor_value_info("q", T.INT8, [2, 3, 4])],
               [h.make_tensor_value_info("y", T.UINT8, [2, 3, 4]), h.make_tensor_value_info("d", T.FLOAT, [2, 3, 4])],
               [_c("s", np.array([0.01, 0.02, 0.05], np.float32)), _c("z", np.array([128, 100, 3], np.uint8)),
                _c("s2", np.array([0.1, 0.2, 0.3, 0.4], np.float32)), _c("z2", np.array([0, 1, -2, 3], np.int8))])
    art = _compile(m, {"x": x, "q": q})
    got = art.run({"x": x, "q": q})
    names = {v["onnx"]: k for k, v in art.manifest["onnx_outputs"].items()}
    s = np.array([0.01, 0.02, 0.05], np.float32).reshape(1, 3, 1)
    z = np.array([128, 100, 3]).reshape(1, 3, 1)
    ref_y = np.clip(np.rint(x / s) + z, 0, 255)
    # x is a graph input: each channel is encoded straight into its own Q type (QuantizeLinear's rule): exact
    np.testing.assert_array_equal(got[names["y"]], ref_y)
    ref_d = (q.astype(np.float32) - np.array([0, 1, -2, 3], np.float32)) * np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    tol, _ = tolerance(ref_d, 16)
    assert np.max(np.abs(got[names["d"]] - ref_d)) <= tol


def test_blocked_quantize_dequantize_activation():
    """opset-21 block_size on activations: one region per block (Take), its own type, concatenated back."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    s = np.array([[0.01, 0.02], [0.03, 0.04], [0.05, 0.06]], np.float32)
    z = np.array([[1, 2], [3, 4], [5, 6]], np.int16)
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=2),
                h.make_node("DequantizeLinear", ["y", "s", "z"], ["d"], axis=1, block_size=2)],
               [h.make_tensor_value_info("x", T.FLOAT, [3, 4])],
               [h.make_tensor_value_info("y", T.INT16, [3, 4]), h.make_tensor_value_info("d", T.FLOAT, [3, 4])],
               [_c("s", s), _c("z", z)])
    se, ze = np.repeat(s, 2, axis=1), np.repeat(z, 2, axis=1).astype(np.float32)
    y = np.clip(np.rint(x / se) + ze, -32768, 32767)
    _check(m, {"x": x}, ref={"y": y.astype(np.int16), "d": ((y - ze) * se).astype(np.float32)})


def test_dequantize_with_scale_and_zero_point_given_at_run_time():
    """Everything a graph input (ONNX's own node tests do this): (q - z) exactly, then a DecodeMAC by the scale."""
    rng = np.random.default_rng(9)
    q = rng.integers(-32768, 32768, size=(2, 3, 4)).astype(np.int16)
    s = np.array([0.01, 0.5, 2.0], np.float32)
    z = np.array([-5, 0, 300], np.int16)
    m = _model([h.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], axis=1)],
               [h.make_tensor_value_info("q", T.INT16, [2, 3, 4]), h.make_tensor_value_info("s", T.FLOAT, [3]),
                h.make_tensor_value_info("z", T.INT16, [3])], [h.make_tensor_value_info("d", T.FLOAT, [2, 3, 4])])
    ref = ((q.astype(np.float32) - z.reshape(1, 3, 1)) * s.reshape(1, 3, 1)).astype(np.float32)
    _check(m, {"q": q, "s": s, "z": z}, ref={"d": ref})


def test_quantize_with_scale_given_at_run_time_is_refused():
    m = _model([h.make_node("QuantizeLinear", ["x", "s"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [4]), h.make_tensor_value_info("s", T.FLOAT, [])],
               [h.make_tensor_value_info("y", T.UINT8, [4])], opset=13)
    with pytest.raises(FrontendError, match="scale 's' is computed at run time"):
        _compile(m, {"x": np.ones(4, np.float32), "s": np.array(0.5, np.float32)})


def test_qdq_graph_input_quantized_exactly():
    """A float input read only by QuantizeLinear is encoded straight into the Q type: exact integers."""
    x = np.array([[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0, 1.0, 5.0]], np.float32)
    m = _model([h.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [1, 8])], [h.make_tensor_value_info("y", T.UINT8, [1, 8])],
               [_c("s", np.float32(2.0)), _c("z", np.uint8(128))], opset=13)
    _check(m, {"x": x})


# ---- QLinearMatMul / MatMulInteger / DynamicQuantizeLinear / QLinearConv ----------------------------------------


@pytest.mark.parametrize("dt", [T.UINT8, T.INT8])
def test_qlinearmatmul_activation_x_activation(dt):
    rng = np.random.default_rng(1)
    npdt = np.uint8 if dt == T.UINT8 else np.int8
    lo, hi = (0, 256) if dt == T.UINT8 else (-128, 128)
    a = rng.integers(lo, hi, size=(2, 3, 4)).astype(npdt)
    b = rng.integers(lo, hi, size=(2, 4, 5)).astype(npdt)

    def z(v: int) -> np.ndarray:
        return np.array(v, npdt)

    m = _model([h.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])],
               [h.make_tensor_value_info("a", dt, [2, 3, 4]), h.make_tensor_value_info("b", dt, [2, 4, 5])],
               [h.make_tensor_value_info("y", dt, [2, 3, 5])],
               [_c("sa", np.float32(0.02)), _c("za", z(3)), _c("sb", np.float32(0.03)), _c("zb", z(5)),
                _c("sy", np.float32(0.4)), _c("zy", z(10))], opset=13)
    _check(m, {"a": a, "b": b})


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (2, 4, 5)),
                                             ((1, 3, 4), (1, 4, 5))])
def test_qlinearmatmul_constant_b_with_batch_axes(a_shape, b_shape):
    """A constant B [batch, K, N] (what onnxruntime's QOperator quantizer writes for DeBERTa's folded
    relative-position projections): one exact integer product per batch entry, equal to onnxruntime's.
    Weights in [-64, 63] (reduce_range, as the quantizer writes them: onnxruntime's u8 x s8 kernels
    saturate pairwise int16 sums of full-range weights)."""
    rng = np.random.default_rng(11)
    a = rng.integers(0, 256, size=a_shape).astype(np.uint8)
    w = rng.integers(-64, 64, size=b_shape).astype(np.int8)
    out_shape = list(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + [a_shape[-2], b_shape[-1]]
    m = _model([h.make_node("QLinearMatMul", ["a", "sa", "za", "w", "sb", "zb", "sy", "zy"], ["y"])],
               [h.make_tensor_value_info("a", T.UINT8, list(a_shape))],
               [h.make_tensor_value_info("y", T.UINT8, out_shape)],
               [_c("sa", np.float32(0.02)), _c("za", np.uint8(120)), _c("w", w), _c("sb", np.float32(0.03)),
                _c("zb", np.int8(0)), _c("sy", np.float32(0.05)), _c("zy", np.uint8(128))], opset=13)
    _check(m, {"a": a})


def test_qlinearmatmul_batched_constant_b_per_column_refused():
    w = np.ones((2, 4, 5), np.int8)
    m = _model([h.make_node("QLinearMatMul", ["a", "sa", "za", "w", "sb", "zb", "sy", "zy"], ["y"])],
               [h.make_tensor_value_info("a", T.UINT8, [2, 3, 4])],
               [h.make_tensor_value_info("y", T.UINT8, [2, 3, 5])],
               [_c("sa", np.float32(0.02)), _c("za", np.uint8(120)), _c("w", w),
                _c("sb", np.full((2, 1, 5), 0.03, np.float32)), _c("zb", np.zeros((2, 1, 5), np.int8)),
                _c("sy", np.float32(0.05)), _c("zy", np.uint8(128))], opset=13)
    with pytest.raises(FrontendError, match="per-tensor scale only"):
        _compile(m, {"a": np.zeros((2, 3, 4), np.uint8)})


def test_matmulinteger_exact():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, size=(3, 4)).astype(np.uint8)
    b = rng.integers(0, 256, size=(4, 2)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(4, 2)).astype(np.int8)
    m = _model([h.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"]),
                h.make_node("MatMulInteger", ["a", "w", "za"], ["y2"])],
               [h.make_tensor_value_info("a", T.UINT8, [3, 4]), h.make_tensor_value_info("b", T.UINT8, [4, 2])],
               [h.make_tensor_value_info("y", T.INT32, [3, 2]), h.make_tensor_value_info("y2", T.INT32, [3, 2])],
               [_c("za", np.uint8(12)), _c("zb", np.uint8(200)), _c("w", w)], opset=13)
    _check(m, {"a": a, "b": b})


def test_matmulinteger_zero_points_given_at_run_time():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, size=(2, 3)).astype(np.uint8)
    b = rng.integers(0, 256, size=(3, 4)).astype(np.uint8)
    m = _model([h.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])],
               [h.make_tensor_value_info(k, T.UINT8, s) for k, s in (("a", [2, 3]), ("b", [3, 4]), ("za", []),
                                                                    ("zb", []))],
               [h.make_tensor_value_info("y", T.INT32, [2, 4])], opset=13)
    _check(m, {"a": a, "b": b, "za": np.array(12, np.uint8), "zb": np.array(200, np.uint8)})


def test_dynamic_quantize_linear_three_outputs():
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    m = _model([h.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"])],
               [h.make_tensor_value_info("x", T.FLOAT, [3, 4])],
               [h.make_tensor_value_info("y", T.UINT8, [3, 4]), h.make_tensor_value_info("ys", T.FLOAT, []),
                h.make_tensor_value_info("yz", T.UINT8, [])], opset=13)
    art = _check(m, {"x": x})
    assert any("DynamicQuantizeLinear" in s for s in art.manifest["frontend"]["notes"])


@pytest.mark.parametrize("kernel,attrs,out_hw,cin", [
    (1, {}, 4, 3), (3, {}, 2, 3), (2, {"strides": [2, 2]}, 2, 3), (2, {"dilations": [2, 2]}, 2, 3),
    (3, {"pads": [1, 1, 1, 1]}, 4, 3), (3, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 2, 3),
    (3, {"pads": [1, 0, 0, 1], "group": 2}, 3, 1)])
def test_qlinearconv(kernel, attrs, out_hw, cin):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(1, 2 if cin == 1 else 3, 4, 4)).astype(np.uint8)
    # 7-bit weights (onnxruntime's quantizer's reduce_range): its u8s8 kernels without VNNI add pairs of
    # products in int16 with saturation, so full-range int8 weights make onnxruntime itself inexact
    w = rng.integers(-64, 64, size=(2, cin, kernel, kernel)).astype(np.int8)
    inits = [_c("sx", np.float32(0.05)), _c("zx", np.uint8(120)), _c("w", w),
             _c("sw", np.array([0.01, 0.02], np.float32)), _c("zw", np.zeros(2, np.int8)),
             _c("sy", np.float32(0.3)), _c("zy", np.uint8(128)), _c("bias", np.array([100, -50], np.int32))]
    node = h.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "bias"], ["y"], **attrs)
    m = _model([node], [h.make_tensor_value_info("x", T.UINT8, list(x.shape))],
               [h.make_tensor_value_info("y", T.UINT8, [1, 2, out_hw, out_hw])], inits, opset=13)
    _check(m, {"x": x})


# ---- float16 models -------------------------------------------------------------------------------------------


def _fp16_block(io_fp16: bool) -> onnx.ModelProto:
    """A tiny attention-ish block in float16: q = x Wq, k = x Wk, softmax(q k^T) x Wv + x."""
    rng = np.random.default_rng(5)
    d = 8
    inits = [_c(n, (rng.normal(size=(d, d)) / np.sqrt(d)).astype(np.float16)) for n in ("wq", "wk", "wv")]
    inits.append(_c("bq", rng.normal(size=(d,)).astype(np.float16) * np.float16(0.1)))
    nodes = []
    x = "x"
    if not io_fp16:  # keep_io_types=True: Cast in and out
        nodes.append(h.make_node("Cast", ["x"], ["x16"], to=T.FLOAT16, name="cast_in"))
        x = "x16"
    nodes += [h.make_node("MatMul", [x, "wq"], ["q0"]), h.make_node("Add", ["q0", "bq"], ["q"]),
              h.make_node("MatMul", [x, "wk"], ["k"]), h.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
              h.make_node("MatMul", ["q", "kt"], ["s"]), h.make_node("Softmax", ["s"], ["p"], axis=-1),
              h.make_node("MatMul", [x, "wv"], ["v"]), h.make_node("MatMul", ["p", "v"], ["o"]),
              h.make_node("Add", ["o", x], ["y16" if not io_fp16 else "y"])]
    if not io_fp16:
        nodes.append(h.make_node("Cast", ["y16"], ["y"], to=T.FLOAT, name="cast_out"))
    et = T.FLOAT16 if io_fp16 else T.FLOAT
    return _model(nodes, [h.make_tensor_value_info("x", et, [1, 4, d])], [h.make_tensor_value_info("y", et, [1, 4, d])],
                  inits, opset=17)


@pytest.mark.parametrize("io_fp16", [False, True])
def test_float16_model_widened(io_fp16):
    """Against onnxruntime running the float16 model: cosine > 0.9999 and within the 8-bit tolerance (the
    lowering's own error -- 8-bit weights, the softmax decomposition -- dominates the float16 rounding);
    and the same codes as the float32 model (widening is exact)."""
    m = _fp16_block(io_fp16)
    x = np.random.default_rng(6).normal(size=(1, 4, 8)).astype(np.float16 if io_fp16 else np.float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0].astype(np.float32)
    art = _compile(m, {"x": x})
    y = next(iter(art.run({"x": x}).values()))
    assert y.shape == ref.shape
    tol, _ = tolerance(ref, 8)
    assert np.max(np.abs(y - ref)) <= tol
    assert float((y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref)) > 0.9999
    assert "widened to float32" in " ".join(art.manifest["frontend"]["notes"])
    m32 = onnx.ModelProto()
    m32.CopyFrom(m)
    widen_half(m32)
    y32 = next(iter(_compile(m32, {"x": x.astype(np.float32)}).run({"x": x.astype(np.float32)}).values()))
    np.testing.assert_array_equal(y, y32)


def test_float16_cast_inside_graph_is_noted():
    m = _model([h.make_node("Cast", ["x"], ["h"], to=T.FLOAT16, name="narrow"),
                h.make_node("Cast", ["h"], ["y"], to=T.FLOAT)],
               [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    m.graph.node.insert(0, h.make_node("Identity", ["x"], ["x1"]))
    m.graph.node[1].input[0] = "x1"
    notes = widen_half(m)
    assert any("'narrow'" in s and "no-op Cast to float32" in s for s in notes)
    assert m.graph.node[1].attribute[0].i == T.FLOAT
