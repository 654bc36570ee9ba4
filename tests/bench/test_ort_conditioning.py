"""bench/_ort_conditioning.py: the perturbed run moves a value on a rounding boundary by one code and leaves the
rest of the file's arithmetic alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "frontends"))
import _ort_conditioning as oc  # noqa: E402
from frontend_models import boundary_model  # noqa: E402


def test_a_boundary_value_flips_one_code_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(boundary_model(), str(path))
    x = np.array([[2.5, 3.2, -1.7, 0.0]], np.float32)  # 2.5 rounds to 2 (half to even); 2.5(1+eps) rounds to 3
    ref = oc.run_rows(oc.session(path), {"x": x})["y"]
    got, count = oc.perturbed_outputs(path, {"x": x})
    assert count == 1
    np.testing.assert_array_equal(ref, [[4.0, 6.0, -4.0, 0.0]])
    np.testing.assert_array_equal(got["y"], [[6.0, 6.0, -4.0, 0.0]])
