"""The energy profiler: linearity, an independent hand computation, overrides, the CLI and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lasercc.backends.profiler import profile
from lasercc.cli import main
from lasercc.errors import LasercError
from lasercc.hw.energy import LOIHI_PARTS, constant_sources, load_constants, loihi_node_energy
from lasercc.ir.artifact import Artifact
from lasercc.ir.nodes import BSEEncode, Input, Soma
from lasercc.ir.types import CodeType, TensorType
from lasercc.testing import GraphBuilder

ROOT = Path(__file__).resolve().parents[2]
GPT = ROOT / "examples" / "models" / "tiny_gpt.qdq.onnx"
GPT_CALIB = ROOT / "examples" / "models" / "tiny_gpt.calib.npz"

# Davies et al. 2018 Table 2 and the resource model's mesh hops, written out independently of the JSON
SYN, ACT, INACT, TILE, EW, NS = 23.6, 81.0, 52.0, 1.7, 3.0, 4.2


def two_node_graph():
    """x (f32 [2, 3]) -> BSE encode (4 bit) -> Soma with a 3 x 2 weight matrix holding a zero."""
    b = GraphBuilder("two")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 3))))
    q = b.add(BSEEncode(name="q", inputs=(x,), type=CodeType.per_tensor_type(4, 0.25, 0, (2, 3))))
    w = np.array([[1, 0], [2, -1], [0, 3]], dtype=np.int8)
    y = b.add(Soma(name="y", inputs=(q,), weights=(b.const("w", w),), forms=("matmul",), scale_in=0.25,
                   scale_w=(1.0,), type=CodeType.per_tensor_type(4, 0.5, 0, (2, 2))))
    return b.graph([q, y]), w


def popcount(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: bin(int(v)).count("1"))(a)


def test_dynamic_energy_is_linear_in_events():
    c = load_constants()
    spike = {"spike_in_tile": 1.7, "spike_hops": 3.6, "chip_links": 30.0}
    ev = {"spikes": 17, "synaptic_events": 130, "neuron_updates": 64, "macs": 9}
    for op in ("soma", "asnc", "decode_mac", "bse_encode"):
        one = loihi_node_energy(op, ev, c, spike)
        two = loihi_node_energy(op, {k: 2 * v for k, v in ev.items()}, c, spike)
        for part in LOIHI_PARTS:
            assert two[part] == pytest.approx(2 * one[part])
        assert sum(one.values()) > 0


def test_two_node_graph_matches_hand_computation():
    g, w = two_node_graph()
    x = np.array([[0.3, 1.2, 3.9], [2.0, 0.0, 0.75], [1.5, 1.5, 3.0], [0.25, 2.5, 1.0]], dtype=np.float32)
    prof = profile(Artifact(graph=g), inputs={"x": x})
    from lasercc.runtime import run_graph

    codes = run_graph(g, {"x": x}).codes
    q, y = codes["q"], codes["y"]
    hop = 0.5 * EW + 0.5 * NS  # no partition.json: one hop per spike, half E-W, half N-S
    # encoder: 4 neuron-steps per element, all active; one spike per set bit
    q_spikes = int(popcount(q).sum())
    e_q = q.size * 4 * ACT + q_spikes * (TILE + hop)
    # soma: each input spike reaches the nonzero weights of its row; 4 steps per output neuron
    fanout = (w != 0).sum(axis=1)
    syn = int((popcount(q) * fanout).sum())
    upd = y.size * 4
    act = min(upd, syn + int(popcount(y).sum()))
    e_y = syn * SYN + act * ACT + (upd - act) * INACT + int(popcount(y).sum()) * (TILE + hop)
    got = {n.name: n.loihi_total_pj for n in prof.nodes}
    assert got["q"] == pytest.approx(e_q, abs=1e-6)
    assert got["y"] == pytest.approx(e_y, abs=1e-6)
    assert prof.dynamic_pj == pytest.approx(e_q + e_y, abs=1e-6)
    assert "ESTIMATE" in prof.hops.source
    # static: static power x 1 chip x time; time = batches x steps x the step floor (tiny graph)
    c = load_constants()
    assert prof.time_s == pytest.approx(2 * prof.latency_steps * c.min_step_ns * 1e-9)
    assert prof.static_pj == pytest.approx(c.static_power_w_per_chip * prof.time_s * 1e12)


def test_override_changes_only_that_constant(tmp_path):
    g, _ = two_node_graph()
    x = np.full((2, 3), 1.0, dtype=np.float32)
    base = profile(Artifact(graph=g), inputs={"x": x})
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"synaptic_op_pj": {"value": 2 * SYN, "source": "test"}}))
    over = profile(Artifact(graph=g), inputs={"x": x}, constants=f)
    assert over.parts()["synaptic"] == pytest.approx(2 * base.parts()["synaptic"])
    assert over.parts()["neuron_active"] == pytest.approx(base.parts()["neuron_active"])
    assert load_constants({"static_power_w_per_chip": 0.0}).static_power_w_per_chip == 0.0


def test_unknown_or_bad_constant_is_one_line_error(tmp_path):
    with pytest.raises(LasercError, match="unknown energy constant 'synapse_pj'") as e:
        load_constants({"synapse_pj": 1.0})
    assert "\n" not in str(e.value)
    with pytest.raises(LasercError, match="bad energy constant synaptic_op_pj"):
        load_constants({"synaptic_op_pj": -1})
    assert "Davies" in constant_sources()["synaptic_op_pj"]


@pytest.fixture(scope="module")
def gpt_artifact(tmp_path_factory):
    import lasercc

    d = tmp_path_factory.mktemp("gpt") / "art"
    lasercc.compile(str(GPT), target="loihi2", calibration=str(GPT_CALIB), progress=False).save(d)
    return d


def test_cli_json_and_decodemac_share(gpt_artifact, capsys, tmp_path):
    inp = tmp_path / "in.npz"
    with np.load(GPT_CALIB) as z:
        ids = z["input_ids"][:4]
    np.savez(inp, input_ids=ids)
    assert main(["profile", str(gpt_artifact), "--input", str(inp), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["rows"] == 4 and d["tokens"] == ids.size and d["hops"]["source"].startswith("partition.json")
    nodes = d["nodes"]
    assert sum(n["loihi_pj"] for n in nodes.values()) == pytest.approx(d["totals"]["loihi_dynamic_pj"])
    # DecodeMAC share: its MACs (counted independently by the runtime) at 140 pJ over the Loihi total
    from lasercc.ir.artifact import load
    from lasercc.runtime import run_graph

    macs = run_graph(load(gpt_artifact).graph, {"input_ids": ids}).stats["total"]["macs"]
    assert macs > 0
    t = d["totals"]
    assert t["decodemac_pj"] == pytest.approx(140.0 * macs)
    assert t["decodemac_share_of_loihi"] == pytest.approx(140.0 * macs / t["loihi_pj"])
    assert t["decodemac_share_of_dynamic"] == pytest.approx(140.0 * macs / t["loihi_dynamic_pj"])
    assert d["by_kind"]["decode_mac"]["loihi_pj"] >= t["decodemac_pj"]


def test_cli_table_plot_and_gpu_measured(gpt_artifact, capsys, tmp_path):
    png = tmp_path / "e.png"
    meas = tmp_path / "gpu.json"
    meas.write_text(json.dumps({"variants": {"torch-fp16-eager": {"seconds": 1.0, "power_w": 300.0,
                                                                  "tokens_per_s": 1e4, "joules_per_token": 0.03}}}))
    assert main(["profile", str(gpt_artifact), "--plot", str(png), "--gpu-measured", str(meas)]) == 0
    out = capsys.readouterr().out
    assert "decode_mac" in out and "Loihi 1 silicon" in out and "GPU measured per token, NVML" in out
    assert "GPU model / measured" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = plt.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_cli_errors_exit_2(gpt_artifact, capsys, tmp_path):
    assert main(["profile", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"foo_pj": 1}')
    assert main(["profile", str(gpt_artifact), "--energy-constants", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown energy constant 'foo_pj'" in err and err.count("\n") == 1
