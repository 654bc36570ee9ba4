"""Run-time saturation: counted per node, reported by ``simulate`` (text and --json), warned above a threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lasercc
from lasercc.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ir" / "attention_block"


def _x() -> np.ndarray:
    with np.load(EXAMPLE / "input.npz") as z:
        return z["x"]


def test_encoder_clipping_is_counted_exactly() -> None:
    art = lasercc.load(EXAMPLE)
    x = _x() * 10
    enc = next(n for n in art.graph.nodes if n.op == "bse_encode")
    t = enc.type
    q = np.rint(x.astype(np.float32) / np.float32(t.scale[0])) + t.zero_point[0]
    want = int(((q < 0) | (q > t.hi)).sum())
    assert want / x.size > 0.5  # ten times the calibration range clips most inputs
    for mode in ("codes", "spikes"):
        art.run({"x": x}, mode=mode)
        sat = art.stats["saturation"]
        assert sat[enc.name] == {"op": "bse_encode", "kind": "clipped", "count": want, "total": x.size,
                                 "fraction": want / x.size}, mode
    art.run({"x": _x()})
    assert enc.name not in art.stats["saturation"]


def test_linear_nodes_count_clipped_accumulators_at_most_the_codes_at_their_limits() -> None:
    """The exact count (pre-clip code outside the range) never exceeds the codes sitting at a limit."""
    art = lasercc.load(EXAMPLE)
    codes = art.run({"x": _x() * 10}, output="codes")
    out = art.graph.node("out")
    c = codes["out"]
    zp = out.type.zero_point[0]
    at_limit = int(((c == out.type.hi) & (zp != out.type.hi)).sum() + ((c == 0) & (zp != 0)).sum())
    d = art.stats["saturation"]["out"]
    assert d["kind"] == "clipped" and 0 < d["count"] <= at_limit


def _soma_graph(requant: str, per_channel: bool):
    from lasercc.ir.nodes import BSEEncode, Input, Soma
    from lasercc.ir.types import CodeType, TensorType
    from lasercc.testing import GraphBuilder

    rng = np.random.default_rng(4)
    b = GraphBuilder("lin")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(4, 32))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=CodeType.per_tensor_type(8, 0.05, 128, (4, 32))))
    w = b.const("w", rng.integers(-127, 128, size=(32, 6)).astype(np.int8))
    bias = b.const("b", rng.integers(-3000, 3000, size=(6,)).astype(np.int64))
    sw = tuple(float(np.float32(v)) for v in (rng.uniform(0.5, 2, size=6) if per_channel else [1.0]))
    b.add(Soma(name="y", inputs=(e,), weights=(w,), forms=("matmul",), bias=bias, scale_in=float(np.float32(2e-3)),
               scale_w=sw, requant=requant, type=CodeType.per_tensor_type(8, 0.1, 100, (4, 6))))
    return b.graph(["y"])


@pytest.mark.parametrize("backend,mode", [("numpy", "codes"), ("numpy", "spikes"), ("torch", "codes")])
@pytest.mark.parametrize("requant", ["ort", "fixed"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_soma_clipping_is_counted_exactly(backend: str, mode: str, requant: str, per_channel: bool) -> None:
    """Reference in the test: input codes, acc = codes @ W + bias in int64, the pre-clip code by the rule written
    out (ort: float32 multiply, round half even; fixed: Python integers, round half up), counted outside
    [0, 255]; the code at the limit that is exactly 255 or 0 before the clip is not counted."""
    from lasercc.semantics.requant import fixed_multiplier, requantize_scale

    g = _soma_graph(requant, per_channel)
    x = (np.random.default_rng(5).standard_normal((4 * 25, 32)) * 4).astype(np.float32)
    res = lasercc.run_graph(g, {"x": x}, backend=backend, mode=mode)
    n = g.node("y")
    xc = np.clip(np.rint(x / np.float32(0.05)) + 128, 0, 255).astype(np.int64)
    acc = xc @ g.constants[n.weights[0]].astype(np.int64) + g.constants[n.bias].astype(np.int64)
    scale = requantize_scale(n.scale_in, np.asarray(n.scale_w, np.float32), np.float32(0.1))
    if requant == "ort":
        pre = np.rint(acc.astype(np.float32) * scale).astype(np.float64) + 100
    else:
        m, k = (np.broadcast_to(v, (6,)) for v in fixed_multiplier(scale))
        pre = np.array([[(int(a) * int(m[j]) + (1 << (int(k[j]) - 1))) >> int(k[j]) for j, a in enumerate(row)]
                        for row in acc], dtype=np.float64) + 100
    want = int(((pre < 0) | (pre > 255)).sum())
    y = res.codes["y"]
    assert want > 0
    d = res.stats["saturation"]["y"]
    assert (d["kind"], d["count"], d["total"]) == ("clipped", want, y.size)


def test_decode_mac_clipping_is_counted_exactly() -> None:
    from lasercc.ir.nodes import DecodeMAC, Input
    from lasercc.ir.types import CodeType
    from lasercc.testing import GraphBuilder

    b = GraphBuilder("dm")
    ta, tb = CodeType.per_tensor_type(8, 0.1, 128, (2, 8)), CodeType.per_tensor_type(8, 0.05, 10, (2, 8))
    a = b.add(Input(name="a", type=ta))
    c = b.add(Input(name="b", type=tb))
    b.add(DecodeMAC(name="y", inputs=(a, c), form="mul", type=CodeType.per_tensor_type(8, 0.02, 128, (2, 8))))
    g = b.graph(["y"])
    rng = np.random.default_rng(6)
    xa, xb = rng.integers(0, 256, size=(2 * 30, 8)), rng.integers(0, 256, size=(2 * 30, 8))
    res = lasercc.run_graph(g, {"a": xa, "b": xb})
    acc = (xa - 128) * (xb - 10)
    scale = np.float32(np.float32(np.float32(0.1) * np.float32(0.05)) / np.float32(0.02))
    pre = np.rint(acc.astype(np.float32) * scale).astype(np.float64) + 128
    want = int(((pre < 0) | (pre > 255)).sum())
    assert want > 0 and res.stats["saturation"]["y"]["count"] == want


def test_simulate_reports_and_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "big.npz", x=_x() * 10)
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "big.npz")]) == 0
    out, err = capsys.readouterr()
    assert "saturated node" in out and "clipped" in out
    assert err.startswith("lasercc simulate: warning: ") and "x_q 66.8% clipped" in err and err.count("\n") == 1
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "big.npz"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stats"]["saturation"]["x_q"]["kind"] == "clipped"
    assert main(["simulate", str(EXAMPLE), "-i", str(EXAMPLE / "input.npz")]) == 0
    assert capsys.readouterr().err == ""  # the calibration-like input: nothing over the 5% default
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "big.npz"), "--saturation-warn", "1"]) == 0
    assert capsys.readouterr().err == ""  # a fraction cannot exceed 1


def test_simulate_streams_outputs_to_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``simulate -o`` writes row blocks as they come (run_graph's sink): the file equals the collected run, the
    printed summaries equal those of the whole output, and no temporary file is left."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((8 * 70, 16)) * _x().std()).astype(np.float32)  # 70 batches: > one stacked block
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    art = lasercc.load(EXAMPLE)
    codes = art.run({"x": x}, output="codes")
    values = art.last.values
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == ["out", "out.codes"]
        assert np.array_equal(z["out.codes"], codes["out"]) and np.array_equal(z["out"], values["out"])
    s = data["outputs"]["out"]
    assert s["shape"] == [8 * 70, 16] and s["min"] == float(values["out"].min())
    assert s["mean"] == pytest.approx(float(values["out"].mean(dtype=np.float64)), rel=1e-6)
    assert s["codes_head"] == codes["out"].reshape(-1)[:8].tolist()
    assert data["stats"]["batches"] == 70
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "y.npz"]


def test_run_graph_sink_receives_every_row_in_order() -> None:
    art = lasercc.load(EXAMPLE)
    x = np.concatenate([_x()] * 3)
    got: list[np.ndarray] = []
    res = lasercc.run_graph(art.graph, {"x": x}, sink=lambda c, v: got.append(c["out"]))
    assert res.codes == {} and res.values == {}
    assert np.array_equal(np.concatenate(got), lasercc.run_graph(art.graph, {"x": x}).codes["out"])


# ---- ASNC nodes: counted exactly, against an independent NumPy count on the same codes ------------------------

def _ref_quantize_unclipped(v: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """quantize()'s arithmetic (float32 for <= 16 bits) without the clip, written out here."""
    with np.errstate(all="ignore"):
        return np.rint(v.astype(np.float32) / np.float32(scale)).astype(np.float64) + zp


