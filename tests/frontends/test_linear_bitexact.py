"""Bit-exactness of the linear path against onnxruntime (docs/contract.md sections 3 and 8).

For QDQ and QOperator models from ``onnxruntime.quantization`` (uint8 and int8 activations,
per-tensor and per-channel int8 weights) every compiled Soma / DecodeMAC that corresponds to an
integer tensor of the ONNX model is fed the quantized input tensor onnxruntime itself produced
(exposed as extra graph outputs) and must reproduce onnxruntime's quantized output exactly in
``ort`` requantization mode: 0 mismatching codes. QLinearAdd is compared with +-1 LSB (onnxruntime
uses platform-specific fused multiply-adds there, docs/contract.md section 3).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import linear_model, quantize

from lasercc.compiler import compile as compile_model
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import DecodeMAC, Input, Soma
from lasercc.runtime import run_graph

logging.getLogger().setLevel(logging.ERROR)
ROWS = 256


def _data(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n * ROWS, 64)).astype(np.float32)


def _int_tensors(model: onnx.ModelProto) -> list[str]:
    """Every integer activation tensor (QuantizeLinear / QLinear* / QGemm outputs, and data movement of those)."""
    out: list[str] = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "QGemm") or n.op_type.startswith("QLinear") \
                or (n.op_type == "Transpose" and n.input[0] in out):
            out.extend(n.output)
    return out


def _ort_values(path: Path, names: list[str], x: np.ndarray, elem: int) -> dict[str, np.ndarray]:
    m = onnx.load(path)
    have = {o.name for o in m.graph.output}
    for t in names:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, elem, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    return dict(zip(outs, sess.run(outs, {"x": x})))


def _single_node_graph(g: Graph, name: str, in_names: list[str]) -> Graph:
    node = g.node(name)
    ins = [Input(name=f"in{i}", type=g.type_of(v)) for i, v in enumerate(node.inputs)]
    moved = node.replace(inputs=tuple(f"in{i}" for i in range(len(node.inputs))))
    consts = {c: g.constants[c] for c in node.const_refs()}
    return Graph("one", tuple(ins) + (moved,), (name,), consts).verify()


CASES = [(fmt, act, pc) for fmt in ("qdq", "qoperator") for act in ("uint8", "int8") for pc in (False, True)]


@pytest.mark.parametrize(("fmt", "act", "per_channel"), CASES)
def test_linear_nodes_match_onnxruntime_bit_for_bit(tmp_path: Path, fmt: str, act: str, per_channel: bool) -> None:
    calib = {"x": _data(1, 2)}
    qpath = quantize(linear_model(ROWS), tmp_path, calib, ROWS, fmt, act, per_channel)
    art = compile_model(qpath, calibration=calib, progress=False)
    g = art.graph
    qmodel = onnx.load(qpath)
    ints = _int_tensors(qmodel)
    x = _data(7, 1)
    ref = _ort_values(qpath, ints, x, onnx.TensorProto.INT8 if act == "int8" else onnx.TensorProto.UINT8)
    # Where onnxruntime runs integer kernels with the tensors exposed (QOperator models; QDQ with uint8
    # activations, fused to QLinearMatMul/QGemm), exposing them changes nothing and we require 0
    # mismatches. With int8 QDQ activations onnxruntime rewrites s8->u8 to fuse the first MatMul only and
    # runs the rest as float ops between DQ and Q (float rounding): +-1 LSB there, most codes still equal.
    exact_required = fmt == "qoperator" or act == "uint8"
    if exact_required:
        plain = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_array_equal(ref[qmodel.graph.output[0].name], plain)

    signed = act == "int8"
    shift = 128 if signed else 0
    ir_of = art.tensor_map
    onnx_of = {}
    for t in ints:
        onnx_of.setdefault(ir_of.get(t), t)
    adds = {o for n in qmodel.graph.node if n.op_type == "QLinearAdd" for o in n.output}
    checked = exact = 0
    kinds = set()
    for t in ints:
        node_name = ir_of.get(t)
        if node_name is None or not isinstance(g.node(node_name), Soma | DecodeMAC):
            continue
        node = g.node(node_name)
        srcs = [onnx_of.get(i) for i in node.inputs]
        if any(s is None for s in srcs):
            continue
        feeds = {f"in{i}": ref[s].astype(np.int64) + shift for i, s in enumerate(srcs)}
        got = run_graph(_single_node_graph(g, node_name, srcs), feeds, collect_stats=False).codes[node_name]
        want = ref[t].astype(np.int64) + shift
        diff = np.abs(got - want)
        checked += got.size
        kinds.add(type(node).__name__)
        if t in adds or not exact_required:
            assert diff.max() <= 1, f"{t}: off by {diff.max()} LSB"
            assert np.mean(diff == 0) > 0.97, f"{t}: only {np.mean(diff == 0):.3f} of codes equal"
        else:
            assert int((diff != 0).sum()) == 0, f"{t} ({node.op}): {(diff != 0).sum()} of {diff.size} codes differ"
            exact += got.size
    assert kinds >= {"Soma", "DecodeMAC"}, kinds
    assert checked >= 10_000
    if exact_required:
        assert exact >= 10_000, f"only {exact} outputs compared bit-exactly"


def test_fixed_mode_difference_is_small_and_measured(tmp_path: Path) -> None:
    """'fixed' requantization (integer multiplier + shift) differs from 'ort' by at most 1 LSB here."""
    calib = {"x": _data(1, 2)}
    qpath = quantize(linear_model(ROWS), tmp_path, calib, ROWS, "qdq", "uint8", True)
    a = compile_model(qpath, calibration=calib, progress=False)
    b = compile_model(qpath, calibration=calib, requant="fixed", progress=False)
    x = {"x": _data(9, 1)}
    ca, cb = run_graph(a.graph, x).codes, run_graph(b.graph, x).codes
    for k in ca:
        d = np.abs(ca[k] - cb[k])
        assert d.max() <= 2 and d.mean() < 0.05, (k, d.max(), d.mean())
