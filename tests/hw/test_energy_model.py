"""The energy model's identities: sources and ranges for every constant, total = dynamic + static x time
on both sides, ordered and monotone corners, the GPU roofline's own rules, expected vs counted events,
and the fitted constants tied to the published measurements they were fitted to."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from lasercc.backends.profiler import METRICS, count, metrics, price, profile, profile_counts, shape_counts
from lasercc.cli import main
from lasercc.errors import LasercError
from lasercc.hw.activity import expected_events
from lasercc.hw.energy import (
    KINDS,
    EnergyConstants,
    constant_table,
    load_constants,
    ranged_constants,
)
from lasercc.hw.gpu import GpuSpec, gpu_names, gpu_table, load_gpu, node_cost, ranged_gpu_constants
from lasercc.ir.artifact import Artifact
from lasercc.ir.nodes import BSEEncode, Input, Soma
from lasercc.ir.types import CodeType, TensorType
from lasercc.testing import GraphBuilder

ROOT = Path(__file__).resolve().parents[2]


def soma_graph(k: int = 6, n: int = 5, rows: int = 3, seed: int = 0):
    """x (f32 [rows, k]) -> BSE encode (6 bit) -> Soma with a dense (all nonzero) k x n weight matrix."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("dense")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(rows, k))))
    q = b.add(BSEEncode(name="q", inputs=(x,), type=CodeType.per_tensor_type(6, 0.25, 0, (rows, k))))
    w = rng.integers(1, 5, (k, n)).astype(np.int8) * rng.choice([-1, 1], (k, n)).astype(np.int8)
    y = b.add(Soma(name="y", inputs=(q,), weights=(b.const("w", w),), forms=("matmul",), scale_in=0.25,
                   scale_w=(1.0,), type=CodeType.per_tensor_type(6, 0.5, 0, (rows, n))))
    return b.graph([q, y])


def bench_module(name: str):  # noqa: ANN201
    """A bench script imported as a module (registered, so its dataclasses resolve)."""
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run_profile(**kw):
    g = soma_graph()
    x = np.random.default_rng(1).uniform(0, 15, (3, 6)).astype(np.float32)
    return g, x, profile(Artifact(graph=g), inputs={"x": x}, **kw)


# ---- every constant: a source, a kind, a range ---------------------------------------------------------------


def test_every_constant_has_source_kind_and_ordered_range():
    tables = {"loihi": constant_table()} | {f"gpu:{g}": gpu_table(g) for g in gpu_names()}
    for where, table in tables.items():
        for k, e in table.items():
            assert e["source"].strip() and e["unit"].strip(), (where, k)
            assert e["kind"] in KINDS, (where, k, e["kind"])
            assert e["low"] <= e["value"] <= e["high"], (where, k)
            if e["kind"] in ("assumption", "fitted"):
                assert e["low"] < e["high"], f"{where}.{k}: an assumption must carry a range"
    assert set(constant_table()) == set(EnergyConstants.model_fields)
    for g in gpu_names():
        assert set(gpu_table(g)) == set(GpuSpec.model_fields) - {"name", "label"}


def test_user_override_is_exact_unless_it_gives_a_range(tmp_path):
    assert load_constants({"synaptic_op_pj": 5.0}, corner="low").synaptic_op_pj == 5.0
    assert load_constants({"synaptic_op_pj": 5.0}, corner="high").synaptic_op_pj == 5.0
    assert "synaptic_op_pj" not in ranged_constants({"synaptic_op_pj": 5.0})
    r = {"synaptic_op_pj": {"value": 5.0, "low": 1.0, "high": 9.0}}
    assert (load_constants(r, "low").synaptic_op_pj, load_constants(r, "high").synaptic_op_pj) == (1.0, 9.0)
    with pytest.raises(LasercError, match="low <= value <= high"):
        load_constants({"synaptic_op_pj": {"value": 5.0, "low": 6.0}})
    f = tmp_path / "g.json"
    f.write_text(json.dumps({"kernel_overhead_us": 3.0, "h100": {"idle_w": 80.0}}))
    g = load_gpu("h100", f, "high")
    assert (g.kernel_overhead_us, g.idle_w) == (3.0, 80.0)
    with pytest.raises(LasercError, match="unknown GPU constant 'idle_watts'"):
        load_gpu("h100", {"idle_watts": 1.0})
    with pytest.raises(LasercError, match="unknown GPU 'v100'"):
        load_gpu("v100")
    with pytest.raises(LasercError, match="synaptic_op_pj: value must be a number"):
        load_constants({"synaptic_op_pj": "fast"})
    with pytest.raises(LasercError, match="must be a JSON object"):
        load_gpu("h100", {"h100": 5})


# ---- like for like: total = dynamic + static x time ----------------------------------------------------------


