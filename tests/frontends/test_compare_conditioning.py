"""``compare`` / ``simulate --compare-onnx`` against onnxruntime's own arithmetic, and the "onnxruntime vs itself"
figure (lasercc.frontends.onnx.conditioning): the perturbation reaches exactly the run-time quantizer inputs, a file
whose output rounding decides is reported as such, and a float file has no such figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from frontend_models import boundary_model, linear_model, quantize

import lasercc
from lasercc.cli import main
from lasercc.frontends.onnx.compare import compare
from lasercc.frontends.onnx.conditioning import EPS, perturb_quantizer_inputs
from lasercc.runtime import run_graph


def test_only_runtime_quantizer_inputs_are_perturbed() -> None:
    m, count = perturb_quantizer_inputs(boundary_model())
    assert count == 1  # Q(x * 1); Q(w) reads a constant
    muls = [n for n in m.graph.node if n.name.startswith("_lasercc_conditioning_")]
    assert len(muls) == 1 and muls[0].input[0] == "h"
    onnx.checker.check_model(m)
    factor = next(i for i in m.graph.initializer if i.name == muls[0].input[1])
    assert onnx.numpy_helper.to_array(factor) == np.float32(1 + EPS)


def test_a_float_file_is_left_as_it_is() -> None:
    m, count = perturb_quantizer_inputs(linear_model(16))
    assert count == 0 and m == linear_model(16)


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_perturbation_flips_exactly_the_boundary_codes() -> None:
    x = np.array([[2.5, 3.2, -1.7, 0.0]], np.float32)  # 2.5 rounds half to even (2); 2.5 (1 + 2^-20) rounds to 3
    np.testing.assert_array_equal(_run(boundary_model(), x), [[4.0, 6.0, -4.0, 0.0]])
    np.testing.assert_array_equal(_run(perturb_quantizer_inputs(boundary_model())[0], x), [[6.0, 6.0, -4.0, 0.0]])


def _compile(path: Path, x: np.ndarray) -> lasercc.Artifact:
    return lasercc.compile(path, calibration={"x": x}, progress=False)


def test_compare_reports_self_cosine_of_a_file_rounding_decides(tmp_path: Path) -> None:
    p = tmp_path / "b.onnx"
    onnx.save(boundary_model(), p)
    x = np.array([[0.5, 0.5, 0.5, 10.0]], np.float32)  # onnxruntime: codes 0 0 0 10; nudged: 1 1 1 10
    art = _compile(p, x)
    res = run_graph(art.graph, {"x": x}, collect_stats=False)
    m = compare(p, art.graph, {"x": x}, res.values, res.codes, art.manifest.get("onnx_outputs"))
    (d,) = m.values()
    expected = 400 / (20 * np.sqrt(3 * 4 + 400))  # cos([0,0,0,20], [2,2,2,20]) = 0.9853 < 0.995
    assert d["onnxruntime_self_cosine"] == pytest.approx(expected, rel=1e-6)
    # (lasercc's own cosine here is not the point: it first quantizes the float input x on its calibrated grid,
    # where 0.5 is no longer exactly a tie)


def test_simulate_says_when_a_file_is_decided_by_rounding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "b.onnx"
    onnx.save(boundary_model(), p)
    x = np.array([[0.5, 0.5, 0.5, 10.0]], np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["compile", str(p), "-o", str(tmp_path / "a"), "--calibration", str(tmp_path / "x.npz")]) == 0
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "a"), "-i", str(tmp_path / "x.npz"), "--compare-onnx", str(p)]) == 0
    out = capsys.readouterr().out
    assert "graph optimisations off" in out and "onnxruntime vs itself" in out
    assert "decided by float32 rounding" in out


def test_a_well_conditioned_quantized_file_and_a_float_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    fp = tmp_path / "lin.onnx"
    onnx.save(linear_model(16), fp)
    qp = quantize(linear_model(16), tmp_path, {"x": x}, 16)
    for path, quantized in ((fp, False), (qp, True)):
        art = _compile(Path(path), x)
        res = run_graph(art.graph, {"x": x[:16]}, collect_stats=False)
        (d,) = compare(path, art.graph, {"x": x[:16]}, res.values, res.codes,
                       art.manifest.get("onnx_outputs")).values()
        if quantized:
            assert d["onnxruntime_self_cosine"] > 0.9999 and d["cosine"] > 0.999
        else:
            assert d["onnxruntime_self_cosine"] is None


def test_onnx_optimized_needs_compare_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "b.onnx"
    onnx.save(boundary_model(), p)
    np.savez(tmp_path / "x.npz", x=np.ones((1, 4), np.float32))
    assert main(["compile", str(p), "-o", str(tmp_path / "a"), "--calibration", str(tmp_path / "x.npz")]) == 0
    assert main(["simulate", str(tmp_path / "a"), "-i", str(tmp_path / "x.npz"), "--onnx-optimized"]) == 2
    assert "--onnx-optimized applies to --compare-onnx only" in capsys.readouterr().err
