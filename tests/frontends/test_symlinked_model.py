"""Models reached through symbolic links (the Hugging Face cache layout) compile; external-data locations
cannot leave the model's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lasercc
from lasercc.errors import LasercError

X = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)


def _model() -> onnx.ModelProto:
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _external(d: Path, location: str = "model.onnx_data") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(_model(), d / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return d / "model.onnx"


def test_hugging_face_cache_layout_compiles(tmp_path: Path) -> None:
    plain = _external(tmp_path / "plain")
    blobs = tmp_path / "hub" / "blobs"
    snap = tmp_path / "hub" / "snapshots" / "0123abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "9f1e").write_bytes(plain.read_bytes())
    (blobs / "77aa").write_bytes((plain.parent / "model.onnx_data").read_bytes())
    (snap / "model.onnx").symlink_to("../../blobs/9f1e")
    (snap / "model.onnx_data").symlink_to("../../blobs/77aa")
    want = lasercc.compile(plain, calibration={"x": X}, progress=False).run({"x": X[:2]}, output="codes")
    got = lasercc.compile(snap / "model.onnx", calibration={"x": X}, progress=False).run({"x": X[:2]}, output="codes")
    assert np.array_equal(want["y"], got["y"])


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd"])
def test_external_data_may_not_leave_the_model_folder(tmp_path: Path, location: str) -> None:
    p = _external(tmp_path / "m")
    m = onnx.load(str(p), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    p.write_bytes(m.SerializeToString())
    with pytest.raises(LasercError, match="must be a file name relative to the model's folder"):
        lasercc.compile(p, calibration={"x": X}, progress=False)


def test_external_data_beyond_the_file_is_refused(tmp_path: Path) -> None:
    p = _external(tmp_path / "m")
    data = p.parent / "model.onnx_data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(LasercError, match="has 100 bytes, the model asks for"):
        lasercc.compile(p, calibration={"x": X}, progress=False)
