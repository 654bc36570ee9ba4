"""Linear algebra and data movement as operations (issue 11): MatMul/Gemm/Einsum in every operand class and
attribute value, movement ops with negative axes and constant parts, lookups by run-time indices.

Each tiny model is compiled at 16 bits (numpy target, no passes), run on its calibration rows, and compared with
onnxruntime within the node-test harness's tolerance (64 output steps at 16 bits); integer outputs exactly.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import make_model, vi
from onnx import TensorProto, helper

import lasercc
from lasercc.errors import LasercError
from lasercc.onnx_conformance import tolerance

RNG = np.random.default_rng(11)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], bits: int = 16, **kw) -> None:  # noqa: ANN003
    from onnxruntime import InferenceSession

    want = InferenceSession(model.SerializeToString()).run(None, feeds)
    art = lasercc.compile(model, target="numpy", bits=bits, calibration=feeds, passes="", progress=False, **kw)
    got = art.run(feeds)
    names = {v["onnx"]: k for k, v in art.manifest["onnx_outputs"].items()}
    for o, w in zip(model.graph.output, want):
        g = np.asarray(got[names[o.name]])
        assert g.shape == w.shape, (o.name, g.shape, w.shape)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            tol, _ = tolerance(w, bits)
            assert np.max(np.abs(g - w)) <= tol, (o.name, float(np.max(np.abs(g - w))), tol)


def _model(nodes, ins, outs, inits=None, opset: int = 18):  # noqa: ANN001, ANN202
    return make_model(nodes, ins, outs, inits or {}, opset=opset)


@pytest.mark.parametrize(("sa", "sb", "const"), [
    ((4,), (2, 4, 3), "b"), ((2, 3, 4), (4,), "b"), ((4,), (4,), "b"), ((3, 1, 2, 4), (1, 2, 4, 5), "b"),
    ((2, 3, 4), (2, 4, 3), "a"), ((5, 4), (2, 4, 3), "a"), ((3, 1, 2, 4), (1, 2, 4, 5), ""), ((4,), (2, 4, 3), ""),
])
def test_matmul_operand_classes_and_broadcasting(sa, sb, const) -> None:  # noqa: ANN001
    a, b = _f(*sa), _f(*sb)
    inits = {"a": a} if const == "a" else {"b": b} if const == "b" else {}
    ins = [vi(k, list(v.shape)) for k, v in (("a", a), ("b", b)) if k not in inits]
    out = np.matmul(a, b)
    m = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], ins, [vi("y", list(out.shape))], inits)
    _run(m, {k: v for k, v in (("a", a), ("b", b)) if k not in inits})


@pytest.mark.parametrize(("c_shape", "live", "alpha"), [
    (c, live, alpha) for c in [(), (4,), (1, 4), (3, 1), (3, 4), None]
    for live, alpha in [("a", 0.5), ("ab", 0.5), ("abc", 0.5), ("b", 0.5), ("a", -2.0), ("ab", -2.0), ("bc", -2.0)]
    if not ("c" in live and c in (None, ()))  # C live needs a C, and a scalar C is a constant, not an activation
])
def test_gemm_attributes_and_bias_shapes(c_shape, live, alpha) -> None:  # noqa: ANN001
    a, b = _f(5, 3), _f(4, 5)  # transA: A' = [3, 5]; transB: B' = [5, 4]
    c = None if c_shape is None else _f(*c_shape)
    feeds = {"a": a, "b": b, **({} if c is None else {"c": c})}
    inits = {k: v for k, v in feeds.items() if k not in live}
    node = helper.make_node("Gemm", ["a", "b"] + ([] if c is None else ["c"]), ["y"], transA=1, transB=1,
                            alpha=alpha, beta=0.75)
    m = _model([node], [vi(k, list(v.shape)) for k, v in feeds.items() if k in live], [vi("y", [3, 4])], inits)
    _run(m, {k: v for k, v in feeds.items() if k in live})


def test_weight_bits_follow_bits_for_float_models() -> None:
    x, w = _f(8, 16), _f(16, 8)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", [8, 16])], [vi("y", [8, 8])], {"w": w})
    for bits, kw, want in ((16, {}, 16), (8, {}, 8), (16, {"weight_bits": 8}, 8), (16, {"target": "loihi2"}, 8)):
        opts = {"target": "numpy", **kw}
        art = lasercc.compile(m, bits=bits, calibration={"x": x}, passes="", progress=False, **opts)
        assert art.manifest["frontend"]["weight_bits"] == want
    _run(m, {"x": x})  # 16-bit weights keep a 16-bit result within the harness's 64 steps
    with pytest.raises(LasercError, match="weight_bits"):
        lasercc.compile(m, bits=16, calibration={"x": x}, passes="", progress=False, weight_bits=20)


@pytest.mark.parametrize(("eq", "shapes"), [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("bhid,bhjd->bhij", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij->ji", [(3, 4)]), ("ij->i", [(3, 4)]), ("...ii->...i", [(2, 3, 3)]), ("i,i", [(5,), (5,)]),
    ("bij,jk->bik", [(2, 3, 4), (4, 5)]), ("ij,kj->ik", [(3, 4), (5, 4)]), ("->", [()]),
])
def test_einsum_forms(eq, shapes) -> None:  # noqa: ANN001
    xs = {f"x{i}": _f(*s) for i, s in enumerate(shapes)}
    out = np.einsum(eq.replace(" ", ""), *xs.values())
    m = _model([helper.make_node("Einsum", list(xs), ["y"], equation=eq)],
               [vi(k, list(v.shape)) for k, v in xs.items()], [vi("y", list(out.shape))])
    _run(m, xs)


def test_einsum_three_operands_is_refused_by_equation() -> None:
    xs = {f"x{i}": _f(3, 3) for i in range(3)}
    m = _model([helper.make_node("Einsum", list(xs), ["y"], equation="ij,jk,kl->il")],
               [vi(k, [3, 3]) for k in xs], [vi("y", [3, 3])])
    with pytest.raises(LasercError, match="ij,jk,kl->il"):
        lasercc.compile(m, bits=16, calibration=xs, passes="", progress=False)


def test_movement_negative_axes_constant_parts_and_defaults() -> None:
    x = _f(2, 3, 4, 5)
    c = _f(2, 3, 1, 5)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=-2),
        helper.make_node("Concat", ["x", "c"], ["cat"], axis=-2),
        helper.make_node("Transpose", ["x"], ["t"]),
        helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
        helper.make_node("Squeeze", ["u"], ["s"]),
        helper.make_node("Split", ["x"], ["p0", "p1"], axis=-1, num_outputs=2),
        helper.make_node("Slice", ["x", "st", "en", "sa", "sp"], ["sl"]),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Expand", ["x", "eshape"], ["e"]),
    ]
    inits = {"c": c, "ax": np.array([-1, 0], np.int64), "st": np.array([-1, 10], np.int64),
             "en": np.array([-100, -10], np.int64), "sa": np.array([-1, 1], np.int64),
             "sp": np.array([-2, -1], np.int64), "shape": np.array([0, -1, 5], np.int64),
             "eshape": np.array([3, 1, 1, 1, 1], np.int64)}
    outs = [vi("f", [24, 5]), vi("cat", [2, 3, 5, 5]), vi("t", [5, 4, 3, 2]), vi("s", [2, 3, 4, 5]),
            vi("p0", [2, 3, 4, 3]), vi("p1", [2, 3, 4, 2]), vi("sl", [2, 3, 4, 3]), vi("r", [2, 12, 5]),
            vi("e", [3, 2, 3, 4, 5])]
    _run(_model(nodes, [vi("x", [2, 3, 4, 5])], outs, inits), {"x": x})


@pytest.mark.parametrize(("shape", "st", "en", "ax", "sp"), [
    ((2,), [-6], [-8], [-1], [-1]), ((4, 3), [10, -1], [-10, -100], [0, 1], [-1, -2]),
    ((3, 5), [1, 0], [2**63 - 1, -1], [-1, 0], [2, 1]),
])
def test_slice_bounds_clamp_as_onnx(shape, st, en, ax, sp) -> None:  # noqa: ANN001
    x = _f(*shape)
    from onnx.reference import ReferenceEvaluator

    inits = {k: np.array(v, np.int64) for k, v in (("st", st), ("en", en), ("ax", ax), ("sp", sp))}
    node = helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])
    want = ReferenceEvaluator(node).run(None, {"x": x, **inits})[0]
    _run(_model([node], [vi("x", list(shape))], [vi("y", list(want.shape))], inits), {"x": x})


def test_zero_size_results_are_empty_and_shape_inputs_are_refused_clearly() -> None:
    """A Slice past the end selects nothing: its result is the empty array (a constant, as onnxruntime computes
    it), not a refusal; a shape computed from the inputs is refused."""
    x = _f(4, 5)
    # an empty Slice holds no values: an empty constant (Phi-3's q[..., rotary_dim:]), here the empty output itself
    m = _model([helper.make_node("Slice", ["x", "st", "en"], ["y"])], [vi("x", [4, 5])], [vi("y", [0, 5])],
               {"st": np.array([9], np.int64), "en": np.array([12], np.int64)})
    art = lasercc.compile(m, bits=16, calibration={"x": x}, passes="", progress=False)
    got = next(iter(art.run({"x": x}).values()))
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == ref.shape == (0, 5)
    m = _model([helper.make_node("Gather", ["x", "i"], ["y"])], [vi("x", [4, 5])], [vi("y", [0, 5])],
               {"i": np.zeros(0, np.int64)})
    with pytest.raises(LasercError, match="zero size"):
        lasercc.compile(m, bits=16, calibration={"x": x}, passes="", progress=False)
    m = _model([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", [4, 5]), vi("s", [2], TensorProto.INT64)],
               [vi("y", [5, 4])])
    with pytest.raises(LasercError, match="compile-time constant"):
        lasercc.compile(m, bits=16, calibration={"x": x, "s": np.array([5, 4], np.int64)}, passes="", progress=False)


@pytest.mark.parametrize("op", ["Gather", "GatherElements", "GatherND"])
@pytest.mark.parametrize("data_const", [False, True])
def test_lookups_by_runtime_indices(op, data_const) -> None:  # noqa: ANN001
    data = _f(3, 4)
    if op == "Gather":
        idx, attrs = np.array([[0, 2], [1, 1]], np.int64), {"axis": 1}
        out = data[:, idx]
    elif op == "GatherElements":
        idx, attrs = np.array([[0, 2, 1, 0], [2, 2, 0, 1]], np.int64), {"axis": 0}
        out = np.take_along_axis(data, idx, 0)
    else:
        idx, attrs = np.array([[0, 3], [2, 1], [1, 0]], np.int64), {}
        out = data[idx[:, 0], idx[:, 1]]
    node = helper.make_node(op, ["data", "idx"], ["y"], **attrs)
    ins = [vi("idx", list(idx.shape), TensorProto.INT64)] + ([] if data_const else [vi("data", [3, 4])])
    m = _model([node], ins, [vi("y", list(out.shape))], {"data": data} if data_const else {})
    feeds = {"idx": idx, **({} if data_const else {"data": data})}
    _run(m, feeds)


def test_gathernd_batch_dims_and_gather_negative_constant_indices() -> None:
    data = _f(2, 3, 4)
    nodes = [helper.make_node("GatherND", ["data", "i"], ["y"], batch_dims=1),
             helper.make_node("Gather", ["data", "g"], ["z"], axis=-1)]
    inits = {"i": np.array([[[1], [0]], [[2], [2]]], np.int64), "g": np.array([-1, 0, -4], np.int64)}
    _run(_model(nodes, [vi("data", [2, 3, 4])], [vi("y", [2, 2, 4]), vi("z", [2, 3, 3])], inits), {"data": data})


def test_movement_of_masked_scores_before_softmax() -> None:
    x = _f(1, 4, 6)
    mask = np.triu(np.full((4, 6), np.finfo(np.float32).min, np.float32), 1)
    nodes = [helper.make_node("Add", ["x", "m"], ["s"]),
             helper.make_node("Slice", ["s", "st", "en", "ax"], ["sl"]),
             helper.make_node("Transpose", ["sl"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t2"], perm=[0, 2, 1]),
             helper.make_node("Softmax", ["t2"], ["y"], axis=-1)]
    inits = {"m": mask, "st": np.array([1, 0], np.int64), "en": np.array([4, 5], np.int64),
             "ax": np.array([1, -1], np.int64), "shape": np.array([1, 5, 3], np.int64)}
    _run(_model(nodes, [vi("x", [1, 4, 6])], [vi("y", [1, 3, 5])], inits), {"x": x})


def test_integer_matmul_is_exact() -> None:
    ids = np.array([[3, 0, 9, 5]], np.int64)
    i64 = TensorProto.INT64
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]),  # bounds the ids: they index 10 rows
             helper.make_node("MatMul", ["ids", "w"], ["y1"]),
             helper.make_node("MatMul", ["c", "ids"], ["y2"]),
             helper.make_node("Unsqueeze", ["ids", "a1"], ["col"]),
             helper.make_node("Unsqueeze", ["ids", "a0"], ["row"]),
             helper.make_node("MatMul", ["col", "row"], ["y3"])]
    inits = {"table": _f(10, 2), "w": np.array([[1, -2, 0], [4, 1, 1], [-3, 0, 2], [0, 5, -1]], np.int64),
             "c": np.array([[2], [-1]], np.int64), "a1": np.array([2], np.int64), "a0": np.array([1], np.int64)}
    outs = [vi("emb", [1, 4, 2]), vi("y1", [1, 3], i64), vi("y2", [2, 4], i64), vi("y3", [1, 4, 4], i64)]
    _run(_model(nodes, [vi("ids", [1, 4], i64)], outs, inits), {"ids": ids})


def test_cli_weight_bits(tmp_path) -> None:  # noqa: ANN001
    import json

    from lasercc.cli import main

    x, w = _f(8, 16), _f(16, 8)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", [8, 16])], [vi("y", [8, 8])], {"w": w})
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=x)
    for extra, want in (([], 16), (["--weight-bits", "6"], 6)):
        out = tmp_path / f"o{want}"
        rc = main(["compile", str(tmp_path / "m.onnx"), "-o", str(out), "--bits", "16", "--calibration",
                   str(tmp_path / "cal.npz"), "-q", *extra])
        assert rc == 0
        assert json.loads((out / "manifest.json").read_text())["frontend"]["weight_bits"] == want
