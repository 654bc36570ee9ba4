"""Op semantics that text architectures new to the zoo exercised (found by ``bench/hf_zoo_unseen.py``).

Each graph is the op as the exporter wrote it, reduced to a few nodes with onnx.helper, compiled by lasercc at
16 bits and compared with onnxruntime on the same rows (the node-test harness's tolerance: 64 output steps):

* GPT-J: ``GatherElements`` of a constant position table longer than 63 rows by constant indices (the constant
  fold used ``onnx.reference``, whose kernel, ``numpy.choose``, refuses more than 63 choices).
* Phi-3 at full rotary: ``q[..., rotary_dim:]`` is an empty Slice concatenated back (an empty Split chunk too).
* Funnel: ``Tile`` of an activation.
* XGLM: ``max(scores + mask, finfo.min)`` on masked scores, with the padding mask computed from the
  ``attention_mask`` input at [1, 1, q, k] and the scores reshaped to [heads, q, k] before the Softmax.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from frontend_models import make_model, vi
from onnx import TensorProto, helper

import lasercc
from lasercc.onnx_conformance import tolerance

RNG = np.random.default_rng(5)
FMIN = float(np.finfo(np.float32).min)


def _run(model: onnx.ModelProto, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> None:
    """Compile on ``calib`` (shapes pinned to one row), run ``feeds`` (calibration rows: the op's semantics are
    under test, not range coverage) row by row, compare with onnxruntime."""
    from onnxruntime import InferenceSession

    sess = InferenceSession(model.SerializeToString())
    shapes = {k: (1, *v.shape[1:]) for k, v in feeds.items()}
    art = lasercc.compile(model, target="numpy", bits=16, calibration=calib, input_shapes=shapes, progress=False)
    names = {v["onnx"]: k for k, v in art.manifest["onnx_outputs"].items()}
    rows = len(next(iter(feeds.values())))
    for r in range(rows):
        one = {k: v[r:r + 1] for k, v in feeds.items()}
        want = sess.run(None, one)
        got = art.run(one)
        for o, w in zip(model.graph.output, want):
            g = np.asarray(got[names[o.name]])
            assert g.shape == w.shape, (o.name, g.shape, w.shape)
            tol, _ = tolerance(w, 16)
            assert np.max(np.abs(g - w)) <= tol, (o.name, r, float(np.max(np.abs(g - w))), tol)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_gather_elements_fold_of_a_long_position_table() -> None:
    """GPT-J's sincos: ``embed_positions [1, 100, 8]`` gathered along axis 1 by constant positions (negative ones
    too), added to an activation. Before the fix the fold raised 'Need at least 0 and at most 64 array objects'."""
    table = _f(1, 100, 8)
    pos = np.broadcast_to(np.array([0, 5, 63, 64, 99, -1, -100, 7])[None, :, None], (1, 8, 8)).astype(np.int64)
    nodes = [helper.make_node("GatherElements", ["table", "pos"], ["sc"], axis=1),
             helper.make_node("Add", ["x", "sc"], ["y"])]
    m = make_model(nodes, [vi("x", ["b", 8, 8])], [vi("y", ["b", 8, 8])], {"table": table, "pos": pos})
    x = _f(8, 8, 8)
    _run(m, {"x": x}, {"x": x[:3]})


@pytest.mark.parametrize("op", ["Slice", "Split"])
def test_empty_slice_concatenated_back(op: str) -> None:
    """Phi-3 (``partial_rotary_factor`` 1): ``cat([rope(q[..., :16]), q[..., 16:]], -1)`` -- the pass-through part
    is empty. Slice's empty result and Split's zero-size chunk both concatenate to nothing."""
    if op == "Slice":
        cut = [helper.make_node("Slice", ["x", "s0", "e0", "ax"], ["rot"]),
               helper.make_node("Slice", ["x", "e0", "big", "ax"], ["pas"])]
        inits = {"s0": np.array([0], np.int64), "e0": np.array([16], np.int64),
                 "big": np.array([2 ** 62], np.int64), "ax": np.array([-1], np.int64)}
    else:
        cut = [helper.make_node("Split", ["x", "sizes"], ["rot", "pas"], axis=-1)]
        inits = {"sizes": np.array([16, 0], np.int64)}
    nodes = [*cut, helper.make_node("Neg", ["rot"], ["r2"]),
             helper.make_node("Concat", ["r2", "pas"], ["y"], axis=-1)]
    m = make_model(nodes, [vi("x", ["b", 4, 6, 16])], [vi("y", ["b", 4, 6, 16])], inits, opset=18)
    x = _f(6, 4, 6, 16)
    _run(m, {"x": x}, {"x": x[:2]})


def test_tile_of_an_activation() -> None:
    """Funnel's decoder: Tile with repeats on several axes (1 keeps the axis), then arithmetic on the result."""
    nodes = [helper.make_node("Tile", ["x", "reps"], ["t"]), helper.make_node("Mul", ["t", "t"], ["y"])]
    m = make_model(nodes, [vi("x", ["b", 3, 5])], [vi("y", ["b", 6, 10])], {"reps": np.array([1, 2, 2], np.int64)})
    x = _f(6, 3, 5)
    _run(m, {"x": x}, {"x": x[:2]})


