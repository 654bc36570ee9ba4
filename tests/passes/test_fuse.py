"""requant->ASNC fusion (``fuse-asnc``): exact mode leaves codes unchanged, refit mode trades error
for segments, and the fused node runs, prints, verifies and partitions like any other."""

from __future__ import annotations

import numpy as np
import pytest

from lasercc.asnc.fit import span_output_q
from lasercc.asnc.table import ASNCTable
from lasercc.errors import VerifyError
from lasercc.ir import parse_graph, print_graph
from lasercc.ir.nodes import ASNCSegment, BSEEncode, Input, Soma, SomaASNC
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes.base import PassManager
from lasercc.passes.fuse import FuseAsnc, composed_step_table, soma_acc_range, soma_requant
from lasercc.passes.partition import partition_graph
from lasercc.runtime import run_graph
from lasercc.semantics import asnc_evaluate
from lasercc.testing import GraphBuilder, random_graph, random_inputs


def _code(bits, shape, scale=0.1, zp=None):
    return CodeType.per_tensor_type(bits, scale, 2 ** (bits - 1) if zp is None else zp, shape)


def _same_codes(g, g2, seed=0, modes=("codes", "spikes")):
    x = random_inputs(g, seed)
    for mode in modes:
        a, b = run_graph(g, x, mode=mode), run_graph(g2, x, mode=mode)
        assert set(a.codes) == set(b.codes)
        for k in a.codes:
            np.testing.assert_array_equal(a.codes[k], b.codes[k], err_msg=f"{k} ({mode})")
    return a, b