def test_total_is_dynamic_plus_static_power_times_time_on_both_sides():
    _, _, prof = run_profile(gpu="h100")
    c, g, p = prof.constants, prof.gpu, prof.priced
    m = metrics(prof.counts, p)
    assert m["loihi_total_pj"] == pytest.approx(p.dynamic_pj + c.static_power_w_per_chip * prof.chips * p.time_s * 1e12)
    assert m["gpu_total_pj"] == pytest.approx(p.gpu_dynamic_pj + g.active_w * p.gpu_time_s * 1e12)
    # at a stated throughput slower than both: each side pays static power for the whole wall time
    tps = prof.tokens / (10 * max(p.time_s, p.gpu_time_s))
    wall = prof.tokens / tps
    m2 = metrics(prof.counts, p, tps)
    assert m2["loihi_total_pj"] == pytest.approx(p.dynamic_pj + c.static_power_w_per_chip * prof.chips * wall * 1e12)
    assert m2["gpu_total_pj"] == pytest.approx(p.gpu_dynamic_pj + (g.active_w * p.gpu_time_s
                                                                   + g.idle_w * (wall - p.gpu_time_s)) * 1e12)
    assert m2["loihi_time_s"] == pytest.approx(wall) and m2["gpu_time_s"] == pytest.approx(wall)
    # dynamic energy does not depend on the stated throughput
    assert m2["loihi_dynamic_pj"] == m["loihi_dynamic_pj"] and m2["gpu_dynamic_pj"] == m["gpu_dynamic_pj"]


def test_ranges_are_ordered_and_drivers_are_ranged_constants():
    _, _, prof = run_profile(tokens_per_s=1e3)
    assert prof.ranges["loihi_time_s"].low == prof.ranges["loihi_time_s"].high  # the stated rate sets the time
    allowed = set(ranged_constants()) | {f"gpu.{k}" for k in ranged_gpu_constants(prof.gpu.name)}
    for k in METRICS:
        r = prof.ranges[k]
        assert r.low <= r.mid <= r.high, k
        assert r.driver in allowed or (r.driver == "" and r.low == r.high), (k, r.driver)
        assert 0.0 <= r.driver_share <= 1.0 + 1e-9
    # the central range value is the plain (central) profile
    assert prof.ranges["loihi_dynamic_pj"].mid == pytest.approx(prof.dynamic_pj)
    assert prof.ranges["gpu_dynamic_pj"].mid == pytest.approx(prof.gpu_pj)


def test_every_energy_grows_with_every_constant():
    """The corner bounds rest on monotonicity: raising any one constant never lowers an energy or a time."""
    g, x, prof = run_profile()
    base = metrics(prof.counts, price(prof.counts, load_constants(), load_gpu()))
    for name in ranged_constants():
        up = metrics(prof.counts, price(prof.counts, load_constants(pin={name: "high"}), load_gpu()))
        down = metrics(prof.counts, price(prof.counts, load_constants(pin={name: "low"}), load_gpu()))
        for k in METRICS[:8]:
            assert down[k] <= base[k] * (1 + 1e-12) + 1e-9 and base[k] <= up[k] * (1 + 1e-12) + 1e-9, (name, k)
    for name in ranged_gpu_constants():
        up = metrics(prof.counts, price(prof.counts, load_constants(), load_gpu(pin={name: "high"})))
        down = metrics(prof.counts, price(prof.counts, load_constants(), load_gpu(pin={name: "low"})))
        for k in METRICS[:8]:
            assert down[k] <= base[k] * (1 + 1e-12) + 1e-9 and base[k] <= up[k] * (1 + 1e-12) + 1e-9, (name, k)


# ---- the GPU roofline -----------------------------------------------------------------------------------------


def test_gpu_node_cost_is_the_roofline_and_weights_are_read_once_per_batch():
    g = load_gpu("a100")
    ops = {"macs": 1e9, "nonlinear_elements": 0.0, "adds": 0.0, "bits": 8.0, "onchip_bytes": 1e6,
           "dram_input_bytes": 1e5, "dram_weight_bytes": 4e8}
    parts, sec = node_cost(ops, g, 10)
    t_compute = 1e9 / (g.int8_tops * 1e12 / 2)
    t_mem = (4e8 + 1e5) / (g.mem_gb_s * 1e9)
    assert sec == pytest.approx(max(t_compute, t_mem) + g.kernel_overhead_us * 1e-6)
    assert parts["compute"] == pytest.approx(1e9 * g.mac_fraction_of_tdp * g.tdp_w / (g.int8_tops * 1e12 / 2) * 1e12)
    assert parts["dram"] == pytest.approx((4e8 + 1e5) * g.dram_pj_per_byte)
    # B rows per batch: per-row work x B, weights once -> DRAM energy per row = (W / B + inputs) x pJ/byte
    for b in (1, 8, 64):
        pb, _ = node_cost(ops, g, 10, rows=b)
        assert pb["dram"] / b == pytest.approx((4e8 / b + 1e5) * g.dram_pj_per_byte)
        assert pb["compute"] / b == pytest.approx(parts["compute"])


def test_sweep_batch_lowers_gpu_energy_per_token_and_leaves_loihi_unchanged(tmp_path):
    g = soma_graph(k=64, n=64, rows=1)
    counts = shape_counts(g, 0.4, tokens=4)
    per = {}
    for b in (1, 4):
        c = type(counts)(**{**counts.__dict__, "gpu_rows": float(b), "gpu_batches": 4 / b})
        per[b] = profile_counts(c)
    assert per[4].ranges["gpu_total_pj"].mid < per[1].ranges["gpu_total_pj"].mid
    assert per[4].ranges["loihi_total_pj"].mid == pytest.approx(per[1].ranges["loihi_total_pj"].mid)


