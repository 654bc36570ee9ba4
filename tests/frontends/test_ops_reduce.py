"""Reductions, Softmax/LogSoftmax, ArgMax/ArgMin and variadic Max/Min/Sum (ops_reduce.py) against onnxruntime.

Tiny one-node models; float outputs within the conformance harness's code-step tolerance
(``onnx_conformance.tolerance``), integer outputs (ArgMax, integer Max) exact.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.errors import LasercError
from lasercc.onnx_conformance import tolerance

RNG = np.random.default_rng(7)
X = RNG.normal(size=(2, 3, 4)).astype(np.float32)
NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}


def _model(op: str, inputs: dict[str, np.ndarray], attrs: dict | None = None, inits: dict | None = None,
           out_dtype=TensorProto.FLOAT, opset: int = 18, n_in: list[str] | None = None) -> onnx.ModelProto:  # noqa: ANN001
    names = n_in if n_in is not None else list(inputs) + list(inits or {})
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, NP2ONNX[v.dtype], v.shape)
                                        for k, v in inputs.items()],
                          [helper.make_tensor_value_info("y", out_dtype, None)],
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _check(m: onnx.ModelProto, feeds: dict[str, np.ndarray], bits: int = 16, spikes: bool = False) -> None:
    from onnxruntime import InferenceSession

    want = InferenceSession(m.SerializeToString()).run(None, feeds)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=bits, calibration=feeds, passes="", progress=False)
    got = np.asarray(next(iter(art.run(feeds).values())))
    assert got.shape == want.shape
    if want.dtype.kind in "iub":
        assert np.array_equal(got.astype(np.int64), want.astype(np.int64))
    else:
        tol, _ = tolerance(want, bits)
        assert float(np.max(np.abs(got - want))) <= tol
    if spikes:  # the bit-serial simulator steps the same codes
        a, b = art.run(feeds, output="codes"), art.run(feeds, mode="spikes", output="codes")
        for k in a:
            assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2",
                                "ReduceLogSumExp"])
@pytest.mark.parametrize("axes,keep", [([0], 1), ([-1], 0), ([0, 2], 1), (None, 0), ([1, -1], 0)])
def test_reduce_any_axes(op: str, axes: list[int] | None, keep: int) -> None:
    inits = {} if axes is None else {"axes": np.array(axes, np.int64)}
    _check(_model(op, {"x": X}, {"keepdims": keep}, inits), {"x": X})


def test_reduce_attribute_axes_opset13_and_noop() -> None:
    _check(_model("ReduceMax", {"x": X}, {"axes": [-2], "keepdims": 0}, opset=13), {"x": X})
    _check(_model("ReduceSum", {"x": X}, {"noop_with_empty_axes": 1}, {"axes": np.zeros(0, np.int64)}, opset=13),
           {"x": X})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis,opset", [(0, 13), (1, 13), (-1, 13), (1, 11), (0, 11)])
def test_softmax_any_axis(op: str, axis: int, opset: int) -> None:
    _check(_model(op, {"x": X * 3}, {"axis": axis}, opset=opset), {"x": X * 3})


def test_softmax_of_large_row_offsets_is_refused() -> None:
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], np.float32)
    for op in ("Softmax", "LogSoftmax"):
        with pytest.raises(LasercError, match="too coarse"):
            lasercc.compile(_model(op, {"x": x}), target="numpy", bits=16, calibration={"x": x}, passes="",
                            progress=False)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keep,last", [(0, 1, 0), (1, 0, 1), (-1, 1, 1), (2, 0, 0)])
def test_argmax_argmin_exact(op: str, axis: int, keep: int, last: int) -> None:
    x = RNG.integers(-3, 4, size=(2, 3, 4)).astype(np.float32)  # many exact ties: select_last_index matters
    m = _model(op, {"x": x}, {"axis": axis, "keepdims": keep, "select_last_index": last}, out_dtype=TensorProto.INT64)
    _check(m, {"x": x}, spikes=axis == 1)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_variadic_broadcast_and_constants(op: str) -> None:
    a, b = X, RNG.normal(size=(3, 1)).astype(np.float32) * 2
    _check(_model(op, {"a": a, "b": b}), {"a": a, "b": b}, spikes=True)
    c = np.linspace(-1, 1, 4, dtype=np.float32)
    _check(_model(op, {"a": a, "b": b}, inits={"c": c}), {"a": a, "b": b}, bits=8)
    _check(_model(op, {"b": b}, inits={"c": np.float32(0.25).reshape(())}), {"b": b})  # a relu-like clamp


def test_integer_max_min_are_exact() -> None:
    a = np.array([[3, 2, 1], [0, 7, 5]], np.int64)
    b = np.array([1, 4, 4], np.int64)
    for op in ("Max", "Min"):
        _check(_model(op, {"a": a, "b": b}, out_dtype=TensorProto.INT64), {"a": a, "b": b})
        _check(_model(op, {"a": a}, inits={"c": np.array(4, np.int64)}, out_dtype=TensorProto.INT64), {"a": a})


def test_sum_variadic_with_constant() -> None:
    a, b = X, X[:, :1] * 3
    _check(_model("Sum", {"a": a, "b": b}, inits={"c": np.float32([0.5, -1, 2, 0])}), {"a": a, "b": b})


def test_runtime_axes_are_refused_not_crashed() -> None:
    m = _model("ReduceSum", {"x": X, "axes": np.array([1], np.int64)})
    with pytest.raises(LasercError, match="axes"):
        lasercc.compile(m, target="numpy", bits=16, calibration={"x": X, "axes": np.array([1], np.int64)},
                        passes="", progress=False)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("axis", [1, -1])
def test_masked_softmax_any_axis_and_fully_masked_rows(dynamic: bool, axis: int) -> None:
    """An additive -1e9 mask (constant, or from an integer mask input) broadcast along axis 1: softmax along
    axis 1 meets rows masked throughout, where ONNX gives the uniform 1/K."""
    x = RNG.normal(size=(2, 5, 4)).astype(np.float32)
    keep = np.array([[[1, 1, 1, 0]], [[1, 1, 0, 0]]], np.int64)
    nodes = [helper.make_node("Sub", ["one", "mf"], ["inv"]), helper.make_node("Mul", ["inv", "big"], ["add"]),
             helper.make_node("Add", ["x", "add"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=axis)]
    inits = [numpy_helper.from_array(np.float32(1.0).reshape(()), "one"),
             numpy_helper.from_array(np.float32(-1e9).reshape(()), "big")]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)]
    feeds = {"x": x}
    if dynamic:
        nodes.insert(0, helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT))
        ins.append(helper.make_tensor_value_info("m", TensorProto.INT64, keep.shape))
        feeds["m"] = keep
    else:
        inits.append(numpy_helper.from_array(keep.astype(np.float32), "mf"))
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    _check(m, feeds)


def test_expanded_softmax_of_large_row_offsets_is_refused() -> None:
    """x - ReduceMax(x) of rows offset by 10^4: the Sub's operands round by more than its result spans."""
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], np.float32)
    nodes = [helper.make_node("ReduceMax", ["x", "ax"], ["m"], keepdims=1), helper.make_node("Sub", ["x", "m"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    with pytest.raises(LasercError, match="loses its precision"):
        lasercc.compile(m, target="numpy", bits=16, calibration={"x": x}, passes="", progress=False)


def _lse_model(x: np.ndarray, extra_out: str | None = None, cast_in: int | None = None) -> onnx.ModelProto:
    """ONNX's ReduceLogSumExp function body written out: Exp -> ReduceSum(axes=[1]) -> Log (optionally the Exp's
    input a Cast of the graph input, and an extra graph output)."""
    nodes = [helper.make_node("Exp", ["xf"], ["e"]), helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=0),
             helper.make_node("Log", ["s"], ["y"])]
    nodes.insert(0, helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT) if cast_in is not None
                 else helper.make_node("Identity", ["x"], ["xf"]))
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_out:
        outs.append(helper.make_tensor_value_info(extra_out, TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", cast_in or TensorProto.FLOAT, x.shape)], outs,
                          [numpy_helper.from_array(np.array([1], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("bits", [16, 8])
def test_log_of_summed_exps_is_log_sum_exp(bits: int) -> None:
    """Log(ReduceSum(Exp(x))) over rows of very different scales (one row near 10, one near -2): lowered as
    ReduceLogSumExp (row max shift), so the small row is not flushed by a sum grid spanning e^10. Written out
    node by node this was 448 output steps off at 16 bits (ONNX's *_random_expanded cases)."""
    x = np.array([[9.3, 8.1, 2.0, -1.0], [-2.3, -1.6, -2.0, -1.9], [0.5, 3.0, -0.5, 1.0]], np.float32)
    m = _lse_model(x)
    _check(m, {"x": x}, bits=bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=bits, calibration={"x": x}, passes="", progress=False)
    kinds = {type(n).__name__ for n in art.graph.nodes}
    assert "WTAMax" in kinds  # the max shift: the sum of exps never exists as a value


def test_log_sum_exp_keeps_an_exp_read_elsewhere() -> None:
    """The Exp is also a graph output: it stays (its own table), the Log still takes the log-domain route."""
    x = (RNG.normal(size=(4, 5)) * 3).astype(np.float32)
    m = _lse_model(x, extra_out="e")
    from onnxruntime import InferenceSession

    want = InferenceSession(m.SerializeToString()).run(None, {"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=16, calibration={"x": x}, passes="", progress=False)
    got = {v["onnx"]: art.run({"x": x})[k] for k, v in art.manifest["onnx_outputs"].items()}
    for name, w in zip(("y", "e"), want):
        tol, _ = tolerance(w, 16)
        assert float(np.max(np.abs(np.asarray(got[name]) - w))) <= tol, name


def test_log_sum_exp_of_cast_integer_data() -> None:
    """The Exp's input a Cast of an integer graph input (ONNX's function body casts too): same route, right values."""
    x = np.array([[0, 1, 2], [3, 1, 0]], np.int64)
    _check(_lse_model(x, cast_in=TensorProto.INT64), {"x": x})


def test_log_sum_exp_of_masked_scores_is_refused_not_crashed() -> None:
    """Exp of scores plus a -inf mask: a masked value, which reductions refuse by name (a library error)."""
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    mask = np.zeros((3, 4), np.float32)
    mask[:, 3] = -np.inf
    nodes = [helper.make_node("Add", ["x", "M"], ["xm"]), helper.make_node("Exp", ["xm"], ["e"]),
             helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=0), helper.make_node("Log", ["s"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1], np.int64), "ax"), numpy_helper.from_array(mask, "M")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    with pytest.raises(LasercError, match="masked"):
        lasercc.compile(m, target="numpy", bits=16, calibration={"x": x}, passes="", progress=False)
