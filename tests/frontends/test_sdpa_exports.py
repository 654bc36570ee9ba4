"""Regressions from transformers' default-attention (SDPA) exports (bench/hf_zoo.py --attention default).

* T5 encoder: ``scores + Where(keep, position_bias, finfo.min)`` -- a constant bias selected against a -inf fill by an
  input-dependent mask, added to the scores before Softmax.
* T5 decoder: the same with the causal condition from the pinned sequence length: one constant holding finite
  biases and -inf fills (bench/hf_zoo.py --attention default --models t5).
(BLOOM's chain-region fix -- a node that ends one region must still be emitted when another region also
contains it -- is covered by ``bench/hf_zoo.py --attention default``: no small graph reproduced it.)
Compiled at 16 bits and compared with onnxruntime on held-out rows.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h

import lasercc

FMIN = float(np.finfo(np.float32).min)


def _ort(m: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _masks(rng: np.random.Generator, rows: int, s: int) -> np.ndarray:
    m = np.ones((rows, s), np.int64)
    for r in range(rows):
        m[r, s - int(rng.integers(0, s - 1)):] = 0  # right padding, at least one kept key
    return m


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_t5_position_bias_under_padding_mask() -> None:
    rng = np.random.default_rng(0)
    hd, s = 2, 6
    bias = rng.normal(0, 1, (1, hd, s, s)).astype(np.float32)
    nodes = [
        h.make_node("Cast", ["mask"], ["keep"], to=T.BOOL),
        h.make_node("Unsqueeze", ["keep", "ax"], ["keep4"]),
        h.make_node("Where", ["keep4", "bias", "fill"], ["pb"]),
        h.make_node("Add", ["x", "pb"], ["sc"]),
        h.make_node("Softmax", ["sc"], ["y"], axis=-1),
    ]
    g = h.make_graph(nodes, "t5", [h.make_tensor_value_info("x", T.FLOAT, [1, hd, s, s]),
                                   h.make_tensor_value_info("mask", T.INT64, [1, s])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, hd, s, s])],
                     [onnx.numpy_helper.from_array(bias, "bias"),
                      onnx.numpy_helper.from_array(np.array(FMIN, np.float32), "fill"),
                      onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "ax")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    cal = {"x": rng.normal(0, 2, (16, hd, s, s)).astype(np.float32), "mask": _masks(rng, 16, s)}
    art = lasercc.compile(m, target="numpy", bits=16, calibration=cal, passes="", progress=False)
    held = {"x": rng.normal(0, 2, (8, hd, s, s)).astype(np.float32), "mask": _masks(rng, 8, s)}
    got = art.run(held)["y"]
    ref = np.concatenate([_ort(m, {k: v[i:i + 1] for k, v in held.items()})[0] for i in range(8)])
    assert _cos(got, ref) > 0.9999
    assert np.max(np.abs(got - ref)) < 2e-3



def test_t5_decoder_position_bias_under_causal_mask() -> None:
    """T5's decoder self-attention with default attention: ``scores + Where(causal, position_bias, finfo.min)``
    where the causal condition comes from the (pinned) sequence length, so the whole bias folds into one
    constant holding both finite biases and -inf fills. Refused before ("Softmax input codes are too coarse":
    the fill was taken as an ordinary addend); now the bias is added and the fill becomes a mask."""
    rng = np.random.default_rng(1)
    hd, s = 2, 6
    bias = rng.normal(0, 1, (1, hd, s, s)).astype(np.float32)
    causal = np.tril(np.ones((s, s), bool))[None, None]
    nodes = [
        h.make_node("Where", ["causal", "bias", "fill"], ["pb"]),
        h.make_node("Add", ["x", "pb"], ["sc"]),
        h.make_node("Softmax", ["sc"], ["y"], axis=-1),
    ]
    g = h.make_graph(nodes, "t5dec", [h.make_tensor_value_info("x", T.FLOAT, [1, hd, s, s])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, hd, s, s])],
                     [onnx.numpy_helper.from_array(bias, "bias"), onnx.numpy_helper.from_array(causal, "causal"),
                      onnx.numpy_helper.from_array(np.array(FMIN, np.float32), "fill")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    cal = {"x": rng.normal(0, 2, (16, hd, s, s)).astype(np.float32)}
    art = lasercc.compile(m, target="numpy", bits=16, calibration=cal, progress=False)
    held = {"x": rng.normal(0, 2, (8, hd, s, s)).astype(np.float32)}
    got = art.run(held)["y"]
    ref = np.concatenate([_ort(m, {"x": held["x"][i:i + 1]})[0] for i in range(8)])
    assert np.all(got[..., ~causal[0, 0]] == 0)  # future keys get exactly no weight
    assert _cos(got, ref) > 0.9999
    assert np.max(np.abs(got - ref)) < 2e-3
    # the bias is really added: softmax of the scores alone is far from onnxruntime's
    e = np.where(causal, np.exp(held["x"] - held["x"].max(-1, keepdims=True)), 0)
    assert _cos(e / e.sum(-1, keepdims=True), ref) < 0.99