def _asnc_graph(fn: str, in_t, out_t, table, hist: np.ndarray | None = None):
    from lasercc.ir.nodes import Input
    from lasercc.testing import GraphBuilder

    b = GraphBuilder("sat")
    x = b.add(Input(name="x", type=in_t))
    node, consts = table.to_node("y", x, out_t, graph_constants_prefix="t",
                                 histogram=None if hist is None else "hist")
    b.consts.update(consts)
    if hist is not None:
        b.consts["hist"] = hist.astype(np.int64)
    b.add(node)
    return b.graph(["y"])


@pytest.mark.parametrize("backend,mode", [("numpy", "codes"), ("numpy", "spikes"), ("torch", "codes"),
                                          ("torch", "spikes")])
def test_asnc_clamped_outputs_are_counted_exactly(backend: str, mode: str) -> None:
    """exp on inputs up to 3.2 with an output range that stops at e^1.5: every code whose exp exceeds the
    range is pinned at the top code and counted; the reference evaluates exp in NumPy on the same codes."""
    from lasercc.asnc.table import ASNCTable
    from lasercc.ir.types import CodeType

    in_t = CodeType.per_tensor_type(8, 0.025, 128, (4, 16))
    out_t = CodeType.per_tensor_type(8, float(np.float32(np.exp(1.5) / 255)), 0, (4, 16))
    g = _asnc_graph("exp", in_t, out_t, ASNCTable.lookup_table("exp", input_q=in_t, output_q=out_t))
    x = np.random.default_rng(0).integers(0, 256, size=(4 * 5, 16))
    res = lasercc.run_graph(g, {"x": x}, backend=backend, mode=mode)
    u = ((x - 128).astype(np.float32) * np.float32(0.025)).astype(np.float64)
    want = int((_ref_quantize_unclipped(np.exp(u), out_t.scale[0], 0) > 255).sum())
    assert 0 < want < x.size and int((res.codes["y"] == 255).sum()) >= want
    assert res.stats["saturation"]["y"] == {"op": "asnc", "kind": "clamped", "count": want, "total": x.size,
                                            "fraction": want / x.size, "clamped": want, "outside_calibration": 0}


