"""Composed roundings: where one node after another, each within a step of its own grid, used to add up to a wrong
answer -- and the general rules that now prevent it (against onnxruntime or the exact float function).

* sums of activations choose their common scale by the result's step (``emit.common_scale``);
* a steep table gets the input width it needs, back through the nodes computing that input (``precision.py``);
* Attention refuses a context its probabilities' and V's grids alone cannot resolve (``ops_attention``).
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

RNG = np.random.default_rng(11)


def _model(nodes: list, inputs: dict[str, tuple], outputs: list[str], inits: dict | None = None,
           opset: int = 18) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()]
    g = helper.make_graph(nodes, "g", ins,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _compile(m: onnx.ModelProto, feeds: dict[str, np.ndarray], bits: int):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(m, target="numpy", bits=bits, calibration=feeds, passes="", progress=False)


def _outputs(m: onnx.ModelProto, feeds: dict[str, np.ndarray], bits: int) -> tuple[dict, dict, object]:
    from onnxruntime import InferenceSession

    want = dict(zip([o.name for o in m.graph.output], InferenceSession(m.SerializeToString()).run(None, feeds)))
    art = _compile(m, feeds, bits)
    run = art.run(feeds)
    got = {v["onnx"]: np.asarray(run[k]) for k, v in art.manifest["onnx_outputs"].items()}
    return want, got, art


def test_difference_of_16_bit_statistics_keeps_its_resolution() -> None:
    """``a - b`` of two 16-bit activations with unrelated scales, the result spanning less than either: the
    common scale follows the result's step (was: min(scale)/2^10, a weight error of 2^-11 of each operand's
    value -- 52 result steps in ONNX's LayerNormalization body). Within 2 steps of the exact difference."""
    a = np.linspace(0.58, 2.31, 64, dtype=np.float32).reshape(8, 8)
    b = (a - np.linspace(0.35, 1.16, 64, dtype=np.float32).reshape(8, 8) * 0.999).astype(np.float32)
    m = _model([helper.make_node("Sub", ["a", "b"], ["y"])], {"a": (8, 8), "b": (8, 8)}, ["y"])
    want, got, art = _outputs(m, {"a": a, "b": b}, 16)
    t = art.graph.type_of(art.graph.outputs[0])
    assert float(np.max(np.abs(got["y"] - want["y"]))) <= 2 * float(t.scale[0])


def _var_model() -> onnx.ModelProto:
    """InvStdDev as ONNX's LayerNormalization function body computes it: 1 / sqrt(E[x^2] - E[x]^2 + eps)."""
    nodes = [helper.make_node("ReduceMean", ["x", "ax"], ["mean"]), helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("ReduceMean", ["sq", "ax"], ["msq"]), helper.make_node("Mul", ["mean", "mean"], ["sqm"]),
             helper.make_node("Sub", ["msq", "sqm"], ["var"]), helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]), helper.make_node("Reciprocal", ["sd"], ["inv"])]
    return _model(nodes, {"x": (24, 5)}, ["inv"], {"ax": np.array([1], np.int64), "eps": np.array(1e-5, np.float32)})


def _rows_of_mixed_variance() -> np.ndarray:
    x = RNG.normal(size=(24, 5)).astype(np.float32)
    x[:6] *= 0.3  # a few rows of small variance: rsqrt's steep end
    return x


def test_steep_table_gets_the_input_width_it_needs() -> None:
    """At 8 bits the variance and the statistics under it are planned wider (the rsqrt table moves ~15 output
    steps per 8-bit input step at the smallest variance), and InvStdDev is within the 8-bit tolerance."""
    x = _rows_of_mixed_variance()
    m = _var_model()
    want, got, art = _outputs(m, {"x": x}, 8)
    tol, _ = tolerance(want["inv"], 8)
    assert float(np.max(np.abs(got["inv"] - want["inv"]))) <= tol
    width = {k: art.graph.type_of(v).bits for k, v in art.tensor_map.items() if v in {n.name for n in art.graph.nodes}}
    assert width["var"] > 8 and width["msq"] > 8 and width["sqm"] > 8


def test_without_the_planned_widths_the_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous test can fail: with every statistic at 8 bits the rsqrt table's own resolution check refuses
    the model (rounding the 8-bit variance alone moves InvStdDev by more than 8 steps)."""
    from lasercc.frontends.onnx import precision

    monkeypatch.setattr(precision, "demanded_bits", lambda L: {})
    with pytest.raises(LasercError, match="cannot resolve"):
        _compile(_var_model(), {"x": _rows_of_mixed_variance()}, 8)


def test_gentle_tables_change_no_width() -> None:
    """A table that moves about one output step per input step (tanh of a narrow range) plans nothing: its input
    keeps the default width."""
    x = RNG.uniform(-0.5, 0.5, size=(16, 8)).astype(np.float32)
    m = _model([helper.make_node("Tanh", ["x"], ["y"])], {"x": (16, 8)}, ["y"])
    art = _compile(m, {"x": x}, 8)
    enc = [n for n in art.graph.nodes if type(n).__name__ == "BSEEncode" and n.inputs == ("x",)]
    assert len(enc) == 1 and enc[0].type.bits == 8


def _attention(v: np.ndarray, softcap: float) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    q = RNG.uniform(0, 1, size=(1, 1, 4, 8)).astype(np.float32)
    k = RNG.uniform(0, 1, size=(1, 1, 6, 8)).astype(np.float32)
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], softcap=softcap)
    return _model([node], {"Q": q.shape, "K": k.shape, "V": v.shape}, ["Y"], opset=23), {"Q": q, "K": k, "V": v}


@pytest.mark.parametrize("bits", [16, 8])
def test_attention_output_at_a_large_offset_is_refused(bits: int) -> None:
    """ONNX's softcap "poison" rows (V = 1000) attended with ~1/6 each: Y spans ~5 at ~335, and the probabilities'
    and V's grids alone move it by hundreds of steps of that span -- refused by name, not a wrong answer."""
    v = RNG.uniform(0, 1, size=(1, 1, 6, 8)).astype(np.float32)
    v[:, :, 4:] = 1000.0
    m, feeds = _attention(v, 0.5)
    with pytest.raises(LasercError, match="attention output cannot be resolved"):
        _compile(m, feeds, bits)


@pytest.mark.parametrize("bits", [16, 8])
def test_attention_over_ordinary_values_is_not_refused(bits: int) -> None:
    """Attention over centred values (no softcap) compiles and is within tolerance."""
    m, feeds = _attention(RNG.normal(size=(1, 1, 6, 8)).astype(np.float32), 0.0)
    want, got, _ = _outputs(m, feeds, bits)
    tol, _ = tolerance(want["Y"], bits)
    assert float(np.max(np.abs(got["Y"] - want["Y"]))) <= tol


@pytest.mark.parametrize("bits", [16, 8])
def test_resolution_rule_is_no_looser_than_the_conformance_tolerance(bits: int) -> None:
    """What the refusals let through may still pass ONNX's node tests: common.resolution_limit of a range is at
    most the harness's K_N output steps of it."""
    from lasercc.frontends.onnx.common import resolution_limit
    from lasercc.onnx_conformance import STEPS_TOLERANCE

    assert resolution_limit(1.0, bits) <= STEPS_TOLERANCE[bits] / ((1 << bits) - 1)