@pytest.mark.parametrize("op", ["Max", "Min", ""])
def test_clamped_masked_scores_with_a_broadcast_input_mask(op: str) -> None:
    """XGLM's eager attention: scores [1, 4, 8, 8] + a mask [1, 1, 8, 8] built from ``attention_mask`` (causal AND
    padding, ``Where(m, 0, finfo.min)``), ``Max(., finfo.min)``, ``view(heads, q, k)``, Softmax. Min with a large
    constant clamps the unmasked scores and keeps the mask; no op at all checks the Reshape of scores whose input
    mask is broadcast over the heads. Right-padded rows exercise the input mask."""
    causal = np.tril(np.ones((8, 8), bool))[None, None]
    c = np.array(FMIN if op == "Max" else 1.5, np.float32)
    nodes = [
        helper.make_node("Cast", ["am"], ["amb"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["amb", "axes12"], ["am4"]),
        helper.make_node("And", ["causal", "am4"], ["keep"]),
        helper.make_node("Where", ["keep", "zero", "fmin"], ["mask"]),
        helper.make_node("Add", ["s", "mask"], ["sm"]),
        helper.make_node(op or "Identity", ["sm", "c"][:2 if op else 1], ["sc"]),
        helper.make_node("Reshape", ["sc", "hqk"], ["s3"]),
        helper.make_node("Softmax", ["s3"], ["p"], axis=-1),
    ]
    inits = {"axes12": np.array([1, 2], np.int64), "causal": causal, "zero": np.array(0.0, np.float32),
             "fmin": np.array(FMIN, np.float32), "c": c, "hqk": np.array([4, 8, 8], np.int64)}
    m = make_model(nodes, [vi("s", [1, 4, 8, 8]), vi("am", [1, 8], TensorProto.INT64)],
                   [vi("p", [4, 8, 8])], inits)

    def rows(n: int) -> dict[str, np.ndarray]:
        am = np.ones((n, 8), np.int64)
        for r in range(1, n, 2):
            am[r, 8 - 1 - r % 5:] = 0
        return {"s": 2 * _f(n, 4, 8, 8), "am": am}

    calib = rows(4)
    # one row at a time: the model's batch is 1 (the Reshape to [heads, q, k] pins it)
    from onnxruntime import InferenceSession

    sess = InferenceSession(m.SerializeToString())
    art = lasercc.compile(m, target="numpy", bits=16, calibration=calib, progress=False)
    for r in range(4):
        one = {k: v[r:r + 1] for k, v in calib.items()}
        (want,) = sess.run(None, one)
        got = np.asarray(next(iter(art.run(one).values())))
        tol, _ = tolerance(want, 16)
        assert np.max(np.abs(got - want)) <= tol, (r, float(np.max(np.abs(got - want))))


@pytest.mark.parametrize(("dshape", "idx", "const_data"), [
    ((3, 4, 5), [[2], [0]], False),            # whole rows replaced
    ((3, 4, 5), [[1, 3], [0, -1], [1, 3]], False),  # 2-D points, a negative index, a repeat (the last wins)
    ((3, 4, 5), [[[2, 1, 4]], [[0, 0, 0]]], True),  # single elements into a constant
])
def test_scatter_nd_with_constant_indices(dshape: tuple[int, ...], idx: list, const_data: bool) -> None:
    """Funnel, dynamo export: an in-place slice assignment is ScatterND(data, constant indices, updates), data and
    updates computed from the input (here: scaled / negated copies of it)."""
    iv = np.array(idx, np.int64)
    ushape = iv.shape[:-1] + dshape[iv.shape[-1]:]
    inits = {"i": iv, "two": np.array(2.0, np.float32)}
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"])]
    if const_data:
        inits["d"] = _f(*dshape)
    else:
        nodes.append(helper.make_node("Neg", ["x2"], ["d"]))
    nodes += [helper.make_node("ScatterND", ["d", "i", "u"], ["s"]), helper.make_node("Add", ["s", "s"], ["y"])]
    # updates: the first elements of x2, reshaped to the updates' shape
    count = int(np.prod(ushape))
    inits.update({"flat": np.array([-1], np.int64), "z": np.array([0], np.int64), "c": np.array([count], np.int64),
                  "ushape": np.array(ushape, np.int64)})
    nodes[1:1] = [helper.make_node("Reshape", ["x2", "flat"], ["x2f"]),
                  helper.make_node("Slice", ["x2f", "z", "c"], ["u0"]),
                  helper.make_node("Reshape", ["u0", "ushape"], ["u"])]
    m = make_model(nodes, [vi("x", list(dshape))], [vi("y", list(dshape))], inits)
    x = _f(4, *dshape)
    from onnxruntime import InferenceSession

    sess = InferenceSession(m.SerializeToString())
    # a static model calibrates on its rows stacked along axis 0
    art = lasercc.compile(m, target="numpy", bits=16, calibration={"x": x.reshape(-1, *dshape[1:])}, progress=False)
    for r in range(4):
        (want,) = sess.run(None, {"x": x[r]})
        got = np.asarray(next(iter(art.run({"x": x[r]}).values())))
        tol, _ = tolerance(want, 16)
        assert np.max(np.abs(got - want)) <= tol, (r, float(np.max(np.abs(got - want))))