def test_asnc_limits_reached_legitimately_are_not_counted() -> None:
    """sigmoid spans [0, 1] exactly: codes at 0 and 255 are its values, not clamps; nothing is reported."""
    from lasercc.asnc.table import ASNCTable
    from lasercc.ir.types import CodeType

    in_t = CodeType.per_tensor_type(8, 0.1, 128, (2, 32))
    out_t = CodeType.per_tensor_type(8, float(np.float32(1 / 255)), 0, (2, 32))
    g = _asnc_graph("sigmoid", in_t, out_t, ASNCTable.lookup_table("sigmoid", input_q=in_t, output_q=out_t))
    x = np.tile(np.arange(256).reshape(4, 64), 1).reshape(-1, 32)
    res = lasercc.run_graph(g, {"x": x})
    assert (res.codes["y"] == 0).sum() > 0 and (res.codes["y"] == 255).sum() > 0
    assert "y" not in res.stats["saturation"]


def test_fitted_asnc_inputs_outside_the_calibrated_codes_are_counted() -> None:
    """A fitted table (few segments) with a histogram of codes 60..190: codes outside that range were fitted on
    no data and are counted; the same table as a per-code lookup table counts none (every code is exact)."""
    from lasercc.asnc import fit
    from lasercc.asnc.table import ASNCTable
    from lasercc.ir.types import CodeType

    in_t = CodeType.per_tensor_type(8, 0.05, 128, (2, 16))
    out_t = CodeType.per_tensor_type(8, float(np.float32(1 / 255)), 0, (2, 16))
    hist = np.zeros(256)
    hist[60:191] = 1 + np.arange(131) % 7
    table = fit("sigmoid", input_q=in_t, output_q=out_t, histogram=hist, max_segments=6)
    x = np.random.default_rng(1).integers(0, 256, size=(2 * 9, 16))
    want = int(((x < 60) | (x > 190)).sum())
    res = lasercc.run_graph(_asnc_graph("sigmoid", in_t, out_t, table, hist), {"x": x})
    d = res.stats["saturation"]["y"]
    assert d["outside_calibration"] == want > 0 and d["clamped"] == 0 and d["kind"] == "outside_calibration"
    assert d["count"] == want
    lut = ASNCTable.lookup_table("sigmoid", input_q=in_t, output_q=out_t)
    assert "y" not in lasercc.run_graph(_asnc_graph("sigmoid", in_t, out_t, lut, hist), {"x": x}).stats["saturation"]


