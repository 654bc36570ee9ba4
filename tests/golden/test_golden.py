"""Golden outputs of the bundled example models (files made by tests/golden/make_golden.py).

lasercc's codes must equal the golden codes exactly (any change in arithmetic or lowering shows up
here), and the golden codes must track onnxruntime's outputs stored beside them (cosine > 0.999 and
top-1 agreement >= 0.9 along the last axis -- onnxruntime's own quantized models differ from their
float versions by more than that).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from lasercc.runtime import run_graph

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden import NAMES, compile_example, golden_inputs  # noqa: E402


@pytest.mark.parametrize("name", NAMES)
def test_codes_equal_golden_and_track_onnxruntime(name):
    gold = np.load(HERE / f"{name}.npz")
    art = compile_example(name)
    res = run_graph(art.graph, golden_inputs(name), collect_stats=False)
    checked = 0
    for ir_name, info in art.manifest["onnx_outputs"].items():
        onnx_name = info["onnx"] if isinstance(info, dict) else info
        codes = res.codes[ir_name]
        assert np.array_equal(codes, gold[f"{onnx_name}.codes"]), f"{name}/{onnx_name}: codes changed"
        ours = res.values[ir_name].reshape(-1, codes.shape[-1]).astype(np.float64)
        ref = gold[f"{onnx_name}.onnxruntime"].reshape(ours.shape).astype(np.float64)
        cos = float((ours * ref).sum() / np.linalg.norm(ours) / np.linalg.norm(ref))
        top1 = float((ours.argmax(-1) == ref.argmax(-1)).mean())
        assert cos > 0.999 and top1 >= 0.9, (name, onnx_name, cos, top1)
        checked += 1
    assert checked >= 1
