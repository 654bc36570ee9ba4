"""What keeps compile memory low changes no result (lasercc/frontends/onnx: lower.py, weights.py, heap.py).

* calibration keeps values only for the tensors the lowering reads (``Lowerer.sample_requests``): on
  every bundled model and format, each tensor the lowering asked ``Stats.values`` for was requested
  (a miss would silently drop an ASNC histogram or narrow a decomposition's range), and every kept
  tensor is freed once its last reader is lowered;
* block-wise ``table_range`` / ``quantize_rows`` over a memory-mapped table equal min/max and
  ``quantize`` of the whole table, with pages dropped between blocks;
* ``release_freed_heap`` is harmless to call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from frontend_models import attention_model
from frontend_models import quantize as ort_quantize

import lasercc
import lasercc.frontends.onnx as fo
from lasercc.frontends.onnx.heap import release_freed_heap
from lasercc.frontends.onnx.weights import quantize_rows, table_range
from lasercc.semantics.quant import quantize

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
CASES = [(m, f) for m in ("tiny_gpt", "tiny_bert", "tiny_llama") for f in ("onnx", "qdq.onnx")]


def _qoperator_attention(tmp: Path) -> tuple[Path, dict]:
    calib = {"x": np.random.default_rng(0).standard_normal((32, 16, 32)).astype(np.float32)}
    return ort_quantize(attention_model(), tmp, calib, 1, "qoperator", "uint8", False, ops=["MatMul", "Mul"]), calib


@pytest.mark.parametrize(("model", "fmt"), [*CASES, ("attention", "qoperator")])
def test_kept_calibration_values_cover_what_the_lowering_reads(model, fmt, monkeypatch, tmp_path):
    if fmt == "qoperator":
        path, calib = _qoperator_attention(tmp_path)
    else:
        path = MODELS / f"{model}.{fmt}"
        if not path.exists():
            pytest.fail(f"bundled model {path} missing: run examples/build_models.py")
        calib = dict(np.load(MODELS / f"{model}.calib.npz"))
    seen = {}
    orig = fo.run_calibration

    def spy(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        st = orig(*args, **kw)
        seen["keep"], seen["stats"] = set(args[4]), st
        return st

    monkeypatch.setattr(fo, "run_calibration", spy)
    shapes = {k: (1, *v.shape[1:]) for k, v in calib.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lasercc.compile(str(path), calibration=calib, input_shapes=shapes, progress=False)
    st = seen["stats"]
    assert st.asked, "the lowering read no calibration values: the check below would be empty"
    assert st.asked <= seen["keep"], f"read but not kept: {sorted(st.asked - seen['keep'])}"
    assert not st.kept, f"kept values not freed after their last reader: {sorted(st.kept)}"


def test_block_wise_table_quantization_equals_whole_table(tmp_path):
    rng = np.random.default_rng(3)
    real = np.clip(rng.standard_normal((9000, 300)) * 2.5, -10, 10).astype(np.float32)  # 2.7M: three blocks
    real[17, 3], real[8999, 299] = -11.0, 13.5
    f = tmp_path / "table.bin"
    real.tofile(f)
    mm = np.memmap(f, np.float32, "r", shape=real.shape)
    lo, hi = table_range(mm)
    assert (lo, hi) == (-11.0, 13.5)
    for bits, zp in ((8, 128), (16, 30000), (12, 0)):
        scale = (hi - lo) / ((1 << bits) - 1)
        codes = quantize_rows(mm, scale, zp, bits)
        assert codes.dtype == (np.int16 if bits <= 15 else np.uint16)
        assert np.array_equal(codes, quantize(real, scale, zp, bits))


def test_release_freed_heap_is_harmless():
    a = np.ones(1 << 22)
    del a
    assert release_freed_heap() in (True, False)
    assert np.ones(4).sum() == 4


@pytest.mark.parametrize("fmt", ["onnx", "qdq.onnx"])
def test_host_side_embedding_lookup_changes_nothing(fmt, monkeypatch):
    """Calibration looks token embeddings up outside onnxruntime (calibrate.host_lookups): the compiled
    graph -- every code type, histogram and constant -- is the one onnxruntime's own Gather gives."""
    from lasercc.frontends.onnx import calibrate
    from lasercc.frontends.onnx.weights import load_split
    from lasercc.ir.text import print_graph

    path = MODELS / f"tiny_gpt.{fmt}"
    split = load_split(path)
    assert calibrate.host_lookups(split.model, split.weights), "tiny_gpt's token embedding should be looked up"
    calib = dict(np.load(MODELS / "tiny_gpt.calib.npz"))

    def build():  # noqa: ANN202
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lasercc.compile(str(path), calibration=calib, input_shapes={"input_ids": (1, 16)}, progress=False)

    with_lookup = build()
    monkeypatch.setattr(calibrate, "host_lookups", lambda model, tables: [])
    without = build()
    assert print_graph(with_lookup.graph) == print_graph(without.graph)
    a, b = with_lookup.graph.constants.arrays(), without.graph.constants.arrays()
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
