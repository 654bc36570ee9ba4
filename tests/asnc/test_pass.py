"""The asnc-fit pass: LUT graph vs refitted graph, run end to end through the reference backend."""

from __future__ import annotations

import numpy as np
import pytest

from lasercc.asnc import ASNCTable, span_output_q, span_q
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNCSegment, Input
from lasercc.ir.types import CodeType
from lasercc.passes import PassManager, get_pass, parse_pipeline
from lasercc.passes.asnc_fit import AsncFit
from lasercc.runtime import run_graph
from lasercc.semantics import quantize

BITS = 12
IQ = span_q(-8.0, 8.0, BITS)
SHAPE = (4, 1024)


def _lut_graph(fn: str, with_hist: bool) -> Graph:
    """x (12-bit codes) -> ASNC lookup table of fn (the exact quantized function) -> output."""
    oq = span_output_q(fn, IQ, BITS)
    lut = ASNCTable.lookup_table(fn, input_q=IQ, output_q=oq)
    xt = CodeType.per_tensor_type(BITS, IQ.scale, IQ.zero_point, SHAPE)
    yt = CodeType.per_tensor_type(BITS, oq.scale, oq.zero_point, SHAPE)
    node, consts = lut.to_node("y", "x", yt, histogram="y.hist" if with_hist else None)
    if with_hist:
        cal = np.clip(np.random.default_rng(0).normal(0, 2, 50_000), -8, 8)
        consts["y.hist"] = np.bincount(quantize(cal, IQ.scale, IQ.zero_point, BITS), minlength=1 << BITS)
    return Graph("g", (Input(name="x", type=xt), node), ("y",), consts).verify()


@pytest.mark.parametrize("fn", ["silu", "gelu"])
def test_fitted_graph_tracks_lut_graph(fn):
    g = _lut_graph(fn, with_hist=True)
    res = AsncFit(max_segments=16).run(g)
    assert res.changed and res.info["refitted"] == 1
    g2 = res.graph.verify()
    node = g2.node("y")
    assert isinstance(node, ASNCSegment) and g2.constants[node.slopes].size == 16
    assert node.histogram == "y.hist" and node.thresholds == g.node("y").thresholds  # own constants reused
    assert set(g2.constants) == set(g.constants)  # nothing orphaned
    # equivalence-style check: every input code through both graphs
    x = np.arange(1 << BITS, dtype=np.int64).reshape(SHAPE)
    lut_codes = run_graph(g, {"x": x}).codes["y"]
    fit_codes = run_graph(g2, {"x": x}).codes["y"]
    diff = np.abs(fit_codes - lut_codes)
    assert diff.max() == res.info["nodes"]["y"]["max_code_error"]
    assert diff.max() <= 16  # 16 segments at 12 bits: a few LSB, most in the rarely-seen tails
    hist = g.constants["y.hist"].reshape(SHAPE)
    assert np.sum(hist * diff**2) / hist.sum() <= 2.0  # where inputs actually fall: ~1 LSB
    # and on the calibration distribution the refit is close to the LUT's own (floor) error
    oq = span_output_q(fn, IQ, BITS)
    assert res.info["nodes"]["y"]["mse"] < 3 * res.info["nodes"]["y"]["mse_floor"] + 2 * oq.scale**2


def test_pass_is_idempotent_and_pipeline_spec():
    g = _lut_graph("silu", with_hist=False)
    (p,) = parse_pipeline("asnc-fit{max_segments=8,breakpoints=uniform}")
    assert isinstance(p, AsncFit) and p.max_segments == 8 and p.breakpoints == "uniform"
    assert get_pass("asnc-fit") is AsncFit
    once, records = PassManager([p]).run(g)
    assert records[0].changed
    again = p.run(once)
    assert not again.changed and again.graph is once
    assert once.constants[once.node("y").slopes].size == 8


def test_pass_leaves_unfittable_nodes_alone():
    g = _lut_graph("silu", with_hist=False)
    table_node = g.node("y").replace(function="table")
    g = g.replace(nodes=(g.nodes[0], table_node))
    res = AsncFit().run(g)
    assert not res.changed and res.graph is g


def test_pass_rejects_bad_options():
    with pytest.raises(ValueError, match="max_segments"):
        AsncFit(max_segments=0)
