"""Graph outputs that are model inputs passed through (exporters write them: ids, masks, hidden states).

An integer input passed through becomes scale-1 codes through an identity lookup table (IR outputs are
codes); the values are the ids exactly, as onnxruntime returns them. A float input passed through keeps its
input encoding. A constant output is computed from an input: a Gather of its codes by a zero code.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import lasercc


def _model(tmp_path, extra_nodes=(), extra_outputs=()):  # noqa: ANN001, ANN202
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    emb = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("Add", ["e", "x"], ["h"]),
             helper.make_node("MatMul", ["h", "W"], ["y"]), helper.make_node("Identity", ["ids"], ["ids_out"]),
             helper.make_node("Identity", ["x"], ["x_out"]), *extra_nodes]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4]),
         helper.make_tensor_value_info("ids_out", TensorProto.INT64, [1, 3]),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1, 3, 8]), *extra_outputs],
        [onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(emb, "E")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    return p


def _data(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 3, 8)).astype(np.float32), "ids": rng.integers(0, 50, (rows, 3))}


def _compile(p, calib):  # noqa: ANN001, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(str(p), calibration=calib, bits=16, progress=False)


def test_passthrough_outputs_match_onnxruntime(tmp_path) -> None:
    p = _model(tmp_path)
    art = _compile(p, _data(16, 0))
    held = _data(4, 1)
    held["ids"][0, 0] = 49  # above every calibration id: the table covers the embedding's rows
    got = art.run(held)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ref = {n: np.concatenate([sess.run([n], {k: v[i:i + 1] for k, v in held.items()})[0] for i in range(4)])
           for n in names}
    onnx_of = {k: v["onnx"] for k, v in art.manifest["onnx_outputs"].items()}
    by_onnx = {onnx_of[k]: v for k, v in got.items()}
    assert set(by_onnx) == set(names)
    assert np.array_equal(by_onnx["ids_out"], ref["ids_out"].astype(np.float32))
    x_err = np.abs(by_onnx["x_out"] - ref["x_out"]).max()
    assert x_err <= 0.6 * np.ptp(held["x"]) / 65535 * 2 + 1e-6  # within a 16-bit code step of the input range
    y = by_onnx["y"]
    cos = float((y * ref["y"]).sum() / np.linalg.norm(y) / np.linalg.norm(ref["y"]))
    assert cos > 0.9999


def test_constant_output_comes_back(tmp_path) -> None:
    """A constant output is a Gather of its codes by a zero code computed from an input (exact for integers)."""
    c = helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(np.array([1.5, -2.0], np.float32)))
    k = helper.make_node("Constant", [], ["k"], value=onnx.numpy_helper.from_array(np.array([[3, -7]], np.int64)))
    p = _model(tmp_path, [c, k], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2]),
                                  helper.make_tensor_value_info("k", TensorProto.INT64, [1, 2])])
    art = _compile(p, _data(8, 0))
    got = art.run(_data(1, 1))
    by_onnx = {art.manifest["onnx_outputs"][k]["onnx"]: v for k, v in got.items()}
    assert np.array_equal(by_onnx["k"], [[3, -7]])
    assert np.abs(by_onnx["c"] - [1.5, -2.0]).max() <= 3.5 / 255
