"""Float elementwise arithmetic and the generic unary-chain rule (frontends/onnx/chains.py, ops_elementwise.py).

Tiny models built with onnx.helper, compiled at 16 bits with no passes, run on the NumPy backend and
compared with onnxruntime within the conformance harness's tolerance: 64 code steps of the expected
output's range (lasercc/onnx_conformance.py). Structural checks say *how* each was lowered: a chain of
elementwise ops on one activation is one ASNC table, named after the function it is when it is one.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime import InferenceSession

import lasercc
from lasercc.ir.nodes import ASNCSegment, DecodeMAC

warnings.filterwarnings("ignore")
STEPS = 64


def _model(nodes, inputs, outputs, inits=(), opset=18):  # noqa: ANN001, ANN202
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _f(name: str, shape) -> onnx.ValueInfoProto:  # noqa: ANN001
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _c(name: str, v) -> onnx.TensorProto:  # noqa: ANN001
    return numpy_helper.from_array(np.asarray(v, np.float32), name)


def _run(model, feeds, bits: int = 16, passes: str = ""):  # noqa: ANN001, ANN202
    art = lasercc.compile(model, target="numpy", bits=bits, calibration=feeds, passes=passes, progress=False)
    ours = art.run(feeds)
    ref = InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for o, r in zip(model.graph.output, ref):
        got = np.asarray(ours[o.name], np.float64).reshape(r.shape)
        r = r.astype(np.float64)
        span = max(float(r.max() - r.min()), 1e-6)
        err = float(np.abs(got - r).max())
        assert err <= STEPS * span / ((1 << bits) - 1), (o.name, err, span)
    return art


def _asnc(art) -> list[ASNCSegment]:  # noqa: ANN001
    return [n for n in art.graph.nodes if isinstance(n, ASNCSegment)]


X = {"x": np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32) * 3}


def test_gelu_erf_chain_is_one_gelu_table():
    m = _model([helper.make_node("Div", ["x", "s2"], ["a"]), helper.make_node("Erf", ["a"], ["e"]),
                helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["x", "p"], ["q"]),
                helper.make_node("Mul", ["q", "half"], ["y"])],
               [_f("x", (4, 32))], [_f("y", (4, 32))], [_c("s2", np.sqrt(2)), _c("one", 1), _c("half", 0.5)])
    art = _run(m, X)
    assert [n.function for n in _asnc(art)] == ["gelu"]
    assert not [n for n in art.graph.nodes if isinstance(n, DecodeMAC)]


def test_tanh_gelu_chain_with_pow_is_one_table():
    k = np.sqrt(2 / np.pi)
    m = _model([helper.make_node("Pow", ["x", "three"], ["c"]), helper.make_node("Mul", ["c", "a"], ["ca"]),
                helper.make_node("Add", ["x", "ca"], ["s"]), helper.make_node("Mul", ["s", "k"], ["sk"]),
                helper.make_node("Tanh", ["sk"], ["t"]), helper.make_node("Add", ["t", "one"], ["p"]),
                helper.make_node("Mul", ["x", "half"], ["hx"]), helper.make_node("Mul", ["hx", "p"], ["y"])],
               [_f("x", (4, 32))], [_f("y", (4, 32))],
               [_c("three", 3), _c("a", 0.044715), _c("k", k), _c("one", 1), _c("half", 0.5)])
    art = _run(m, X)
    assert [n.function for n in _asnc(art)] == ["gelu_tanh"]


def test_silu_fan_out_is_one_table():
    m = _model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
               [_f("x", (4, 32))], [_f("y", (4, 32))])
    art = _run(m, X)
    assert [n.function for n in _asnc(art)] == ["silu"]


def test_unrecognised_chain_is_an_exact_onnx_chain_table_and_asnc_fit_fits_it(tmp_path):
    # log(x^2 + 1) * 0.5 + a NaN guard and a float16 Cast round trip: no registered function
    m = _model([helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Add", ["sq", "one"], ["p"]),
                helper.make_node("Log", ["p"], ["l"]), helper.make_node("IsNaN", ["l"], ["bad"]),
                helper.make_node("Where", ["bad", "zero", "l"], ["g"]),
                helper.make_node("Cast", ["g"], ["h"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["f", "half"], ["y"])],
               [_f("x", (4, 32))], [_f("y", (4, 32))], [_c("one", 1), _c("zero", 0), _c("half", 0.5)])
    art = _run(m, X)
    (n,) = _asnc(art)
    assert n.function == "onnx_chain" and len(art.graph.nodes) == 3  # input, encode, one table
    # the table survives save/load (its codes are its definition) and asnc-fit fits the loaded graph
    from lasercc.ir.artifact import load
    from lasercc.passes.asnc_fit import AsncFit

    loaded = load(art.save(tmp_path / "art"))
    assert np.array_equal(loaded.run(X)["y"], art.run(X)["y"])
    fitted = AsncFit().run(loaded.graph).graph
    (f,) = [k for k in fitted.nodes if isinstance(k, ASNCSegment)]
    assert f.function == "onnx_chain" and fitted.constants[f.slopes].size <= 32
    from lasercc.runtime import run_graph

    y = run_graph(fitted, X).values["y"]
    ref = 0.5 * np.log(X["x"].astype(np.float64) ** 2 + 1)
    assert np.abs(y - ref).max() < 0.02 * (ref.max() - ref.min())


def test_guard_alone_folds_away():
    m = _model([helper.make_node("IsNaN", ["x"], ["bad"]), helper.make_node("Where", ["bad", "zero", "x"], ["g"]),
                helper.make_node("Add", ["g", "b"], ["y"])],
               [_f("x", (4, 32)), _f("b", (4, 32))], [_f("y", (4, 32))], [_c("zero", 0)])
    art = _run(m, {"x": X["x"], "b": X["x"][::-1].copy()})
    assert not _asnc(art)  # the guard is the identity on every finite code: folded away
    m = _model([helper.make_node("IsInf", ["x"], ["inf"]),
                helper.make_node("Cast", ["inf"], ["f"], to=TensorProto.FLOAT),
                helper.make_node("Add", ["f", "b"], ["y"])],
               [_f("x", (4, 32)), _f("b", (4, 32))], [_f("y", (4, 32))])
    art = _run(m, {"x": X["x"], "b": X["x"][::-1].copy()})
    assert not _asnc(art)  # IsInf of finite codes is the constant false


def test_reciprocal_sqrt_log_of_signed_and_small_inputs():
    v = np.linspace(0.5, 4, 64, dtype=np.float32)
    x = {"x": np.concatenate([-v, v]).reshape(4, 32)}
    m = _model([helper.make_node("Reciprocal", ["x"], ["y"])], [_f("x", (4, 32))], [_f("y", (4, 32))])
    (n,) = _asnc(_run(m, x))
    assert n.function == "onnx_chain"  # the registered reciprocal is for positive divisors only
    pos = {"x": np.abs(x["x"]) + 0.5}
    for op in ("Sqrt", "Log", "Exp", "Softplus", "Erf", "Sin", "Abs"):
        _run(_model([helper.make_node(op, ["x"], ["y"])], [_f("x", (4, 32))], [_f("y", (4, 32))]), pos)


def test_div_by_sqrt_chain_is_one_reciprocal_table():
    rng = np.random.default_rng(2)
    feeds = {"a": rng.standard_normal((4, 32)).astype(np.float32),
             "v": rng.uniform(0.5, 4, (4, 1)).astype(np.float32)}
    m = _model([helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
                helper.make_node("Div", ["a", "s"], ["y"])],
               [_f("a", (4, 32)), _f("v", (4, 1))], [_f("y", (4, 32))], [_c("eps", 1e-5)])
    art = _run(m, feeds)
    (n,) = _asnc(art)
    assert n.function == "rsqrt" and n.params == pytest.approx((1e-5,))


def test_div_by_a_signed_activation():
    rng = np.random.default_rng(3)
    b = rng.uniform(1, 3, (4, 32)) * rng.choice([-1, 1], (4, 32))
    feeds = {"a": rng.standard_normal((4, 32)).astype(np.float32), "b": b.astype(np.float32)}
    m = _model([helper.make_node("Div", ["a", "b"], ["y"])], [_f("a", (4, 32)), _f("b", (4, 32))],
               [_f("y", (4, 32))])
    _run(m, feeds)


def test_pow_tensor_exponents():
    rng = np.random.default_rng(4)
    x = {"x": rng.uniform(0.5, 3, (2, 3)).astype(np.float32)}
    m = _model([helper.make_node("Pow", ["x", "p"], ["y"])], [_f("x", (2, 3))], [_f("y", (2, 3))],
               [_c("p", [1.0, 2.0, 3.0])])
    _run(m, x)  # one table per distinct exponent, selected per element
    feeds = {"x": x["x"], "p": rng.uniform(-1, 2, (2, 3)).astype(np.float32)}
    m = _model([helper.make_node("Pow", ["x", "p"], ["y"])], [_f("x", (2, 3)), _f("p", (2, 3))], [_f("y", (2, 3))])
    _run(m, feeds)  # exp(p * log x)


def test_clip_with_activation_bounds_and_scalar_broadcast():
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((4, 32)).astype(np.float32) * 2,
             "lo": np.array(-1.0, np.float32), "hi": np.array(0.5, np.float32)}
    m = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
               [_f("x", (4, 32)), _f("lo", ()), _f("hi", ())], [_f("y", (4, 32))])
    _run(m, feeds)
    m = _model([helper.make_node("Clip", ["x", "", "hi"], ["y"])], [_f("x", (4, 32))], [_f("y", (4, 32))],
               [_c("hi", 0.5)])
    _run(m, {"x": feeds["x"]})
    # a size-1 constant of higher rank broadcasts the chain's output shape
    m = _model([helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Tanh", ["a"], ["y"])],
               [_f("x", (4, 32))], [_f("y", (1, 4, 32))], [_c("c", np.full((1, 1, 1), 0.25))])
    _run(m, {"x": feeds["x"]})


def test_dropout_inference_and_mask_output():
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"])], [_f("x", (4, 32))],
               [_f("y", (4, 32)), helper.make_tensor_value_info("mask", TensorProto.BOOL, [4, 32])],
               [_c("r", 0.5), numpy_helper.from_array(np.array(False), "t")])
    art = lasercc.compile(m, target="numpy", bits=16, calibration=X, passes="", progress=False)
    out = art.run(X)
    assert np.asarray(out["mask"]).astype(bool).all()
    m2 = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"])], [_f("x", (4, 32))], [_f("y", (4, 32))],
                [_c("r", 0.5), numpy_helper.from_array(np.array(True), "t")])
    with pytest.raises(lasercc.LasercError, match="training mode"):
        lasercc.compile(m2, target="numpy", bits=16, calibration=X, passes="", progress=False)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_broadcasting_every_direction(op: str):
    """Activation-constant (the constant may broadcast the activation up), constant-activation and
    activation-activation, with 0-d, leading and inner size-1 axes."""
    rng = np.random.default_rng(6)
    for sa, sb in [((3, 1), (1, 4)), ((4,), (2, 3, 4)), ((), (2, 3))]:
        a = np.asarray(rng.standard_normal(sa), np.float32)
        b = np.asarray((np.abs(rng.standard_normal(sb)) + 0.5) * rng.choice([-1, 1], sb), np.float32)
        for live in ("ab", "a", "b"):
            ins = [_f(k, s) for k, s in (("a", sa), ("b", sb)) if k in live]
            inits = [_c(k, v) for k, v in (("a", a), ("b", b)) if k not in live]
            m = _model([helper.make_node(op, ["a", "b"], ["y"])], ins, [_f("y", np.broadcast_shapes(sa, sb))], inits)
            _run(m, {k: v for k, v in (("a", a), ("b", b)) if k in live})


def test_integer_div_and_pow_by_constants_are_exact():
    ids = helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])
    feeds = {"i": np.array([[0, 5, 9], [13, 20, 23]], np.int64)}
    for op, c in (("Div", np.array([1, 4, 7], np.int64)), ("Pow", np.array([2], np.int64))):
        m = _model([helper.make_node(op, ["i", "c"], ["y"])], [ids],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])], [numpy_helper.from_array(c, "c")])
        art = lasercc.compile(m, target="numpy", bits=16, calibration=feeds, passes="", progress=False)
        ref = InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert np.array_equal(np.asarray(art.run(feeds)["y"]).astype(np.int64), ref), op
