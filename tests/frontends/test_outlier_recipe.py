"""The outlier recipe for 8-bit activations: SmoothQuant copies of normalisations, 16-bit outlier summands.

A two-block post-LN residual stream (BERT's shape) in which the normalisation gain has one outlier channel
(20x, as BERT's LayerNorm outputs have) and the second block's linear layer writes one (40x, as BERT's
FFN-down output does). References are independent: onnxruntime for the float function of the transformed
model, NumPy min/max for the per-channel calibration statistics, onnxruntime float for fidelity.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import make_model, vi
from onnx import helper, numpy_helper

import lasercc
from lasercc.errors import LasercError
from lasercc.frontends.onnx import smooth
from lasercc.frontends.onnx.calibrate import run_calibration

ROWS, D = 4, 32


def outlier_model(transposed_gemm: bool = False) -> onnx.ModelProto:
    """x -> h = LN0(x) [gain: channel 0 x20] -> res = h + (h @ W1 + b1) -> y2 = LN1(res)
    -> res2 = y2 + y2 @ W2 [column 0 x40] -> y = LN1(res2). ``transposed_gemm``: W1 as Gemm(transB=1)."""
    rng = np.random.default_rng(5)
    g0 = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    g0[0] = 20.0
    w2 = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
    w2[:, 0] *= 40.0
    w1 = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
    inits = {"g0": g0, "b0": (0.1 * rng.standard_normal(D)).astype(np.float32),
             "W1": w1.T.copy() if transposed_gemm else w1, "b1": (0.1 * rng.standard_normal(D)).astype(np.float32),
             "W2": w2, "g": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
             "b": (0.1 * rng.standard_normal(D)).astype(np.float32)}
    first = [helper.make_node("Gemm", ["h", "W1", "b1"], ["mm1"], name="mm1", transB=1)] if transposed_gemm else \
        [helper.make_node("MatMul", ["h", "W1"], ["mm1_"], name="mm1"),
         helper.make_node("Add", ["mm1_", "b1"], ["mm1"], name="bias1")]
    nodes = [helper.make_node("LayerNormalization", ["x", "g0", "b0"], ["h"], name="ln0", axis=-1),
             *first,
             helper.make_node("Add", ["h", "mm1"], ["res"], name="res"),
             helper.make_node("LayerNormalization", ["res", "g", "b"], ["y2"], name="ln1", axis=-1),
             helper.make_node("MatMul", ["y2", "W2"], ["m2"], name="mm2"),
             helper.make_node("Add", ["y2", "m2"], ["res2"], name="res2"),
             helper.make_node("LayerNormalization", ["res2", "g", "b"], ["y"], name="ln2", axis=-1)]
    return make_model(nodes, [vi("x", [ROWS, D])], [vi("y", [ROWS, D])], inits)


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n * ROWS, D)).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray, extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in extra:
        m.graph.output.append(onnx.ValueInfoProto(name=t))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"x": x[i:i + ROWS]}) for i in range(0, len(x), ROWS)]
    return [np.concatenate([o[k] for o in outs]) for k in range(1 + len(extra))]


def _channel_range(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return v.min(axis=0), v.max(axis=0)


def _ratio(v: np.ndarray) -> float:
    a = np.abs(v).max(axis=0)
    return float(a.max() / np.median(a))


@pytest.mark.parametrize("transposed_gemm", [False, True])
def test_smoothing_keeps_the_float_function_and_flattens_the_channels(transposed_gemm):
    model = outlier_model(transposed_gemm)
    x = _data(16, 0)
    want, h, y2 = _run(model, x, ("h", "y2"))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    sites = smooth.sites(model, set(consts), {k: v.shape for k, v in consts.items()})
    assert [s.tensor for s in sites] == ["h", "y2"]  # ln2's output is the graph output: no linear consumer
    m = onnx.ModelProto()
    m.CopyFrom(model)
    sites = smooth.sites(m, set(consts), {k: v.shape for k, v in consts.items()})
    done, new = smooth.apply(m, consts, sites, {"h": _channel_range(h), "y2": _channel_range(y2)})
    onnx.checker.check_model(m)
    assert [d.tensor for d in done] == ["h", "y2"]
    assert {"g0.smooth", "b0.smooth", "W1.smooth", "W2.smooth"} <= set(new)
    got, hs = _run(m, x, (done[0].copy,))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # same float function (float32 rounding only)
    # the residual Add still reads the unsmoothed h; only the linear consumer reads the copy
    consumers = {n.name: list(n.input) for n in m.graph.node}
    assert consumers["res"][0] == "h" and consumers["mm1"][0] == done[0].copy
    # the copy is h / s: its outlier channel is flattened, and its derived range is the observed one
    np.testing.assert_allclose(hs, h / done[0].scale, rtol=1e-4, atol=1e-4)
    assert _ratio(hs) < 0.5 * _ratio(h), (_ratio(hs), _ratio(h))
    lo, hi = done[0].range
    assert lo == pytest.approx(float(hs.min()), rel=1e-4, abs=1e-5)
    assert hi == pytest.approx(float(hs.max()), rel=1e-4, abs=1e-5)


def test_scales_follow_the_smoothquant_rule():
    s = smooth.scales(np.array([16.0, 1.0, 0.0]), np.array([0.25, 1.0, 2.0]), 0.5)
    np.testing.assert_allclose(s, [4.0 / 0.5, 1.0, 1.0])  # sqrt(16)/sqrt(0.25); a zero channel keeps 1


def test_per_channel_calibration_ranges_match_numpy():
    model = outlier_model()
    x = _data(6, 2)
    h, m2 = _run(model, x, ("h", "m2"))[1:]
    st = run_calibration(model, {"x": x}, {"x": (np.dtype(np.float32), (ROWS, D))}, ["h", "m2"], set(),
                         channels={"h", "m2"})
    for name, v in (("h", h), ("m2", m2)):
        lo, hi = st.channel_range(name)
        np.testing.assert_allclose(lo, v.min(axis=0), rtol=1e-6)
        np.testing.assert_allclose(hi, v.max(axis=0), rtol=1e-6)
        amax = np.maximum(np.abs(v.min(axis=0)), np.abs(v.max(axis=0)))
        assert st.outlier_ratio(name) == pytest.approx(amax.max() / np.median(amax), rel=1e-6)
    assert st.channel_range("mm1") is None and st.outlier_ratio("mm1") is None  # not asked for


def _compile(model: onnx.ModelProto, **kw) -> lasercc.Artifact:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(model, bits=8, calibration={"x": _data(16, 0)}, progress=False, **kw)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def test_default_recipe_at_8_bits_widens_outlier_summands_and_tracks_float_better():
    model = outlier_model()
    art = _compile(model)
    fi = art.manifest["frontend"]
    assert fi["smooth"] == 0.5 and fi["residual_bits"] == 16
    assert [s.split(" ")[0] for s in fi["smoothed"]] == ["h", "y2"]
    # summands with outlier channels: h (the LN0 gain's) and m2 (W2's column); mm1 and y2 have none
    assert set(fi["residual_widened"]) == {"h", "m2"}
    g = art.graph
    assert g.type_of(art.tensor_map["h"]).bits == 16 and g.type_of(art.tensor_map["m2"]).bits == 16
    assert g.type_of(art.tensor_map["mm1"]).bits == 8
    assert g.type_of(art.tensor_map["h.smooth"]).bits == 8  # what the linear layer reads stays 8-bit
    x = _data(8, 1)
    want = _run(model, x)[0]
    on = _cos(next(iter(art.run({"x": x}).values())), want)
    off_art = _compile(model, smooth=0, residual_bits=8)
    assert "smoothed" not in off_art.manifest["frontend"] and "residual_widened" not in off_art.manifest["frontend"]
    assert all(g2.type.bits <= 8 for g2 in off_art.graph.nodes if g2.name in (off_art.tensor_map["h"],
                                                                                off_art.tensor_map["m2"]))
    off = _cos(next(iter(off_art.run({"x": x}).values())), want)
    assert (1 - on) < 0.5 * (1 - off), (on, off)


def test_recipe_is_off_by_default_at_16_bits_and_options_are_checked():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a16 = lasercc.compile(outlier_model(), bits=16, calibration={"x": _data(4, 0)}, progress=False)
    fi = a16.manifest["frontend"]
    assert fi["smooth"] is None and fi["residual_bits"] is None and "smoothed" not in fi
    with pytest.raises(LasercError, match="smooth"):
        _compile(outlier_model(), smooth=1.5)
    with pytest.raises(LasercError, match="residual_bits"):
        _compile(outlier_model(), residual_bits=12)


def test_tensor_bits_pins_named_tensors_and_refuses_unknown_names():
    model = outlier_model()
    art = _compile(model, smooth=0, residual_bits=8, tensor_bits={"mm1": 16, "m2": 12})
    g = art.graph
    assert g.type_of(art.tensor_map["mm1"]).bits == 16 and g.type_of(art.tensor_map["m2"]).bits == 12
    assert g.type_of(art.tensor_map["h"]).bits == 8  # untouched
    assert art.manifest["frontend"]["tensor_bits"] == {"mm1": 16, "m2": 12}
    with pytest.raises(LasercError, match="not activations of the model: W1, nope"):
        _compile(model, tensor_bits={"nope": 16, "W1": 16})
    with pytest.raises(LasercError, match="from 2 to 16"):
        _compile(model, tensor_bits={"mm1": 17})


def test_cli_compile_takes_the_recipe_options(tmp_path):
    from lasercc.cli import main

    path = tmp_path / "m.onnx"
    onnx.save(outlier_model(), path)
    np.savez(tmp_path / "c.npz", x=_data(8, 0))
    out = tmp_path / "art"
    rc = main(["compile", str(path), "-o", str(out), "--bits", "8", "--calibration", str(tmp_path / "c.npz"),
               "--smooth", "0", "--residual-bits", "16", "--tensor-bits", "mm1=16", "-q"])
    assert rc == 0
    art = lasercc.load(out)
    fi = art.manifest["frontend"]
    assert fi["smooth"] is None and fi["residual_bits"] == 16 and fi["tensor_bits"] == {"mm1": 16}
    assert set(fi["residual_widened"]) == {"h", "m2"}
