"""`lasercc compile` / `lasercc.compile`: errors a user can act on, the CLI round trip with
`simulate --compare-onnx`, external-data weights, shape-subgraph folding, and the bundled examples."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from frontend_models import linear_model, make_model, vi
from onnx import TensorProto, helper

import lasercc
from lasercc.cli import main
from lasercc.errors import LasercError
from lasercc.runtime import run_graph

logging.getLogger().setLevel(logging.ERROR)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def _save(m: onnx.ModelProto, p: Path) -> Path:
    onnx.save(m, p)
    return p


def test_unsupported_ops_are_listed_all_at_once(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("TopK", ["h", "k"], ["v", "i"], name="topk_a", axis=-1),
             helper.make_node("Hardmax", ["v"], ["hm"], name="hardmax_1"),
             helper.make_node("Hardmax", ["hm"], ["y"], name="hardmax_2")]
    m = make_model(nodes, [vi("x", [2, 8])], [vi("y", [2, 3])],
                   {"W": np.ones((8, 8), np.float32), "k": np.array([3], np.int64)})
    with pytest.raises(LasercError) as e:
        lasercc.compile(_save(m, tmp_path / "u.onnx"), calibration={"x": np.ones((2, 8), np.float32)}, progress=False)
    msg = str(e.value)
    assert "Hardmax (hardmax_1, hardmax_2)" in msg and "TopK (topk_a)" in msg and "hint" in msg
    assert "\n" not in msg


def _dynamic_model() -> onnx.ModelProto:
    """x [batch, seq, 8] with a Shape -> Gather -> Concat -> Reshape subgraph, as exporters write it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
             helper.make_node("Gather", ["s", "i1"], ["t"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             helper.make_node("Unsqueeze", ["t", "ax"], ["tu"]),
             helper.make_node("Concat", ["bu", "tu", "c4", "c2"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["rt", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["y"])]
    inits = {"i0": np.array(0, np.int64), "i1": np.array(1, np.int64), "ax": np.array([0], np.int64),
             "c4": np.array([4], np.int64), "c2": np.array([2], np.int64), "flat": np.array([0, -1, 8], np.int64),
             "W": (np.random.default_rng(0).standard_normal((8, 5)) / 3).astype(np.float32)}
    return make_model(nodes, [vi("x", ["batch", "seq", 8])], [vi("y", ["batch", None, 5])], inits)


def test_dynamic_dims_must_be_pinned_and_shape_subgraphs_fold(tmp_path: Path) -> None:
    p = _save(_dynamic_model(), tmp_path / "dyn.onnx")
    calib = {"x": np.random.default_rng(1).standard_normal((8, 6, 8)).astype(np.float32)}
    with pytest.raises(LasercError, match=r"x \[batch, seq, 8\].*--input-shape"):
        lasercc.compile(p, calibration=calib, progress=False)
    with pytest.raises(LasercError, match="unknown input"):
        lasercc.compile(p, calibration=calib, input_shapes={"nope": (1, 2)}, progress=False)
    art = lasercc.compile(p, calibration=calib, input_shapes={"x": (2, 6, 8)}, bits=16, progress=False)
    ops = {n.op for n in art.graph.nodes}
    assert ops == {"input", "bse_encode", "reshape", "transpose", "soma"}, ops  # Shape/Gather/Concat folded away
    import onnxruntime as ort

    ref = ort.InferenceSession(str(p)).run(None, {"x": calib["x"][:2]})[0]
    got = run_graph(art.graph, {"x": calib["x"][:2]}).values["y"]
    assert np.abs(got - ref).max() < 0.01 * np.abs(ref).max()


def test_external_data_weights(tmp_path: Path) -> None:
    m = linear_model(16)
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    art = lasercc.compile(tmp_path / "ext.onnx", calibration={"x": x}, bits=16, progress=False)
    assert art.graph.verify() is art.graph


def test_cli_compile_simulate_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    np.savez(tmp_path / "in.npz", x=x[:32])
    out = tmp_path / "art"
    assert main(["compile", str(p), "-o", str(out), "--calibration", str(tmp_path / "calib.npz"), "--bits", "16"]) == 0
    cap = capsys.readouterr()
    assert "compiled" in cap.out and "calibrate" in cap.err  # progress display on stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["target"] == "numpy" and man["options"]["requant"] == "ort" and man["frontend"]["format"] == "float"
    assert main(["simulate", str(out), "-i", str(tmp_path / "in.npz"), "--compare-onnx", str(p), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    d = res["compare_onnx"]["y"]
    assert d["cosine"] > 0.9999 and d["top1_agreement"] > 0.9 and 0 <= d["identical_codes"] <= 1
    assert main(["simulate", str(out), "-i", str(tmp_path / "in.npz"), "--compare-onnx", str(p)]) == 0
    assert "identical codes" in capsys.readouterr().out


@pytest.mark.parametrize("arg", ["x=abc", "x", "=1,2", "x=1,-2"])
def test_cli_bad_input_shape_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], arg: str) -> None:
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    rc = main(["compile", str(p), "-o", str(tmp_path / "o"), "--input-shape", arg, "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--input-shape" in err and len(err.splitlines()) == 1


def test_cli_missing_model_and_bad_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tmp_path / "none.onnx"), "-o", str(tmp_path / "o"), "-q"]) == 2
    assert "no such ONNX model" in capsys.readouterr().err
    with pytest.raises(LasercError, match="unknown target"):
        lasercc.compile(tmp_path / "none.onnx", target="gpu")


def test_no_calibration_warns_and_still_compiles(tmp_path: Path) -> None:
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    with pytest.warns(UserWarning, match="no calibration data"):
        art = lasercc.compile(p, progress=False)
    assert art.manifest["frontend"]["calibration"] == "generated"


def test_loihi2_target_uses_fixed_requant(tmp_path: Path) -> None:
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    art = lasercc.compile(p, target="loihi2", calibration={"x": x}, progress=False)
    assert {getattr(n, "requant", "fixed") for n in art.graph.nodes} == {"fixed"}
    art.save(tmp_path / "a")
    assert lasercc.load(tmp_path / "a").manifest["target"] == "loihi2"


def test_token_ids_int_input(tmp_path: Path) -> None:
    """An i64 ids input gathered from an embedding table becomes a Gather of a code table."""
    emb = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("MatMul", ["e", "W"], ["y"])]
    m = make_model(nodes, [vi("ids", [1, 6], TensorProto.INT64)], [vi("y", [1, 6, 4])],
                   {"E": emb, "W": np.eye(8, 4, dtype=np.float32)})
    p = _save(m, tmp_path / "emb.onnx")
    ids = np.random.default_rng(1).integers(0, 50, (16, 6)).astype(np.int64)
    art = lasercc.compile(p, calibration={"ids": ids}, bits=16, progress=False)
    assert "gather" in {n.op for n in art.graph.nodes}
    got = run_graph(art.graph, {"ids": ids[:4]}).values["y"]
    np.testing.assert_allclose(got, emb[ids[:4]] @ np.eye(8, 4), atol=2e-3)


@pytest.mark.parametrize("name", ["tiny_gpt", "tiny_llama", "tiny_bert"])
def test_bundled_example_models(name: str) -> None:
    """The examples' QDQ models (onnxruntime quantize_static) track onnxruntime: cosine > 0.999 and top-1
    agreement > 0.98 on the held-out rows (measured: 0.99984 / 0.99987 / 0.99994 cosine)."""
    model = EXAMPLES / f"{name}.qdq.onnx"
    if not model.exists():
        pytest.fail(f"{model} is missing: run examples/build_models.py")
    from lasercc.commands.common import read_npz
    from lasercc.frontends.onnx.compare import compare

    x = read_npz(str(EXAMPLES / f"{name}.heldout.npz"))
    shapes = {k: (1, v.shape[1]) for k, v in x.items()}
    art = lasercc.compile(model, calibration=str(EXAMPLES / f"{name}.calib.npz"), input_shapes=shapes, progress=False)
    x = {k: v[:8] for k, v in x.items()}
    res = run_graph(art.graph, x)
    for k, d in compare(model, art.graph, x, res.values, res.codes, art.manifest["onnx_outputs"]).items():
        assert d["cosine"] > 0.999 and d["top1_agreement"] > 0.9, (k, d)


def test_passes_run_and_recorded(tmp_path: Path) -> None:
    """--passes goes through lasercc.passes.PassManager; the manifest lists what ran."""
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    art = lasercc.compile(p, calibration={"x": x}, passes="fold,dce", progress=False)
    assert [r["name"] for r in art.manifest["passes_run"]] == ["fold", "dce"]
    with pytest.raises(LasercError):
        lasercc.compile(p, calibration={"x": x}, passes="no-such-pass", progress=False)


def test_split_concat_and_qlinear_concat(tmp_path: Path) -> None:
    """Split -> (Sigmoid, Tanh) -> Concat, float (16-bit) and QOperator (QLinearConcat)."""
    from frontend_models import quantize

    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Split", ["h", "sp"], ["a", "b"], axis=1),
             helper.make_node("Sigmoid", ["a"], ["sa"]), helper.make_node("Tanh", ["b"], ["tb"]),
             helper.make_node("Concat", ["sa", "tb"], ["y"], axis=1)]
    m = make_model(nodes, [vi("x", [8, 16])], [vi("y", [8, 12])],
                   {"W": (np.random.default_rng(0).standard_normal((16, 12)) / 3).astype(np.float32),
                    "sp": np.array([5, 7], np.int64)})
    p = _save(m, tmp_path / "sc.onnx")
    data = {"x": np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)}
    from lasercc.frontends.onnx.compare import compare

    q = quantize(m, tmp_path, data, 8, "qoperator", "uint8", False, ops=["MatMul", "Concat", "Sigmoid"])
    for path, kw in ((p, {"bits": 16}), (q, {})):
        art = lasercc.compile(path, calibration=data, progress=False, **kw)
        res = run_graph(art.graph, data)
        d = compare(path, art.graph, data, res.values, res.codes, art.manifest["onnx_outputs"])["y"]
        assert d["cosine"] > 0.999, (path.name, d)
    assert {"QLinearConcat", "QLinearSigmoid"} <= {n.op_type for n in onnx.load(q).graph.node}


def test_loihi2_compile_survives_a_graph_lava_cannot_hold(tmp_path: Path, monkeypatch) -> None:
    """When the Lava simulator cannot hold a layer, the artifact still compiles (partition, report) and
    the manifest and stderr say why there is no lava/ package."""
    import lasercc.backends.lava.emit as emit

    def too_big(graph):  # noqa: ANN001, ANN202
        raise LasercError("%x: a 12288 x 12288 synapse matrix is too large for the Lava simulator")

    monkeypatch.setattr(emit, "emit_lava_package", too_big)
    p = _save(linear_model(16), tmp_path / "lin.onnx")
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    art = lasercc.compile(p, target="loihi2", calibration={"x": x}, progress=False)
    art.save(tmp_path / "out")
    assert art.manifest["lava"] == {"emitted": False, "reason": "%x: a 12288 x 12288 synapse matrix is too large "
                                                              "for the Lava simulator"}
    assert not (tmp_path / "out" / "lava").exists() and (tmp_path / "out" / "partition.json").exists()
