"""Equivalence tests for fold, dce and encode-elim: run, transform, run again, compare codes."""

from __future__ import annotations

import numpy as np
import pytest

from lasercc.ir.nodes import BSEEncode, Gather, Input, Reshape, Soma, Transpose
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes.base import PassManager
from lasercc.runtime import run_graph
from lasercc.testing import GraphBuilder, random_graph, random_inputs


def _same_codes(g, g2, seed=0, mode="codes"):
    x = random_inputs(g, seed)
    a, b = run_graph(g, x, mode=mode).codes, run_graph(g2, x, mode=mode).codes
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("seed", range(40))
def test_pipeline_preserves_codes_on_random_graphs(seed):
    g = random_graph(seed)
    g2, _ = PassManager("fold,encode-elim,dce").run(g)
    _same_codes(g, g2, seed)


def _code(bits, shape, scale=0.1, zp=None):
    return CodeType.per_tensor_type(bits, scale, 2 ** (bits - 1) if zp is None else zp, shape)


def test_dce_removes_dead_nodes_and_constants():
    b = GraphBuilder("dead")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 4))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=_code(8, (2, 4))))
    w = b.const("w", np.eye(4, dtype=np.int8))
    b.add(Soma(name="dead", inputs=(e,), weights=(w,), forms=("matmul",), scale_in=1.0, scale_w=(1.0,),
               type=_code(8, (2, 4))))
    live = b.add(Reshape(name="r", inputs=(e,), type=_code(8, (8,))))
    g = b.graph([live, "dead"]).replace(outputs=(live,))
    g2, (rec,) = PassManager("dce").run(g)
    assert [n.name for n in g2.nodes] == ["x", "e", "r"] and w not in g2.constants
    assert rec.info["nodes_removed"] == 1 and rec.info["constants_removed"] == 1
    _same_codes(g, g2)


def test_encode_elim_chains_and_identity_soma():
    b = GraphBuilder("chains")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 6))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=_code(6, (2, 6))))
    r1 = b.add(Reshape(name="r1", inputs=(e,), type=_code(6, (3, 4))))
    r2 = b.add(Reshape(name="r2", inputs=(r1,), type=_code(6, (12,))))
    t1 = b.add(Transpose(name="t1", inputs=(e,), perm=(1, 0), type=_code(6, (6, 2))))
    t2 = b.add(Transpose(name="t2", inputs=(t1,), perm=(1, 0), type=_code(6, (2, 6))))
    # an exact identity Soma: w=1, b=0, scale 1 -> requantize(x) == x for every 6-bit code
    one = b.const("one", np.array([1], np.int8))
    zp = b.const("zp", np.array([-32], np.int64))  # codes are raw: the zero point is folded into the bias
    ident = b.add(Soma(name="id", inputs=(t2,), weights=(one,), forms=("mul",), bias=zp, scale_in=0.1, scale_w=(1.0,),
                       type=_code(6, (2, 6))))
    # a Soma with the same types but w=2 is NOT an identity and must stay
    two = b.const("two", np.array([2], np.int8))
    dbl = b.add(Soma(name="dbl", inputs=(ident,), weights=(two,), forms=("mul",), bias=None, scale_in=0.1,
                     scale_w=(1.0,), type=_code(6, (2, 6))))
    g = b.graph([r2, dbl])
    g2, (rec,) = PassManager("encode-elim").run(g)
    names = {n.name for n in g2.nodes}
    assert "r1" not in names and g2.node("r2").inputs == ("e",)
    assert {"t1", "t2", "id"}.isdisjoint(names) and g2.node("dbl").inputs == ("e",)
    assert rec.info["rewrites"]["identity_soma"] == 1
    _same_codes(g, g2)
    _same_codes(g, g2, mode="spikes")


def test_fold_embedding_projection_is_exact_and_removes_the_soma():
    rng = np.random.default_rng(1)
    b = GraphBuilder("emb")
    ids = b.add(Input(name="ids", type=TensorType(dtype="i64", shape=(3,))))
    table = b.const("table", rng.integers(0, 256, size=(20, 8)).astype(np.uint8))
    g0 = b.add(Gather(name="g", inputs=(ids,), table=table, type=_code(8, (3, 8))))
    w = b.const("w", rng.integers(-128, 128, size=(8, 5)).astype(np.int8))
    s = b.add(Soma(name="proj", inputs=(g0,), weights=(w,), forms=("matmul",), scale_in=0.1, scale_w=(0.01,),
                   type=_code(8, (3, 5))))
    g = b.graph([s])
    g2, (rec,) = PassManager("fold").run(g)
    assert isinstance(g2.node("proj"), Gather) and rec.info["folded"] == {"soma": 1}
    assert g2.constants[g2.node("proj").table].shape == (20, 5)
    x = {"ids": np.arange(21, dtype=np.int64) % 20}  # every token id
    np.testing.assert_array_equal(run_graph(g, x).codes["proj"], run_graph(g2, x).codes["proj"])
