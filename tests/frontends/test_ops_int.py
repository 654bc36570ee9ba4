"""Exact integer and bool data (value class b): small ONNX graphs compiled and run, compared with onnxruntime.

Integer and bool outputs must be exact; float outputs within a few code steps of their range (the node-test
harness's tolerance). The masked mean pooling subgraph is the sentence-transformers one: an integer mask turned
into a 0/1 activation by ``Unsqueeze -> Expand -> Cast(float)``, then Mul / ReduceSum / Clip / Div.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import lasercc
from lasercc.errors import LasercError

I64, F32, BOOL = TensorProto.INT64, TensorProto.FLOAT, TensorProto.BOOL


def _model(nodes, inputs, outputs, inits=()):  # noqa: ANN001, ANN202
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(m, calib, feeds, bits=16):  # noqa: ANN001, ANN202
    """(lasercc outputs by ONNX name, onnxruntime outputs by name), row by row for a batch-1 model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=bits, calibration=calib, passes="", progress=False)
    got = art.run(feeds)
    names = {k: v["onnx"] for k, v in art.manifest["onnx_outputs"].items()}
    ours = {names[k]: v for k, v in got.items()}
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = next(iter(feeds.values())).shape[0]
    b = m.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    outs = [sess.run(None, {k: v[i * b:(i + 1) * b] if v.ndim else v for k, v in feeds.items()})
            for i in range(rows // b)]
    ref = {o.name: np.concatenate([r[j] for r in outs]) for j, o in enumerate(m.graph.output)}
    return ours, ref


def _close(got, ref, bits=16, k=8):  # noqa: ANN001
    step = max(float(np.ptp(ref)), 1e-6) / ((1 << bits) - 1)
    assert np.abs(got - ref).max() <= k * step, (np.abs(got - ref).max(), step)


@pytest.mark.parametrize("axis_last", [False, True])
def test_masked_mean_pooling_matches_onnxruntime(axis_last: bool) -> None:
    """``axis_last`` reduces over the last axis after a Transpose (what this family needs of the reductions);
    without it ReduceSum runs over axis 1 as sentence-transformers writes it (once skipped while reductions over
    an inner axis are refused: another family's op)."""
    red = ["ReduceSum", "ReduceSum"]
    pre = []
    if axis_last:
        pre = [helper.make_node("Transpose", ["hm0"], ["hm"], perm=[0, 2, 1]),
               helper.make_node("Transpose", ["mf"], ["mfT"], perm=[0, 2, 1])]
    nodes = [
        helper.make_node("Unsqueeze", ["mask", "ax_last"], ["m3"]),
        helper.make_node("Shape", ["h"], ["hs"]),
        helper.make_node("Expand", ["m3", "hs"], ["me"]),
        helper.make_node("Cast", ["me"], ["mf"], to=F32),
        helper.make_node("Mul", ["h", "mf"], ["hm0" if axis_last else "hm"]),
        *pre,
        helper.make_node(red[0], ["hm", "axr"], ["num"], keepdims=0),
        helper.make_node(red[1], ["mfT" if axis_last else "mf", "axr"], ["den0"], keepdims=0),
        helper.make_node("Clip", ["den0", "eps"], ["den"]),
        helper.make_node("Div", ["num", "den"], ["pooled"]),
    ]
    m = _model(nodes, [("h", F32, [1, 6, 8]), ("mask", I64, [1, 6])], [("pooled", F32, [1, 8])],
               [("ax_last", np.array([-1], np.int64)), ("axr", np.array([-1 if axis_last else 1], np.int64)),
                ("eps", np.array(1e-9, np.float32))])
    rng = np.random.default_rng(0)

    def data(rows: int) -> dict[str, np.ndarray]:
        lengths = rng.integers(1, 7, rows)
        mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.int64)
        return {"h": rng.standard_normal((rows, 6, 8)).astype(np.float32), "mask": mask}

    feeds = data(6)
    calib = {k: np.concatenate([v, feeds[k]]) for k, v in data(26).items()}  # no held-out saturation
    ours, ref = _run(m, calib, feeds)
    _close(ours["pooled"], ref["pooled"], k=64)


def test_integer_chain_is_exact() -> None:
    """ids != pad -> CumSum -> * mask -> + offset, Less against a bound, Where, Not, Xor: integer/bool outputs."""
    nodes = [
        helper.make_node("Equal", ["ids", "pad"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["keep_i"], to=I64),
        helper.make_node("CumSum", ["keep_i", "one"], ["cs"]),
        helper.make_node("Mul", ["cs", "keep_i"], ["pos0"]),
        helper.make_node("Add", ["pos0", "pad"], ["pos"]),
        helper.make_node("Less", ["pos", "four"], ["early"]),
        helper.make_node("Where", ["early", "ids", "pos"], ["mix"]),
        helper.make_node("Xor", ["early", "keep"], ["x"]),
        helper.make_node("Trilu", ["mix"], ["lowtri"], upper=0),
    ]
    m = _model(nodes, [("ids", I64, [1, 5])],
               [("pos", I64, [1, 5]), ("early", BOOL, [1, 5]), ("mix", I64, [1, 5]), ("x", BOOL, [1, 5]),
                ("lowtri", I64, [1, 5])],
               [("pad", np.array(1, np.int64)), ("one", np.array(1, np.int64)), ("four", np.array(4, np.int64))])
    rng = np.random.default_rng(1)
    calib = {"ids": rng.integers(0, 20, (16, 5))}
    feeds = {"ids": np.array([[5, 7, 1, 1, 1], [1, 19, 3, 4, 1], [2, 2, 2, 2, 2]], np.int64)}
    ours, ref = _run(m, calib, feeds)
    for k in ("pos", "early", "mix", "x", "lowtri"):
        assert np.array_equal(ours[k], ref[k].astype(np.float64)), k


def test_bool_and_signed_integer_inputs() -> None:
    """Bool inputs and int32 inputs holding negatives: And/Or, GreaterOrEqual, Cast to int8 (wrap-around)."""
    nodes = [
        helper.make_node("And", ["a", "b"], ["both"]),
        helper.make_node("Or", ["a", "b"], ["any"]),
        helper.make_node("GreaterOrEqual", ["n", "zero"], ["nonneg"]),
        helper.make_node("Mul", ["n", "n"], ["sq"]),
        helper.make_node("Cast", ["sq"], ["sq8"], to=TensorProto.INT8),
        helper.make_node("Where", ["both", "n", "sq"], ["sel"]),
    ]
    m = _model(nodes, [("a", BOOL, [1, 4]), ("b", BOOL, [1, 4]), ("n", TensorProto.INT32, [1, 4])],
               [("both", BOOL, [1, 4]), ("any", BOOL, [1, 4]), ("nonneg", BOOL, [1, 4]),
                ("sq8", TensorProto.INT8, [1, 4]), ("sel", TensorProto.INT32, [1, 4])],
               [("zero", np.array(0, np.int32))])
    rng = np.random.default_rng(2)

    def data(rows: int) -> dict[str, np.ndarray]:
        return {"a": rng.integers(0, 2, (rows, 4)).astype(bool), "b": rng.integers(0, 2, (rows, 4)).astype(bool),
                "n": rng.integers(-20, 21, (rows, 4)).astype(np.int32)}

    calib = data(16)
    calib["n"][0, :2] = [-20, 20]
    ours, ref = _run(m, calib, data(4))
    for k in ("both", "any", "nonneg", "sq8", "sel"):
        assert np.array_equal(ours[k], ref[k].astype(np.float64)), k


def test_activation_comparisons_where_and_casts() -> None:
    """Float activations: Greater of two activations, LessOrEqual against a constant tensor, Where by that
    dynamic condition between an activation and a constant, Cast float -> int32 (truncation toward zero),
    Trilu with k from an input, IsNaN folded to false."""
    nodes = [
        helper.make_node("Greater", ["x", "y"], ["gt"]),
        helper.make_node("LessOrEqual", ["x", "c"], ["le"]),
        helper.make_node("Where", ["le", "x", "half"], ["w"]),
        helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT32),
        helper.make_node("Trilu", ["y", "k"], ["tri"], upper=1),
        helper.make_node("IsNaN", ["x"], ["nan"]),
        helper.make_node("CumSum", ["y", "ax"], ["cy"], reverse=1),
    ]
    m = _model(nodes, [("x", F32, [1, 3, 4]), ("y", F32, [1, 3, 4]), ("k", I64, [])],
               [("gt", BOOL, [1, 3, 4]), ("le", BOOL, [1, 3, 4]), ("w", F32, [1, 3, 4]),
                ("xi", TensorProto.INT32, [1, 3, 4]), ("tri", F32, [1, 3, 4]), ("nan", BOOL, [1, 3, 4]),
                ("cy", F32, [1, 3, 4])],
               [("c", np.array([-1.25, 0.25, 1.75, 3.25], np.float32)), ("half", np.array(0.5, np.float32)),
                ("ax", np.array(-1, np.int64))])
    rng = np.random.default_rng(3)
    # values on a grid of 0.5 offset by 0.25: never within a code step of an integer, nor of each other
    x = (rng.integers(-8, 8, (1, 3, 4)) * 0.5 + 0.25).astype(np.float32)
    y = x + rng.choice([-1.0, 1.0], x.shape).astype(np.float32)
    feeds = {"x": x, "y": y, "k": np.array(-1, np.int64)}  # a scalar input: one row per run
    ours, ref = _run(m, feeds, feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=16, calibration=feeds, passes="", progress=False)
    assert any("IsNaN" in note for note in art.manifest["frontend"]["notes"])
    for k in ("gt", "le", "xi", "nan"):
        assert np.array_equal(ours[k], ref[k].astype(np.float64)), k
    for k in ("w", "tri", "cy"):
        _close(ours[k], ref[k])


def test_input_dependent_range_is_refused() -> None:
    m = _model([helper.make_node("Range", ["s", "l", "d"], ["r"])],
               [("s", I64, []), ("l", I64, []), ("d", I64, [])], [("r", I64, [None])])
    feeds = {"s": np.array(0, np.int64), "l": np.array(5, np.int64), "d": np.array(1, np.int64)}
    with pytest.raises(LasercError, match="Range.*length"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lasercc.compile(m, target="numpy", bits=16, calibration=feeds, passes="", progress=False)


def test_cast_of_a_quantized_tensor_reads_its_integers() -> None:
    """Cast(QuantizeLinear(x)) is the integer q itself (code - shift), not the dequantized real value."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("Cast", ["q"], ["qf"], to=F32),
             helper.make_node("Cast", ["q"], ["qi"], to=TensorProto.INT32)]
    m = _model(nodes, [("x", F32, [1, 6])], [("qf", F32, [1, 6]), ("qi", TensorProto.INT32, [1, 6])],
               [("s", np.array(0.05, np.float32)), ("z", np.array(-3, np.int8))])
    x = np.random.default_rng(4).standard_normal((4, 6)).astype(np.float32)
    ours, ref = _run(m, {"x": x}, {"x": x})
    for k in ("qf", "qi"):
        assert np.array_equal(ours[k], ref[k].astype(np.float64)), k


@pytest.mark.parametrize(("op", "dt"), [("Div", TensorProto.INT8), ("Div", TensorProto.INT32),
                                        ("Pow", TensorProto.INT32), ("Div", TensorProto.UINT16)])
def test_integer_by_integer_div_and_pow_are_exact(op: str, dt: int) -> None:
    """Div (truncating toward zero) and Pow of two integer inputs: one exact table on the pair's index, bit for
    bit what onnxruntime computes, negative operands included (int8 spans its whole range: 2^16 pairs)."""
    npdt = helper.tensor_dtype_to_np_dtype(dt)
    m = _model([helper.make_node(op, ["x", "y"], ["z"])], [("x", dt, [1, 64]), ("y", dt, [1, 64])],
               [("z", dt, [1, 64])])
    rng = np.random.default_rng(5)
    lo = 0 if np.dtype(npdt).kind == "u" else -100
    x = rng.integers(lo, 101, (8, 64)).astype(npdt)
    y = (rng.integers(0 if lo == 0 else -4, 5, (8, 64)) if op == "Pow" else rng.integers(1, 9, (8, 64))).astype(npdt)
    if op == "Div" and lo < 0:
        y = np.where(rng.random((8, 64)) < 0.5, -y, y).astype(npdt)
    if op == "Pow":
        x = (x % 9 - 4).astype(npdt)  # |x|^4 stays small; a negative exponent leaves +-1 and truncates the rest
        y = np.where((x == 0) & (y < 0), -y, y).astype(npdt)  # 0 ** -k is undefined (onnxruntime: INT_MIN)
    ours, ref = _run(m, {"x": x, "y": y}, {"x": x, "y": y})
    assert np.array_equal(ours["z"], ref["z"])


def test_integer_div_of_wide_operands_is_refused() -> None:
    """int16 data seen negative is typed by its dtype's whole range: 2^32 pairs, more than one table."""
    m = _model([helper.make_node("Div", ["x", "y"], ["z"])], [("x", TensorProto.INT16, [1, 4]),
                                                              ("y", TensorProto.INT16, [1, 4])],
               [("z", TensorProto.INT16, [1, 4])])
    x = np.array([[-3, 5, 7, -9]], np.int16)
    with pytest.raises(LasercError, match="pairs"):
        _run(m, {"x": x, "y": x}, {"x": x, "y": x})


@pytest.mark.parametrize("which", ["min", "max", "both", "min_const_max"])
def test_integer_clip_by_run_time_bounds_is_exact(which: str) -> None:
    """Clip of int8 data by scalar bounds fed as inputs (one pair per row, ``lo > hi`` included: then ``hi``),
    exactly what onnxruntime computes row by row."""
    dt = TensorProto.INT8
    names = {"min": ["x", "lo"], "max": ["x", "", "hi"], "both": ["x", "lo", "hi"],
             "min_const_max": ["x", "lo", "c"]}[which]
    ins = [("x", dt, [1, 32])] + [(k, dt, []) for k in ("lo", "hi") if k in names]
    m = _model([helper.make_node("Clip", names, ["y"])], ins, [("y", dt, [1, 32])],
               [("c", np.array(3, np.int8))] if "c" in names else ())
    rng = np.random.default_rng(7)
    feeds = {"x": rng.integers(-100, 101, (8, 32)).astype(np.int8)}
    if "lo" in names:
        feeds["lo"] = rng.integers(-20, 10, 8).astype(np.int8)  # a 1-D array of scalar samples, one per row
    if "hi" in names:
        feeds["hi"] = rng.integers(-10, 20, 8).astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=16, calibration=feeds, passes="", progress=False)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = [{k: (v[i:i + 1] if k == "x" else np.asarray(v[i])) for k, v in feeds.items()} for i in range(8)]
    got = np.concatenate([next(iter(art.run(r).values())) for r in rows])
    ref = np.concatenate([sess.run(None, r)[0] for r in rows])
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_dropout_with_run_time_training_mode(ratio: float) -> None:
    """Dropout whose training_mode is a graph input: with a constant ratio of 0 nothing is dropped in either mode
    (the identity, mask all true: onnxruntime agrees in training mode); with a nonzero ratio the output would be
    random in training, so it is refused."""
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"])],
               [("x", F32, [1, 8]), ("t", BOOL, [])], [("y", F32, [1, 8]), ("mask", BOOL, [1, 8])],
               [("r", np.array(ratio, np.float32))])
    x = np.random.default_rng(8).standard_normal((1, 8)).astype(np.float32)
    feeds = {"x": x, "t": np.array(True)}
    if ratio:
        with pytest.raises(LasercError, match="training_mode"):
            _run(m, feeds, feeds)
        return
    ours, ref = _run(m, feeds, feeds)
    assert np.array_equal(ours["mask"], ref["mask"]) and ref["mask"].all()
    _close(ours["y"], ref["y"])