# ---- expected events from shapes ------------------------------------------------------------------------------


def test_expected_events_equal_counted_for_dense_weights():
    g, x, prof = run_profile()
    from lasercc.runtime import run_graph

    codes = run_graph(g, {"x": x}).codes["q"]
    density = sum(bin(int(v)).count("1") for v in codes.ravel()) / (codes.size * 6)
    counted = {n.name: n.events for n in prof.nodes}
    exp = expected_events(g.node("y"), g, density)
    assert exp["synaptic_events"] == pytest.approx(counted["y"]["synaptic_events"])
    assert exp["neuron_updates"] == counted["y"]["neuron_updates"]
    assert expected_events(g.node("q"), g, 0.3)["neuron_updates"] == counted["q"]["neuron_updates"]


def test_shape_counts_prices_a_shape_only_graph():
    from lasercc.ir.graph import ConstSpec, Graph

    mod = bench_module("partition_llama7b")
    g: Graph = mod.llama_graph(layers=1, d=64, ffn=128, heads=2, vocab=100, context=16)
    assert any(isinstance(c, ConstSpec) for c in g.constants.values())
    p = profile_counts(shape_counts(g, 0.45, tokens=2))
    assert p.dynamic_pj > 0 and p.gpu_pj > 0 and p.decodemac_pj > 0
    w = sum(c.size for k, c in g.constants.items() if k.endswith(".w"))
    dram = sum(n.gpu_ops.get("dram_weight_bytes", 0.0) for n in p.counts.nodes)
    assert dram >= w  # every int8 matmul weight is read (plus norms and the embedding row)


# ---- the fitted constants are tied to the measurements they were fitted to ----------------------------------


def test_fitted_constants_match_their_published_measurements():
    ev = bench_module("energy_validation")
    assert load_gpu("h100").active_w == pytest.approx(ev.fit_active(), rel=0.01)
    assert load_constants().static_power_w_per_chip == pytest.approx(ev.LIF["static_w"], rel=0.01)
    assert "fitted" == gpu_table("h100")["active_w"]["kind"]


# ---- the CLI carries ranges and sources -----------------------------------------------------------------------


def test_cli_json_carries_ranges_and_every_source(tmp_path, capsys):
    g = soma_graph()
    art = tmp_path / "art"
    Artifact(graph=g).save(art)
    x = tmp_path / "x.npz"
    np.savez(x, x=np.ones((3, 6), np.float32))
    assert main(["profile", str(art), "--input", str(x), "--json", "--gpu", "h100", "--tokens-per-s", "50"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in METRICS:
        r = d["ranges"][k]
        assert r["low"] <= r["mid"] <= r["high"] and "driver" in r
    assert d["ranges"]["loihi_total_pj_per_token"]["mid"] == pytest.approx(d["ranges"]["loihi_total_pj"]["mid"] / 3)
    assert set(d["constants"]) == set(EnergyConstants.model_fields)
    assert all(v["source"] and v["kind"] in KINDS for v in d["constants"].values())
    assert d["gpu"]["name"] == "h100" and all(v["source"] for v in d["gpu"]["constants"].values())
    assert d["totals"]["tokens_per_s_stated"] == 50
    assert main(["profile", str(art), "--input", str(x), "--sweep-batch", "1,4"]) == 0
    out = capsys.readouterr().out
    assert "GPU batch" in out and "driver:" in out
    assert main(["profile", str(art), "--sweep-batch", "0"]) == 2
    assert "comma-separated positive integers" in capsys.readouterr().err
    assert main(["profile", str(art), "--tokens-per-s", "-1"]) == 2
    assert "must be positive" in capsys.readouterr().err
    bad = tmp_path / "g.json"
    cases = (("[1]", "must hold a JSON object"), ('{"h100": {"idle_w": "x"}}', "idle_w: value must be a number"),
             ("\xff", "cannot read GPU constants file"))
    for text, msg in cases:
        bad.write_text(text)
        assert main(["profile", str(art), "--gpu", "h100", "--gpu-constants", str(bad)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["profile", str(art), "--gpu-constants", str(tmp_path)]) == 2
    assert "no such GPU constants file" in capsys.readouterr().err


def test_counting_does_not_depend_on_constants():
    g = soma_graph()
    x = np.ones((3, 6), np.float32)
    c1, _ = count(Artifact(graph=g), {"x": x})
    p_lo = price(c1, load_constants(corner="low"), load_gpu(corner="low"))
    p_hi = price(c1, load_constants(corner="high"), load_gpu(corner="high"))
    assert [n.events for n in p_lo.nodes] == [n.events for n in p_hi.nodes]
    assert p_lo.dynamic_pj < p_hi.dynamic_pj and p_lo.gpu_dynamic_pj < p_hi.gpu_dynamic_pj
