"""The 8-bit outlier recipe through onnxruntime's fused ops (``optimize_model`` output).

A post-LN block as onnxruntime fuses it: ``h = SkipLayerNormalization(x, r, gamma [channel 0 x20], beta,
bias)`` read by a fused ``Attention`` (packed Q|K|V weight) and by ``MatMul -> BiasGelu -> MatMul``, whose
output goes back into the residual stream through a second SkipLayerNormalization. References are
independent: onnxruntime for the float function of the smoothed model and for the compiled model's outputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.frontends.onnx import smooth

SEQ, D, HEADS = 16, 32, 2
MS = "com.microsoft"


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def fused_block() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    vec = lambda s=0.1: (s * rng.standard_normal(D)).astype(np.float32)  # noqa: E731
    g0 = (1 + vec()).astype(np.float32)
    g0[0] = 20.0  # the systematic outlier channel a BERT LayerNorm output carries
    w2 = _w(rng, 4 * D, D)
    w2[:, 0] *= 40.0  # and the FFN-down output's
    inits = {"g0": g0, "be0": vec(), "bi0": vec(), "wqkv": _w(rng, D, 3 * D),
             "bqkv": (0.1 * rng.standard_normal(3 * D)).astype(np.float32), "W1": _w(rng, D, 4 * D),
             "b1": (0.1 * rng.standard_normal(4 * D)).astype(np.float32), "W2": w2,
             "g1": (1 + vec()).astype(np.float32), "be1": vec(), "bi1": vec()}
    nodes = [helper.make_node("SkipLayerNormalization", ["x", "r", "g0", "be0", "bi0"], ["h"], name="sln0",
                              domain=MS, epsilon=1e-12),
             helper.make_node("Attention", ["h", "wqkv", "bqkv"], ["a"], name="attn", domain=MS, num_heads=HEADS),
             helper.make_node("MatMul", ["h", "W1"], ["m1"], name="up"),
             helper.make_node("BiasGelu", ["m1", "b1"], ["gl"], name="gelu", domain=MS),
             helper.make_node("MatMul", ["gl", "W2"], ["m2"], name="down"),
             helper.make_node("SkipLayerNormalization", ["m2", "h", "g1", "be1", "bi1"], ["y"], name="sln1",
                              domain=MS, epsilon=1e-12)]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, SEQ, D])  # noqa: E731
    g = helper.make_graph(nodes, "fused", [vi("x"), vi("r")], [vi("a"), vi("y")],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    return m


def _feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((rows, SEQ, D)).astype(np.float32) for k in ("x", "r")}


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in extra:
        m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    n = len(feeds["x"])
    outs = [s.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def test_fused_norm_outputs_are_sites_and_smoothing_keeps_the_float_function():
    model = fused_block()
    feeds = _feeds(8, 0)
    a, y, h = _ort(model, feeds, ("h",))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    sites = smooth.sites(model, set(consts), {k: v.shape for k, v in consts.items()})
    # h feeds Attention (packed QKV weight) and the FFN-up MatMul; y is the graph output: no site
    assert [(s.tensor, sorted(k.name for k, _ in s.linear)) for s in sites] == [("h", ["attn", "up"])]
    hr = h.reshape(-1, D)
    done, new = smooth.apply(model, consts, sites, {"h": (hr.min(axis=0), hr.max(axis=0))})
    assert {"g0.smooth", "be0.smooth", "wqkv.smooth", "W1.smooth"} <= set(new)
    assert "bi0.smooth" not in new  # SkipLayerNormalization's bias is added before the normalisation
    a2, y2, hs = _ort(model, feeds, (done[0].copy,))
    np.testing.assert_allclose(a2, a, rtol=1e-4, atol=1e-4)  # same float function (float32 rounding only)
    np.testing.assert_allclose(y2, y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(hs, h / done[0].scale, rtol=1e-4, atol=1e-4)  # the copy is h / s
    amax = lambda v: np.abs(v.reshape(-1, D)).max(axis=0)  # noqa: E731
    assert amax(hs).max() / np.median(amax(hs)) < 0.5 * amax(h).max() / np.median(amax(h))
    readers = {n.name: n.input[0] for n in model.graph.node}
    assert readers["attn"] == readers["up"] == done[0].copy and readers["sln1"] == "m2"
    assert [n.input[1] for n in model.graph.node if n.name == "sln1"] == ["h"]  # the residual reads h itself


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def test_fused_block_at_8_bits_smooths_widens_and_tracks_onnxruntime():
    model = fused_block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(model, bits=8, calibration=_feeds(16, 0), progress=False)
    fi = art.manifest["frontend"]
    assert [s.split(" ")[0] for s in fi["smoothed"]] == ["h"]
    assert "2 linear consumer(s)" in fi["smoothed"][0]
    g, tm = art.graph, art.tensor_map
    assert g.type_of(tm["h.smooth"]).bits == 8  # what Attention and the FFN-up MatMul read stays 8-bit
    assert g.type_of(tm["m1"]).bits == 8
    # the residual stream is 16-bit: SkipLayerNormalization's activation operands (m2; h, also its skip) and
    # the input + skip + bias sums inside the fused normalisations (the smoothed copy repeats h's sum)
    assert g.type_of(tm["m2"]).bits == 16 and g.type_of(tm["h"]).bits == 16
    sums = {n.name for n in g.nodes if n.name.endswith(".sum") and not n.name.endswith("softmax.sum")}
    assert sums == {"h.sum", "h.smooth.sum", "y.sum"} and all(g.type_of(t).bits == 16 for t in sums), sums
    feeds = _feeds(4, 1)
    want = _ort(model, feeds)

    def cosines(a: lasercc.Artifact) -> list[float]:
        got = a.run(feeds)
        return [_cos(w, np.asarray(got[o])) for w, o in zip(want, a.graph.outputs, strict=True)]

    on = cosines(art)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off_art = lasercc.compile(model, bits=8, calibration=_feeds(16, 0), progress=False, smooth=0)
    assert "smoothed" not in off_art.manifest["frontend"]
    off = cosines(off_art)
    # 8-bit fidelity (the bar is 0.9); y also carries the 8-bit GELU output of a 40x-outlier FFN
    assert on[0] >= 0.99 and on[1] >= 0.98, on
    assert all(a > b for a, b in zip(on, off, strict=True)), (on, off)  # smoothing helps both outputs
