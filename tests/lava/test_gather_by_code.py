"""A Gather indexed by codes computed in the network (RoBERTa/OPT position ids) runs in Lava bit for bit.

The ``gather_by_code`` process Horner-decodes the index train, reads the table rows a step after the last
index bit (a spiking node: T = T(index) + 1 + N, the same T as ``stats.latency_steps``) and emits them MSB
first. Checked on a hand-built graph whose index passes through a Soma (Dense), a Mask fill (constant index
codes) and a Take, against the NumPy reference (codes and per-node spikes) and an independent
``table[x + 2]``; an index beyond the table is the reference's error naming the node; and the RoBERTa
embedding pattern of tests/frontends/test_integer_positions.py compiled with ``--target loihi2``.

Lava runs in the ``.venv-lava`` interpreter in a subprocess (lava-nc needs Python 3.10); those tests skip,
with the reason shown, only when that environment does not exist.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import warnings

import numpy as np
import pytest
from lava_env import LAVA_PY, REPO, needs_lava

from lasercc.backends.lava.lower import lower
from lasercc.backends.stats import bit_counts, latency_steps
from lasercc.ir.artifact import Artifact
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import BSEEncode, Gather, Input, Mask, Soma, Take
from lasercc.ir.types import CodeType, TensorType
from lasercc.runtime import run_graph
from lasercc.testing import GraphBuilder

pytestmark = pytest.mark.lava
ROWS = 16  # table rows: index codes 0..15 are valid


def code_gather_graph() -> tuple[Graph, np.ndarray, np.ndarray]:
    """x (real integers 0..13) -> 4-bit codes -> Soma ``x + 2`` (5-bit) -> Mask (column 0 := 1, a "pad"
    position) -> Gather of a [16, 3] 8-bit table (``emb``) -> a matmul Soma (``mix``); and a Take of columns
    4, 1 of the masked positions -> Gather of a second [16, 2] 6-bit table (``emb2``). Returns the graph and
    both tables (the code is the row number, as in the frontend's position tables)."""
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (ROWS, 3)).astype(np.int64)
    table2 = rng.integers(0, 64, (ROWS, 2)).astype(np.int64)
    b = GraphBuilder("gather_by_code")
    b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 6))))
    b.add(BSEEncode(name="xc", inputs=("x",), type=CodeType.per_tensor_type(4, 1.0, 0, (2, 6))))
    b.add(Soma(name="pos", inputs=("xc",), type=CodeType.per_tensor_type(5, 1.0, 0, (2, 6)),
               weights=(b.const("w", np.ones(1, np.int64)),), forms=("mul",),
               bias=b.const("b", np.full(1, 2, np.int64)), scale_in=1.0, scale_w=(1.0,), requant="fixed"))
    pad = np.zeros((1, 6), bool)
    pad[0, 0] = True
    b.add(Mask(name="posm", inputs=("pos",), type=CodeType.per_tensor_type(5, 1.0, 0, (2, 6)),
               mask=b.const("m", pad), fill=1))
    b.add(Gather(name="emb", inputs=("posm",), table=b.const("t", table),
                 type=CodeType.per_tensor_type(8, 0.05, 128, (2, 6, 3))))
    w = rng.integers(-3, 4, (3, 4)).astype(np.int64)
    b.add(Soma(name="mix", inputs=("emb",), type=CodeType.per_tensor_type(8, 0.5, 128, (2, 6, 4)),
               weights=(b.const("wm", w),), forms=("matmul",), bias=None, scale_in=0.05, scale_w=(1.0,),
               requant="fixed"))
    b.add(Take(name="pick", inputs=("posm",), type=CodeType.per_tensor_type(5, 1.0, 0, (2, 2)), axis=1,
               indices=(4, 1)))
    b.add(Gather(name="emb2", inputs=("pick",), table=b.const("t2", table2),
                 type=CodeType.per_tensor_type(6, 0.1, 0, (2, 2, 2))))
    return b.graph(["emb", "mix", "emb2", "pos"]), table, table2


def _x(rows: int, seed: int) -> np.ndarray:
    """Random integers 0..13 (index codes 2..15) with both extremes present."""
    x = np.random.default_rng(seed).integers(0, 14, (rows, 6)).astype(np.float32)
    x[0, 1], x[-1, 4] = 0.0, 13.0
    return x


