"""Constant folding where onnx.reference fails: its GatherElements cannot gather a [1, 512] table by [1, 8] indices
along axis 1 (how torch's default dynamo export at opset 20 writes BERT's buffered token_type_ids when the model is
called without them), which made every such export a refusal. lasercc's evaluator overrides that kernel
(``evaluators.reference_evaluator``) and any other failure falls back to onnxruntime
(``lower._fold_with_onnxruntime``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import make_model, vi
from onnx import helper
from onnx.reference import ReferenceEvaluator

import lasercc


def _model() -> onnx.ModelProto:
    table = np.zeros((1, 512), np.int64)
    table[0, :16] = np.arange(16)[::-1]
    idx = np.arange(8, dtype=np.int64)[None]
    emb = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("GatherElements", ["table", "idx"], ["pos"], axis=1),
             helper.make_node("Gather", ["emb", "pos"], ["pe"]),
             helper.make_node("Add", ["x", "pe"], ["y"])]
    return make_model(nodes, [vi("x", [1, 8, 4])], [vi("y", [1, 8, 4])], {"table": table, "idx": idx, "emb": emb},
                      opset=20)


def test_onnx_reference_still_fails_here() -> None:
    """If this starts passing, onnx fixed its GatherElements and the fallback is only a safety net."""
    n = _model().graph.node[0]
    with pytest.raises(Exception):  # noqa: B017 -- whatever onnx.reference raises
        ReferenceEvaluator(n, opsets={"": 20}).run(None, {"table": np.zeros((1, 512), np.int64),
                                                          "idx": np.arange(8, dtype=np.int64)[None]})


def test_onnxruntime_fallback_folds_a_node() -> None:
    from lasercc.frontends.onnx.lower import _fold_with_onnxruntime

    table = np.arange(512, dtype=np.int64)[None] * 3
    idx = np.array([[5, 0, 511, 7]], np.int64)
    n = _model().graph.node[0]
    (got,) = _fold_with_onnxruntime(n, {"table": table, "idx": idx}, 20)
    np.testing.assert_array_equal(got, np.take_along_axis(table, idx, axis=1))


def test_the_export_pattern_compiles(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    onnx.save(_model(), p)
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 4)).astype(np.float32)
    art = lasercc.compile(p, bits=16, calibration={"x": x[:, 0]}, progress=False)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    for row in x:
        ref = sess.run(None, {"x": row})[0]
        got = np.asarray(art.run({"x": row})["y"])
        np.testing.assert_allclose(got, ref, atol=2e-3 * np.abs(ref).max())


def test_a_constant_node_neither_can_fold_is_a_refusal_naming_it(tmp_path: Path) -> None:
    """An op neither onnx.reference nor onnxruntime knows, on constants: a FrontendError naming the node and both
    reasons, never an exception escaping the lowering."""
    nodes = [helper.make_node("NoSuchOp", ["c"], ["k"], name="mystery"), helper.make_node("Add", ["x", "k"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [vi("x", [1, 4])], [vi("y", [1, 4])],
                                            [onnx.numpy_helper.from_array(np.ones((1, 4), np.float32), "c")]),
                          opset_imports=[helper.make_opsetid("", 20)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    with pytest.raises(lasercc.errors.LasercError, match=r"node 'mystery' \(NoSuchOp\) cannot be evaluated"):
        lasercc.compile(p, bits=16, calibration={"x": np.ones((2, 4), np.float32)}, progress=False)
    # the fold's fallback raises one of the errors the lowering turns into that refusal, nothing else
    from lasercc.frontends.onnx.lower import _ORT_FOLD_ERRORS, _fold_with_onnxruntime

    with pytest.raises(_ORT_FOLD_ERRORS):
        _fold_with_onnxruntime(nodes[0], {"c": np.ones((1, 4), np.float32)}, 20)
