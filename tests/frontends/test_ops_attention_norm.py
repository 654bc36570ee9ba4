"""Standard Attention (opset 23), RotaryEmbedding, LayerNormalization and RMSNormalization against onnxruntime.

Tiny one-node models, compiled for the numpy target at 16 bits and compared within the node-test harness's
code-step tolerance (``lasercc.onnx_conformance.tolerance``).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.errors import LasercError
from lasercc.onnx_conformance import tolerance

F = TensorProto.FLOAT


def _model(node: onnx.NodeProto, inputs: list, outputs: list, inits: dict | None = None, opset: int = 23):
    g = helper.make_graph([node], "t", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _check(model: onnx.ModelProto, feeds: dict, bits: int = 16) -> None:
    from onnxruntime import InferenceSession

    want = InferenceSession(model.SerializeToString()).run(None, feeds)
    art = lasercc.compile(model, target="numpy", bits=bits, calibration=feeds, passes="", progress=False)
    got = art.run(feeds)
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    got = {onnx_of.get(k, k): v for k, v in got.items()}
    for o, w in zip(model.graph.output, want):
        g = np.asarray(got[o.name], np.float64)
        assert g.shape == w.shape, o.name
        tol, _ = tolerance(w, bits)
        assert np.abs(g - w).max() <= tol, (o.name, float(np.abs(g - w).max()), tol)


def test_attention_3d_gqa_causal_bool_mask_past_present() -> None:
    rng = np.random.default_rng(0)
    b, sq, skv, past, hq, hkv, d = 2, 3, 3, 2, 4, 2, 8
    feeds = {
        "Q": rng.standard_normal((b, sq, hq * d)).astype(np.float32),
        "K": rng.standard_normal((b, skv, hkv * d)).astype(np.float32),
        "V": rng.standard_normal((b, skv, hkv * d)).astype(np.float32),
        "M": rng.random((b, 1, sq, past + skv)) > 0.2,
        "PK": rng.standard_normal((b, hkv, past, d)).astype(np.float32),
        "PV": rng.standard_normal((b, hkv, past, d)).astype(np.float32),
    }
    feeds["M"][..., 0] = True
    node = helper.make_node("Attention", ["Q", "K", "V", "M", "PK", "PV"], ["Y", "present_key", "present_value"],
                            q_num_heads=hq, kv_num_heads=hkv, is_causal=1)
    ins = [helper.make_tensor_value_info(k, TensorProto.BOOL if k == "M" else F, v.shape) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info("Y", F, (b, sq, hq * d)),
            helper.make_tensor_value_info("present_key", F, (b, hkv, past + skv, d)),
            helper.make_tensor_value_info("present_value", F, (b, hkv, past + skv, d))]
    _check(_model(node, ins, outs), feeds)


def test_attention_4d_const_kv_float_mask_softcap_probs() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    k = rng.standard_normal((1, 2, 5, 8)).astype(np.float32)
    v = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)  # V head size differs from QK's
    m = (rng.standard_normal((4, 5)) * 0.5).astype(np.float32)
    m[:, 4] = -np.inf  # a key no query may see
    node = helper.make_node("Attention", ["Q", "K", "V", "M"], ["Y", "", "", "P"], softcap=2.0, scale=0.3,
                            qk_matmul_output_mode=3)
    model = _model(node, [helper.make_tensor_value_info("Q", F, q.shape)],
                   [helper.make_tensor_value_info("Y", F, (1, 2, 4, 6)), helper.make_tensor_value_info("P", F, None)],
                   {"K": k, "V": v, "M": m})
    _check(model, {"Q": q})


def test_attention_refuses_masked_biased_scores_output() -> None:
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y", "", "", "S"], is_causal=1, qk_matmul_output_mode=2)
    x = np.random.default_rng(2).standard_normal((1, 1, 3, 4)).astype(np.float32)
    model = _model(node, [helper.make_tensor_value_info(k, F, x.shape) for k in "QKV"],
                   [helper.make_tensor_value_info("Y", F, x.shape), helper.make_tensor_value_info("S", F, None)])
    with pytest.raises(LasercError, match="qk_matmul_output_mode=2"):
        lasercc.compile(model, target="numpy", bits=16, calibration={"Q": x, "K": x, "V": x}, passes="",
                        progress=False)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_constant_caches_input_positions(interleaved: int) -> None:
    rng = np.random.default_rng(3)
    b, s, h, d, r = 2, 3, 2, 8, 4
    pos_max = 16
    theta = np.arange(pos_max)[:, None] * (1.0 / 10000 ** (np.arange(r // 2) / (r // 2)))[None, :]
    x = rng.standard_normal((b, s, h * d)).astype(np.float32)
    pos = rng.integers(0, pos_max, (b, s)).astype(np.int64)
    node = helper.make_node("RotaryEmbedding", ["X", "C", "S", "P"], ["Y"], num_heads=h, rotary_embedding_dim=r,
                            interleaved=interleaved)
    model = _model(node, [helper.make_tensor_value_info("X", F, x.shape),
                          helper.make_tensor_value_info("P", TensorProto.INT64, pos.shape)],
                   [helper.make_tensor_value_info("Y", F, x.shape)],
                   {"C": np.cos(theta).astype(np.float32), "S": np.sin(theta).astype(np.float32)})
    _check(model, {"X": x, "P": pos})


def test_layernorm_axis1_activation_scale_mean_invstd() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 3, 5)) * 2 + 1).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    bias = rng.standard_normal((5,)).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["X", "W", "B"], ["Y", "Mean", "InvStdDev"], axis=-2)
    model = _model(node, [helper.make_tensor_value_info("X", F, x.shape),
                          helper.make_tensor_value_info("W", F, w.shape)],
                   [helper.make_tensor_value_info("Y", F, x.shape), helper.make_tensor_value_info("Mean", F, None),
                    helper.make_tensor_value_info("InvStdDev", F, None)], {"B": bias})
    _check(model, {"X": x, "W": w}, bits=16)


def test_rmsnorm_axis0() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    scale = rng.standard_normal((4,)).astype(np.float32)
    node = helper.make_node("RMSNormalization", ["X", "W"], ["Y"], axis=0, epsilon=1e-3)
    model = _model(node, [helper.make_tensor_value_info("X", F, x.shape)],
                   [helper.make_tensor_value_info("Y", F, x.shape)], {"W": scale})
    _check(model, {"X": x})


def test_attention_mask_computed_from_integer_input() -> None:
    """``(1 - Cast(mask)) * finfo.min`` from an integer input, unsqueezed: input-dependent masking."""
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 1, 3, 4)).astype(np.float32)
    mask = np.array([[[1, 1, 0]] * 3, [[1, 1, 1], [1, 0, 1], [0, 1, 1]]], np.int64)
    nodes = [helper.make_node("Cast", ["mask"], ["mf"], to=F), helper.make_node("Sub", ["one", "mf"], ["inv"]),
             helper.make_node("Mul", ["inv", "big"], ["add"]), helper.make_node("Unsqueeze", ["add", "ax"], ["add4"]),
             helper.make_node("Attention", ["Q", "Q", "Q", "add4"], ["Y"])]
    inits = {"one": np.array(1, np.float32), "big": np.array(-3.4e38, np.float32), "ax": np.array([1], np.int64)}
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("Q", F, q.shape),
                                       helper.make_tensor_value_info("mask", TensorProto.INT64, mask.shape)],
                          [helper.make_tensor_value_info("Y", F, q.shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    _check(model, {"Q": q, "mask": mask})


def test_layernorm_group_of_one_element_is_beta() -> None:
    """Normalising a single element gives exactly 0, so Y = B: the internal types must stay sane."""
    x = np.random.default_rng(7).standard_normal((3, 1)).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["X", "W", "B"], ["Y"], axis=-1)
    model = _model(node, [helper.make_tensor_value_info("X", F, x.shape)],
                   [helper.make_tensor_value_info("Y", F, x.shape)],
                   {"W": np.array([2.0], np.float32), "B": np.array([3.0], np.float32)})
    _check(model, {"X": x})