def test_plan_fires_one_step_after_the_last_index_bit():
    """xc emits steps 1..4; the pos Soma hears them through Dense (2..5), fires at 5 and emits 6..10; the
    gather decodes the index by step 10, fires at 11 and emits its 8 bits on 12..19 -- the latency model's
    T = T(index) + 1 + N, for this node and every other process (WTA aside, none here)."""
    g, _, _ = code_gather_graph()
    plan = lower(g)
    emb = plan.proc("emb")
    assert emb.kind == "gather_by_code" and emb.host_input is None
    assert [s.source for s in emb.slots] == ["pos"]  # the Mask folded into the index map: no process
    assert (emb.fire, emb.start, emb.last) == (11, 12, 19)
    t = latency_steps(g)
    assert t["emb"] == 19 and t["emb2"] == t["pos"] + 1 + 6
    for p in plan.procs:
        if p.kind != "sink":
            assert p.last == t[p.name], p.name
    assert plan.summary()["counts"]["gather_by_code"] == 2


@needs_lava
def test_gather_by_code_bit_exact_in_lava():
    from lasercc.backends.lava_runner import run_lava

    g, table, table2 = code_gather_graph()
    x = _x(4, 1)  # two samples of two rows, back to back
    ref = run_graph(g, {"x": x})
    res = run_lava(Artifact(graph=g), {"x": x})
    idx = x.astype(np.int64) + 2
    idx[:, 0] = 1
    want = {"emb": table[idx], "emb2": table2[idx[:, [4, 1]]]}  # independent of every backend
    for o in g.outputs:
        np.testing.assert_array_equal(res.codes[o], ref.codes[o], err_msg=o)
    for o, w in want.items():
        np.testing.assert_array_equal(res.codes[o], w, err_msg=o)
    lava = res.stats["lava"]
    assert lava["codes_match_reference"] and lava["spikes_match_reference"]
    # spikes Lava really emitted: the popcount of the gathered rows, and the reference's count per node
    assert lava["spikes"]["emb"] == int(bit_counts(want["emb"]).sum()) > 0
    assert {k: lava["spikes"][k] for k in ("emb", "emb2", "mix", "pos")} == {
        k: ref.stats["nodes"][k]["spikes"] for k in ("emb", "emb2", "mix", "pos")}
    assert lava["network"]["gather_by_code"] == 2 and lava["timesteps"] == 2 * lava["period_steps"]


@needs_lava
def test_index_beyond_the_table_is_the_reference_error(tmp_path):
    """The Lava entry itself (no NumPy run before it) reports the reference's error, naming the node."""
    g, _, _ = code_gather_graph()
    x = _x(2, 2)
    x[1, 3] = 15.0  # index 17 of 16 rows (column 0 would be masked to 1)
    with pytest.raises(Exception, match=r"index code out of range \[0, 16\) in gather %emb"):
        run_graph(g, {"x": x})
    art = Artifact(graph=g).save(tmp_path / "art")
    np.savez(tmp_path / "x.npz", x=x)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([str(LAVA_PY), "-W", "ignore", "-m", "lasercc.backends.lava.run", str(art), "--input",
                        str(tmp_path / "x.npz")], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert ("lasercc lava: error: lava backend failed at %emb: IndexError: index code out of range [0, 16) "
            "in gather %emb") in r.stderr


def _integer_positions():
    """tests/frontends/test_integer_positions.py (its RoBERTa module and export), loaded by path."""
    pytest.importorskip("torch", reason="exporting the RoBERTa pattern needs torch (the main .venv)")
    spec = importlib.util.spec_from_file_location("_integer_positions",
                                                  REPO / "tests" / "frontends" / "test_integer_positions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@needs_lava
def test_roberta_positions_compiled_for_loihi2_bit_exact_in_lava(tmp_path):
    """RoBERTa's ``cumsum(ids != pad) * (ids != pad) + pad`` positions index the position table inside the
    network; with ``--target loihi2`` Lava gives the NumPy codes, and the positions equal onnxruntime's."""
    import lasercc

    ip = _integer_positions()
    ip.torch.manual_seed(0)
    path = ip.export(ip.RobertaEmbeddings(), ["ids"], ["hidden", "pos"], tmp_path / "roberta.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(path, target="loihi2", calibration={"ids": ip.feeds(16, 1)["ids"]},
                              input_shapes={"ids": (1, ip.SEQ)}, progress=False)
    assert [p.kind for p in lower(art.graph).procs].count("gather_by_code") == 1
    held = {"ids": ip.feeds(4, 2)["ids"][1:3]}  # one right-padded and one left-padded row
    from lasercc.backends.lava_runner import run_lava

    ref = run_graph(art.graph, held)
    res = run_lava(art, held, timeout=300)
    for o in art.graph.outputs:
        np.testing.assert_array_equal(res.codes[o], ref.codes[o], err_msg=o)
    assert res.stats["lava"]["spikes_match_reference"]
    _, ref_pos = ip.ort_rows(path, held)
    pos = res.values[art.graph.outputs[1]]
    np.testing.assert_array_equal(pos, ref_pos)
    assert (ref_pos == ip.PAD).any()