def test_asnc_of_an_unknown_function_uses_the_tables_own_clip() -> None:
    """No real function to consult (``onnx_chain``-like): the table's value before its clip decides."""
    from lasercc.asnc.table import ASNCTable
    from lasercc.ir.types import CodeType

    in_t = CodeType.per_tensor_type(8, 0.1, 0, (2, 8))
    out_t = CodeType.per_tensor_type(8, 0.1, 0, (2, 8))
    thr, a, c, shift = np.array([100]), np.array([0, 3]), np.array([7, -100]), 0  # 3x - 100 passes 255 at x = 119
    table = ASNCTable("my_chain", (), None, lasercc.asnc.distribution.as_q(out_t), thr, a, c, shift)
    x = np.random.default_rng(2).integers(0, 256, size=(2 * 4, 8))
    res = lasercc.run_graph(_asnc_graph("my_chain", in_t, out_t, table), {"x": x})
    pre = np.where(x < 100, 7, 3 * x - 100)
    want = int((pre > 255).sum())
    assert res.stats["saturation"]["y"]["clamped"] == want > 0


@pytest.mark.parametrize("backend,mode", [("numpy", "codes"), ("numpy", "spikes"), ("torch", "codes"),
                                          ("torch", "spikes")])
def test_fused_soma_asnc_clamps_are_counted_from_the_accumulator(backend: str, mode: str) -> None:
    """After fuse-asnc the table reads the accumulator: the reference computes acc = x @ W + b in NumPy,
    its real value acc * scale_in * scale_w, silu of it, and counts those beyond the output range."""
    from lasercc.asnc.table import ASNCTable
    from lasercc.ir.types import CodeType
    from lasercc.passes.base import PassManager
    from tests.passes.test_fuse import soma_asnc_graph

    g = soma_asnc_graph(7, function="silu", k=16, n=12, batch=8)
    mid = g.node("fc").type
    out = CodeType.per_tensor_type(8, float(np.float32(0.6 / 255)), 2, mid.shape)  # silu beyond ~0.9 clamps
    node, consts = ASNCTable.lookup_table("silu", input_q=mid, output_q=out).to_node("act", "fc", out, "lut")
    g = g.replace(nodes=(*g.nodes[:-1], node), constants=g.constants.with_items(**consts)).verify()
    g2, _ = PassManager("fuse-asnc{mode=refit,max_segments=24}").run(g)
    assert [n.op for n in g2.nodes][-1] == "soma_asnc"
    x = np.random.default_rng(3).standard_normal((8 * 3, 16)).astype(np.float32) * 2
    res = lasercc.run_graph(g2, {"x": x}, backend=backend, mode=mode)
    enc, fused = g2.node("e"), g2.node("act")
    xc = np.clip(np.rint(x / np.float32(enc.type.scale[0])) + enc.type.zero_point[0], 0, 255).astype(np.int64)
    acc = xc @ g2.constants[fused.weights[0]].astype(np.int64) + g2.constants[fused.bias].astype(np.int64)
    u = acc.astype(np.float64) * fused.scale_in * np.asarray(fused.scale_w, np.float64)
    silu = u / (1 + np.exp(-u))
    q = _ref_quantize_unclipped(silu, out.scale[0], 2)
    y = res.codes["act"]
    want = int((((q > 255) & (y == 255)) | ((q < 0) & (y == 0))).sum())
    assert want > 0
    assert res.stats["saturation"]["act"]["clamped"] == want


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_simulate_streams_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, save) -> None:  # noqa: ANN001
    """numpy/torch simulate reads the input .npz in row blocks (NpzRows), never whole: the whole-file reader is
    made to fail, and the run still equals ``Artifact.run`` on the arrays, with and without -o."""
    import lasercc.commands.simulate as sim

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((8 * 70, 16)) * _x().std() * 3).astype(np.float32)
    save(tmp_path / "x.npz", x=x)

    def whole(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("simulate read the input whole")

    monkeypatch.setattr(sim, "read_npz", whole)
    art = lasercc.load(EXAMPLE)
    codes = art.run({"x": x}, output="codes")
    want_sat = art.stats["saturation"]
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "x.npz"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"]["out"]["codes_head"] == codes["out"].reshape(-1)[:8].tolist()
    assert data["stats"]["saturation"] == json.loads(json.dumps(want_sat)) and want_sat
    assert main(["simulate", str(EXAMPLE), "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"),
                 "--backend", "torch"]) == 0
    with np.load(tmp_path / "y.npz") as z:
        assert np.array_equal(z["out.codes"], codes["out"])
