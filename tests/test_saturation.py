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


def test_linear_nodes_at_their_limits_are_counted() -> None:
    art = lasercc.load(EXAMPLE)
    codes = art.run({"x": _x() * 10}, output="codes")
    out = art.graph.node("out")
    c = codes["out"]
    zp = out.type.zero_point[0]
    want = int(((c == out.type.hi) & (zp != out.type.hi)).sum() + ((c == 0) & (zp != 0)).sum())
    assert art.stats["saturation"]["out"]["count"] == want > 0


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
    assert main(["simulate", str(EXAMPLE), "-i", str(EXAMPLE / "input.npz"), "--saturation-warn", "0"]) == 0
    assert "warning" in capsys.readouterr().err


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
