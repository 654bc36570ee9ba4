"""Calibration data and weights that used to give silent wrong answers are refused or warned, by name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from frontend_models import make_model, vi
from onnx import helper

import lasercc
from lasercc.errors import LasercError


def _matmul(w: np.ndarray) -> object:
    return make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 4])], [vi("y", [2, 3])],
                      {"W": w})


def test_inf_matmul_weight_is_refused() -> None:
    w = np.ones((4, 3), np.float32)
    w[2, 1] = -np.inf
    with pytest.raises(LasercError, match=r"initializer 'W' holds infinity \(first at index \[2, 1\]\)"):
        lasercc.compile(_matmul(w), calibration={"x": np.ones((4, 4), np.float32)}, progress=False)


def test_nan_weight_is_refused_by_name() -> None:
    w = np.ones((4, 3), np.float32)
    w[0, 2] = np.nan
    with pytest.raises(LasercError, match=r"initializer 'W' holds NaN \(first at index \[0, 2\]\)"):
        lasercc.compile(_matmul(w), calibration={"x": np.ones((4, 4), np.float32)}, progress=False)


@pytest.mark.parametrize(("x", "message"), [
    (np.zeros((4, 4), np.float32), "calibration input 'x' is constant"),
    (np.full((4, 4), 3e38, np.float32) * np.array([1, -1, 1, 1], np.float32), r"holds values up to 3e\+38"),
])
def test_degenerate_calibration_warns(x: np.ndarray, message: str) -> None:
    with pytest.warns(UserWarning, match=message):
        try:
            lasercc.compile(_matmul(np.ones((4, 3), np.float32)), calibration={"x": x}, progress=False)
        except LasercError as e:  # 3e38: the float32 scale check refuses the absurd multiplier it yields
            assert "float32" in str(e)


def test_partly_nan_calibration_is_refused_with_row_count() -> None:
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    x[[1, 4], 2] = np.nan
    with pytest.raises(LasercError, match="'x' contains NaN or infinity in 2 of 6 row"):
        lasercc.compile(_matmul(np.ones((4, 3), np.float32)), calibration={"x": x}, progress=False)


def test_nan_computed_inside_the_model_is_reported(tmp_path: Path) -> None:
    """Sqrt of negative activations: onnxruntime computes NaN; its range used to drop them silently."""
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
                    helper.make_node("Sqrt", ["h"], ["y"], name="sqrt")], [vi("x", [2, 4])], [vi("y", [2, 3])],
                   {"W": np.eye(4, 3, dtype=np.float32)})
    x = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            lasercc.compile(m, calibration={"x": x}, progress=False)
        except LasercError:
            pass  # whether the lowering accepts the model is not the point here
    msgs = [str(w.message) for w in rec]
    assert any("computed NaN" in s and "y (" in s for s in msgs), msgs


def test_float_token_ids_are_refused() -> None:
    ids = np.zeros((2, 16), np.float64)
    model = Path(__file__).resolve().parents[2] / "examples" / "models" / "tiny_gpt.onnx"
    with pytest.raises(LasercError, match="the model takes integer int64 values, got dtype float64"):
        lasercc.compile(model, calibration={"input_ids": ids}, progress=False)
