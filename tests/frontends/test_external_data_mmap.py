"""Models with external data (every model over 2 GB) are memory-mapped, not read (weights.map_external):
the same artifact as the inline model, weights as read-only maps of the data file, and the location
checks of the loader still apply."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

import lasercc
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.weights import load_split

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"


def _external(tmp: Path, name: str = "tiny_llama.qdq.onnx") -> Path:
    m = onnx.load(str(MODELS / name))
    out = tmp / "m.onnx"
    onnx.save(m, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data",
              size_threshold=0)
    return out


def test_external_weights_are_mapped_and_compile_to_the_same_artifact(tmp_path) -> None:
    ext = _external(tmp_path)
    split = load_split(ext)
    assert split.weights and all(isinstance(w, np.memmap) for w in split.weights.values())
    assert all(Path(w.filename).name == "m.onnx.data" for w in split.weights.values())
    calib = dict(np.load(MODELS / "tiny_llama.calib.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = lasercc.compile(str(MODELS / "tiny_llama.qdq.onnx"), calibration=calib, progress=False)
        b = lasercc.compile(str(ext), calibration=calib, progress=False)
    assert a.graph.text() == b.graph.text()
    ca, cb = a.graph.constants.arrays(), b.graph.constants.arrays()
    assert sorted(ca) == sorted(cb)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k])


def test_external_location_outside_the_folder_is_refused(tmp_path) -> None:
    ext = _external(tmp_path)
    m = onnx.load(str(ext), load_external_data=False)
    big = next(t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for e in big.external_data:
        if e.key == "location":
            e.value = "../m.onnx.data"
    onnx.save(m, str(ext))
    with pytest.raises(FrontendError, match="must be a file name relative"):
        load_split(ext)