def soma_asnc_graph(seed=0, *, mid_bits=8, out_bits=8, lut=True, requant="ort", k=16, n=12, batch=8,
                    scale_in=None, extra_consumer=False, per_channel=False, function="table"):
    """x -> encode -> Soma (matmul + bias) -> ASNC (a random LUT or random affine segments)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"pair{seed}")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(batch, k))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=_code(8, (batch, k), scale=0.05)))
    w = b.const("w", rng.integers(-128, 128, size=(k, n)).astype(np.int8))
    bias = b.const("b", rng.integers(-5000, 5000, size=(n,)).astype(np.int64))
    s_in = scale_in if scale_in is not None else float(np.float32(2 ** (mid_bits - 2) / (np.sqrt(k) * 128 * 64)))
    sw = tuple(float(np.float32(v)) for v in rng.uniform(0.5, 2, size=n if per_channel else 1))
    mid = b.add(Soma(name="fc", inputs=(e,), weights=(w,), forms=("matmul",), bias=bias, scale_in=s_in,
                     scale_w=sw, requant=requant, type=_code(mid_bits, (batch, n), scale=0.05)))
    if lut:
        m = 2**mid_bits
        thr, a = np.arange(1, m, dtype=np.int64), np.zeros(m, np.int64)
        c, shift = rng.integers(0, 2**out_bits, size=m).astype(np.int64), 0
    else:
        thr = np.unique(rng.integers(1, 2**mid_bits, size=5)).astype(np.int64)
        shift = 4
        a = rng.integers(-(2**6), 2**6, size=thr.size + 1).astype(np.int64)
        c = rng.integers(0, 2 ** (out_bits + shift), size=thr.size + 1).astype(np.int64)
    y = b.add(ASNCSegment(name="act", inputs=(mid,), function=function, thresholds=b.const("thr", thr),
                          slopes=b.const("a", a), intercepts=b.const("c", c), shift=shift,
                          type=_code(out_bits, (batch, n), scale=0.02, zp=0)))
    outs = [y]
    if extra_consumer:
        outs.append(b.add(ASNCSegment(name="act2", inputs=(mid,), function=function, thresholds="thr2",
                                      slopes="a2", intercepts="c2", shift=shift, type=b.type(y))))
        b.consts.update(thr2=thr, a2=a, c2=c)
    return b.graph(outs)


@pytest.mark.parametrize("requant", ["ort", "fixed"])
@pytest.mark.parametrize("lut", [True, False])
def test_exact_fusion_keeps_codes_on_soma_asnc_graph(requant, lut):
    g = soma_asnc_graph(1, requant=requant, lut=lut)
    g2, (rec,) = PassManager("fuse-asnc").run(g)
    assert rec.changed and [n.op for n in g2.nodes] == ["input", "bse_encode", "soma_asnc"]
    info = rec.info["nodes"]["act"]
    assert info["segments_after"] <= 256  # a LUT on 8-bit intermediate codes
    before, after = _same_codes(g, g2)
    # latency: one spiking node instead of two, saving N_mid + 1 steps; the 8-bit train is gone
    assert rec.info["latency_steps"]["saved"] == 8 + 1
    assert before.stats["latency_steps"] - after.stats["latency_steps"] == 9
    mid_spikes = before.stats["nodes"]["fc"]["spikes"]
    assert mid_spikes > 0
    assert before.stats["total"]["spikes"] - after.stats["total"]["spikes"] == mid_spikes
    # synaptic events are the Soma's, unchanged
    assert after.stats["nodes"]["act"]["synaptic_events"] == before.stats["nodes"]["fc"]["synaptic_events"]


@pytest.mark.parametrize("requant", ["ort", "fixed"])
@pytest.mark.parametrize("scale_in", [3e-5, 0.37, 2.5])  # steps many accs wide, ~3 wide, and skipping codes
def test_composed_table_matches_requant_then_asnc_for_every_accumulator(requant, scale_in):
    """Independent reference: every reachable accumulator, requantize then ASNC, vs the one table."""
    g = soma_asnc_graph(2, requant=requant, lut=False, k=2, n=3, scale_in=scale_in)
    soma, asnc = g.node("fc"), g.node("act")
    lo, hi = soma_acc_range(soma, g)
    thr, a, c, _, _ = composed_step_table(soma, asnc, g, lo, hi)
    acc = np.arange(lo, hi + 1, dtype=np.int64)
    k = g.constants
    ref = asnc_evaluate(soma_requant(soma, acc), k[asnc.thresholds], k[asnc.slopes], k[asnc.intercepts], asnc.shift, 8)
    np.testing.assert_array_equal(asnc_evaluate(acc, thr, a, c, 0, 8), ref)
    assert np.all(np.diff(thr) > 0) and np.all(np.diff(np.concatenate([[-1], c])) != 0)  # merged


def test_acc_range_is_tight():
    g = soma_asnc_graph(3, k=4, n=2)
    soma = g.node("fc")
    w, b = g.constants[soma.weights[0]].astype(np.int64), g.constants[soma.bias]
    lo, hi = soma_acc_range(soma, g)
    assert lo == int((255 * np.minimum(w, 0).sum(axis=0) + b).min())
    assert hi == int((255 * np.maximum(w, 0).sum(axis=0) + b).max())


def test_exact_fusion_keeps_codes_on_random_graphs():
    fused = 0
    for seed in range(80):
        g = random_graph(seed, steps=10)
        g2, (rec,) = PassManager("fuse-asnc").run(g)
        if rec.changed:
            fused += 1
            assert any(isinstance(n, SomaASNC) for n in g2.nodes)
            _same_codes(g, g2, seed)
    assert fused >= 3


def test_ineligible_pairs_are_left_alone_with_a_reason():
    for kw, why in [({"extra_consumer": True}, "other consumers"), ({"per_channel": True}, "per-channel")]:
        g = soma_asnc_graph(4, **kw)
        res = FuseAsnc().run(g)
        assert not res.changed and res.graph is g and why in res.info["skipped"]["act"]
    g = soma_asnc_graph(4)
    g = g.replace(outputs=(*g.outputs, "fc"))
    res = FuseAsnc().run(g)
    assert not res.changed and "graph output" in res.info["skipped"]["act"]


def test_fused_graph_prints_parses_and_verifies():
    g2 = FuseAsnc()(soma_asnc_graph(5))
    text = print_graph(g2)
    assert "soma_asnc" in text
    assert parse_graph(text, g2.constants.arrays()) == g2


def test_verifier_bounds_the_table_by_the_accumulator():
    g2 = FuseAsnc()(soma_asnc_graph(6))
    n = g2.node("act")
    big = np.full(g2.constants[n.slopes].shape, 2**45, np.int64)  # 2^45 * |acc| (> 2^17) >= 2^62
    bad = g2.replace(constants=g2.constants.with_items(**{n.slopes: big}))
    with pytest.raises(VerifyError, match="2\\^62"):
        bad.verify()


def test_refit_uses_fewer_segments_and_reports_the_error_change():
    g = soma_asnc_graph(7, mid_bits=8, out_bits=8, function="silu", k=64, n=16, batch=16)
    # make the ASNC the exact quantized silu on the intermediate codes (what the frontend emits),
    # with an output type spanning silu's range
    mid = g.node("fc").type
    q = span_output_q("silu", mid, bits=8)
    out = CodeType.per_tensor_type(8, q.scale, q.zero_point, mid.shape)
    lut = ASNCTable.lookup_table("silu", input_q=mid, output_q=out)
    node, consts = lut.to_node("act", "fc", out, graph_constants_prefix="lut")
    g = g.replace(nodes=(*g.nodes[:-1], node), constants=g.constants.with_items(**consts)).verify()
    g2, (rec,) = PassManager("fuse-asnc{mode=refit,max_segments=16}").run(g)
    info = rec.info["nodes"]["act"]
    assert rec.changed and info["segments_after"] <= 16 < info["segments_before"]
    # one rounding (the intermediate requantization) fewer: no worse than the unfused LUT here
    assert 0 < info["mse_fused"] <= info["mse_unfused"]
    # both numpy modes agree on the refitted node, and it is close to the unfused graph
    x = random_inputs(g, 7)
    codes = run_graph(g2, x, mode="codes").codes["act"]
    np.testing.assert_array_equal(codes, run_graph(g2, x, mode="spikes").codes["act"])
    ref = run_graph(g, x, mode="codes").codes["act"]
    assert 0 < np.abs(codes - ref).max() <= info["max_code_diff"]


def test_partition_places_fused_graphs():
    g = soma_asnc_graph(8)
    g2 = FuseAsnc()(g)
    p1, p2 = partition_graph(g), partition_graph(g2)
    lay = {x.name: x for x in p2.layers}
    assert set(lay) == {"e", "act"} and lay["act"].op == "soma_asnc"
    assert lay["act"].k == 16 and lay["act"].mem_fixed > 0  # synapses of the Soma + the table once per core
    assert p2.best.traffic["messages"] < p1.best.traffic["messages"]  # the 8-bit train no longer travels


@pytest.mark.parametrize("mode", ["codes", "spikes"])
@pytest.mark.parametrize("lut", [True, False])
def test_torch_backend_runs_fused_graphs_bit_exactly(mode, lut):
    pytest.importorskip("torch")
    g = soma_asnc_graph(3, lut=lut)
    fused, _ = PassManager([FuseAsnc()]).run(g)
    assert any(isinstance(n, SomaASNC) for n in fused.nodes)
    inputs = random_inputs(fused, 3, rows=2)
    ref = run_graph(fused, inputs, backend="numpy", mode=mode)
    got = run_graph(fused, inputs, backend="torch", mode=mode)
    for o in fused.outputs:
        assert np.array_equal(ref.codes[o], got.codes[o])
    assert ref.stats["total"] == got.stats["total"]
