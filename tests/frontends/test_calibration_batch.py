"""A graph compiled for batch B calibrates at batch 1 when the model's batch is dynamic.

Ranges and kept samples do not depend on the batch, so the batch-B artifact must be the batch-1
artifact with a wider leading axis: run on the same rows, the two give identical codes. And the
calibration file no longer needs a multiple of B rows (calibrate.calibration_shapes).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import lasercc
from lasercc.frontends.onnx.calibrate import calibration_shapes

ROOT = Path(__file__).resolve().parents[2]


def _build_models():  # noqa: ANN202 - the examples module
    spec = importlib.util.spec_from_file_location("build_models_cb", ROOT / "examples" / "build_models.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dynamic_lm(tmp_path_factory) -> Path:
    """The example causal LM (random weights), exported with a dynamic batch axis."""
    bm = _build_models()
    torch.manual_seed(0)
    model = bm.CausalLM(bm.tiny_gpt_config()).eval()
    path = tmp_path_factory.mktemp("dyn") / "lm.onnx"
    ids = torch.zeros((1, 16), dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids,), str(path), dynamo=False, opset_version=17, input_names=["input_ids"],
                          output_names=["logits"], dynamic_axes={"input_ids": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(str(path))
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _compile(path: Path, calib: dict, batch: int):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(str(path), calibration=calib, input_shapes={"input_ids": (batch, 16)}, progress=False)


def test_batch_4_artifact_equals_batch_1_artifact(dynamic_lm: Path) -> None:
    rng = np.random.default_rng(1)
    calib = {"input_ids": rng.integers(0, 64, (6, 16))}  # 6 rows: not a multiple of the batch
    a1, a4 = _compile(dynamic_lm, calib, 1), _compile(dynamic_lm, calib, 4)
    assert a4.manifest["frontend"]["calibration_batch"] == 1
    assert a1.manifest["frontend"]["calibration_batch"] is None
    assert a4.graph.inputs[0].type.shape == (4, 16)
    feeds = {"input_ids": rng.integers(0, 64, (8, 16))}
    c1, c4 = a1.run(feeds, output="codes"), a4.run(feeds, output="codes")
    assert c1 and set(c1) == set(c4)
    for k in c1:
        assert np.array_equal(c1[k], c4[k]), k


def test_fixed_batch_models_calibrate_at_their_own_shape() -> None:
    m = onnx.load(str(ROOT / "examples" / "models" / "tiny_gpt.onnx"), load_external_data=False)
    assert calibration_shapes(m, {"input_ids": (1, 16)}) is None  # fixed batch 1 in the model


def test_dynamic_batch_pinned_to_one_needs_no_second_model(dynamic_lm: Path) -> None:
    m = onnx.load(str(dynamic_lm), load_external_data=False)
    assert calibration_shapes(m, {"input_ids": (1, 16)}) is None
    assert calibration_shapes(m, {"input_ids": (8, 16)}) == {"input_ids": (1, 16)}
