"""The memory-saving model loading (lasercc/frontends/onnx/weights.py) changes nothing but memory.

* the wire-level split of a file reproduces ``onnx.load`` exactly: same graph, every initializer's
  values (large ones as read-only memory maps of the file, still right after their pages are released);
* compiling from a path (wire split, onnxruntime reading weights from the file), from a ModelProto
  (weights handed to onnxruntime in memory) and from a model with external data gives the same graph;
* the embedding table, quantized in row blocks into int16, equals quantize() of the whole table.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lasercc
from lasercc.errors import InputError
from lasercc.frontends.onnx.emit import small_int
from lasercc.frontends.onnx.load import SPLIT_ELEMENTS, split_weights
from lasercc.frontends.onnx.weights import load_split, split_file
from lasercc.ir.nodes import Gather
from lasercc.ir.text import print_graph
from lasercc.semantics.quant import quantize

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
GPT = MODELS / "tiny_gpt.onnx"


def _compile(model, calib):  # noqa: ANN001, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(model, calibration=calib, input_shapes={"input_ids": (1, 16)}, progress=False)


def _same_graph(a, b) -> None:  # noqa: ANN001
    assert print_graph(a.graph) == print_graph(b.graph)
    ca, cb = a.graph.constants.arrays(), b.graph.constants.arrays()
    assert set(ca) == set(cb)
    for k in ca:
        assert np.array_equal(np.asarray(ca[k]), np.asarray(cb[k])), k


def test_wire_split_reproduces_onnx_load():
    full = onnx.load(str(GPT))
    split = split_file(GPT)
    assert split is not None and split.weights, "tiny_gpt has initializers above the split threshold"
    light = split.model
    assert [n.SerializeToString() for n in light.graph.node] == [n.SerializeToString() for n in full.graph.node]
    assert [i.name for i in light.graph.initializer] == [i.name for i in full.graph.initializer]
    for t in full.graph.initializer:
        want = numpy_helper.to_array(t)
        if t.name in split.weights:
            w = split.weights[t.name]
            assert want.size >= SPLIT_ELEMENTS
            assert isinstance(w, np.memmap) and not w.flags.writeable
            assert w.dtype == want.dtype and np.array_equal(w, want), t.name
        else:
            lt = next(i for i in light.graph.initializer if i.name == t.name)
            assert np.array_equal(numpy_helper.to_array(lt), want)
    split.release_pages()  # pages dropped from the resident set are read again, unchanged
    for t in full.graph.initializer:
        if t.name in split.weights:
            assert np.array_equal(split.weights[t.name], numpy_helper.to_array(t))


def test_split_weights_of_a_proto_leaves_it_intact():
    full = onnx.load(str(GPT))
    before = full.SerializeToString()
    light, weights = split_weights(full)
    assert full.SerializeToString() == before
    assert weights and light.ByteSize() < full.ByteSize() // 4
    stubs = {i.name: i for i in light.graph.initializer if i.name in weights}
    assert all(s.data_location == onnx.TensorProto.EXTERNAL and not s.raw_data for s in stubs.values())


def test_path_proto_and_external_data_compile_identically(tmp_path):
    calib = dict(np.load(MODELS / "tiny_gpt.calib.npz"))
    from_path = _compile(str(GPT), calib)
    from_proto = _compile(onnx.load(str(GPT)), calib)
    _same_graph(from_path, from_proto)
    ext = tmp_path / "ext.onnx"
    onnx.save(onnx.load(str(GPT)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    assert split_file(ext) is None  # the model has external data itself: onnx.load path
    assert load_split(ext).weights
    _same_graph(from_path, _compile(str(ext), calib))


def test_embedding_table_is_quantize_of_the_whole_table():
    calib = dict(np.load(MODELS / "tiny_gpt.calib.npz"))
    art = _compile(str(GPT), calib)
    gathers = [n for n in art.graph.nodes if isinstance(n, Gather)]
    assert gathers
    full = onnx.load(str(GPT))
    tables = {numpy_helper.to_array(t).shape: numpy_helper.to_array(t) for t in full.graph.initializer}
    for g in gathers:
        table = np.asarray(art.graph.constants[g.table])
        real = tables[table.shape]
        t = g.type
        assert np.array_equal(table, quantize(real, t.scale[0], t.zero_point[0], t.bits))


def test_not_an_onnx_file_is_one_line_input_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff\x0f not protobuf")
    with pytest.raises(InputError, match="cannot read as ONNX"):
        load_split(bad)
    with pytest.raises(InputError, match="no such ONNX model"):
        load_split(tmp_path / "missing.onnx")


@pytest.mark.parametrize("values,dtype", [([0, 127, -128], np.int8), ([0, 255], np.int16), ([0, 65535], np.int32),
                                          ([-(2**40), 1], np.int64)])
def test_small_int_picks_the_narrowest_dtype(values, dtype):
    for src in (np.int64, np.int32 if max(abs(v) for v in values) < 2**31 else np.int64):
        a = np.array(values, src)
        out = small_int(a)
        assert out.dtype == dtype and np.array_equal(out, np.array(values, np.int64))
