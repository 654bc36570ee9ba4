"""bench/_ort_conditioning.py: the perturbation reaches exactly the run-time inputs of quantizers, and moves a
value on a rounding boundary by one code while leaving the rest of the file's arithmetic alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import _ort_conditioning as oc  # noqa: E402


def _qdq_model() -> onnx.ModelProto:
    """y = DQ(Q(x * 1, scale 1)): a code per input; x = k + 0.5 sits on a rounding boundary (round half to even)."""
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    scale = numpy_helper.from_array(np.array(1.0, np.float32), "scale")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    w = numpy_helper.from_array(np.array([2.0], np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "one"], ["h"]),
             helper.make_node("QuantizeLinear", ["h", "scale", "zp"], ["q"]),
             helper.make_node("QuantizeLinear", ["w", "scale", "zp"], ["wq"]),  # a constant: never perturbed
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"]),
             helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["wdq"]),
             helper.make_node("Mul", ["dq", "wdq"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [one, scale, zp, w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_only_runtime_quantizer_inputs_are_perturbed() -> None:
    m, count = oc.perturb_quantizer_inputs(_qdq_model())
    assert count == 1
    muls = [n for n in m.graph.node if n.name.startswith("_ort_conditioning_")]
    assert len(muls) == 1 and muls[0].input[0] == "h"
    onnx.checker.check_model(m)


def test_a_boundary_value_flips_one_code_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_qdq_model(), str(path))
    x = np.array([[2.5, 3.2, -1.7, 0.0]], np.float32)  # 2.5 rounds to 2 (half to even); x(1+eps) rounds to 3
    ref = oc.run_rows(oc.session(path), {"x": x})["y"]
    got, count = oc.perturbed_outputs(path, {"x": x})
    assert count == 1
    np.testing.assert_array_equal(ref, [[4.0, 6.0, -4.0, 0.0]])
    np.testing.assert_array_equal(got["y"], [[6.0, 6.0, -4.0, 0.0]])
