"""Empty tensors and bfloat16 data at the ONNX frontend's boundary.

* An empty tensor (a zero-size dimension) holds no values, so it *is* the empty array of its shape: an empty
  graph input (CastLike's ``like``) stays in the interface but is a constant inside, and an empty result (Slice
  past the end, a zero-size Split piece) is a constant its consumers fold or drop. The reference is
  onnxruntime on the same model and data.
* bfloat16 data (``ml_dtypes``, dtype kind 'V': what ONNX's test data and torch exports hand over) is exactly
  float32, so calibrating and running on it must give bit for bit what the same values as float32 give, on the
  NumPy and torch backends.
"""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import lasercc
from lasercc.errors import InputError
from lasercc.ir.data import widen_float

F32, F64, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=()):  # noqa: ANN001, ANN202
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def _compile(m: onnx.ModelProto, calib: dict) -> lasercc.Artifact:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(m, target="numpy", bits=16, calibration=calib, passes="", progress=False)


def _by_onnx(art, got: dict) -> dict:  # noqa: ANN001
    names = {k: v["onnx"] for k, v in art.manifest["onnx_outputs"].items()}
    return {names.get(k, k): v for k, v in got.items()}


def _ort(m: onnx.ModelProto, feeds: dict) -> dict:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(m.graph.output, sess.run(None, feeds))}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_empty_input_is_a_constant_kept_in_the_interface(backend: str) -> None:
    """``Concat(CastLike(x, like), e)`` with ``like`` and ``e`` empty (float64): the result is ``x`` as float64
    within a few steps (onnxruntime agrees), for three batches of ``x`` while the empty inputs are fed once at
    their exact shape; a non-empty feed for one is refused."""
    m = _model([helper.make_node("CastLike", ["x", "like"], ["c"]),
                helper.make_node("Concat", ["c", "e"], ["y"], axis=1)],
               [("x", F32, [2, 3]), ("like", F64, [0]), ("e", F64, [2, 0])], [("y", F64, [2, 3])])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    feeds = {"x": x, "like": np.zeros(0, np.float64), "e": np.zeros((2, 0), np.float64)}
    art = _compile(m, feeds)
    got = _by_onnx(art, art.run(feeds, backend=backend))["y"]
    assert np.array_equal(_ort(m, {**feeds, "x": x[:2]})["y"], x[:2].astype(np.float64))
    assert got.shape == x.shape
    assert np.abs(got - x).max() <= 4 * float(np.ptp(x)) / 65535
    with pytest.raises(InputError, match="empty shape"):
        art.run({**feeds, "like": np.zeros(1, np.float64)})


@pytest.mark.parametrize("start", [5, -100])
def test_empty_slice_and_split_piece_are_dropped_by_concat(start: int) -> None:
    """Slice past the end (or before the start with a negative step's bound) and a zero-size Split piece give
    empty constants; Concat with them is the other operand (onnxruntime as the reference)."""
    ends = np.array([7 if start > 0 else -99], np.int64)
    m = _model([helper.make_node("Slice", ["x", "s", "t", "a"], ["z"]),
                helper.make_node("Split", ["x", "sp"], ["p0", "p1"], axis=1),
                helper.make_node("Concat", ["p0", "z"], ["q"], axis=1),
                helper.make_node("Concat", ["q", "p1"], ["y"], axis=1)],
               [("x", F32, [2, 4])], [("y", F32, [2, 4])],
               [("s", np.array([start], np.int64)), ("t", ends), ("a", np.array([1], np.int64)),
                ("sp", np.array([4, 0], np.int64))])
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    art = _compile(m, {"x": x})
    got = _by_onnx(art, art.run({"x": x}))["y"]
    ref = _ort(m, {"x": x})["y"]
    assert np.abs(got - ref).max() <= 4 * float(np.ptp(ref)) / 65535


def test_widen_float_is_exact_and_leaves_numpy_types_alone() -> None:
    v = np.array([1.5, -3.25, 1e30, 0.0], np.float32).astype(ml_dtypes.bfloat16)
    w = widen_float(v)
    assert w.dtype == np.float32 and np.array_equal(w, v.astype(np.float32))
    for a in (np.arange(3, dtype=np.int16), np.ones(2, np.float16), np.ones(2, bool)):
        assert widen_float(a).dtype == a.dtype


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bfloat16_data_equals_its_float32_values(backend: str) -> None:
    m = _model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
               [("x", F32, [1, 4])], [("y", F32, [1, 3])],
               [("w", np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32))])
    xb = np.random.default_rng(3).standard_normal((8, 4)).astype(ml_dtypes.bfloat16)
    xf = xb.astype(np.float32)
    art_b, art_f = _compile(m, {"x": xb}), _compile(m, {"x": xf})
    got_b = art_b.run({"x": xb}, backend=backend, output="codes")
    got_f = art_f.run({"x": xf}, backend=backend, output="codes")
    assert got_b.keys() == got_f.keys()
    for k in got_b:
        assert np.array_equal(got_b[k], got_f[k])


@pytest.mark.parametrize(("op", "dt"), [("Trilu", TensorProto.INT64), ("Identity", F32)])
def test_graph_of_only_empty_inputs_outputs_its_empty_result(op: str, dt: int) -> None:
    """Every input empty and the output an empty constant: the empty input itself is encoded to the output's
    shape (no value is computed); onnxruntime's result has the same empty shape on both backends."""
    m = _model([helper.make_node(op, ["x"], ["y"])], [("x", dt, [3, 0, 5])], [("y", dt, [3, 0, 5])])
    x = np.zeros((3, 0, 5), helper.tensor_dtype_to_np_dtype(dt))
    art = _compile(m, {"x": x})
    ref = _ort(m, {"x": x})["y"]
    for backend in ("numpy", "torch"):
        got = _by_onnx(art, art.run({"x": x}, backend=backend))["y"]
        assert got.shape == ref.shape == (3, 0, 5)
