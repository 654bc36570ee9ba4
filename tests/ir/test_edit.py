"""GraphEditor: use-def edits on a draft, finished into a new graph; the input graph is never changed."""

from __future__ import annotations

import numpy as np
import pytest

from lasercc.ir import analysis
from lasercc.ir.edit import GraphEditor
from lasercc.ir.nodes import BSEEncode, Input, Reshape, Soma
from lasercc.ir.types import CodeType, TensorType
from lasercc.testing import GraphBuilder, mlp_graph, random_graph


def _code(shape, bits=8):
    return CodeType.per_tensor_type(bits, 0.1, 128, shape)


def _chain():
    b = GraphBuilder("chain")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 4))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=_code((2, 4))))
    r = b.add(Reshape(name="r", inputs=(e,), type=_code((2, 4))))
    w = b.const("w", np.eye(4, dtype=np.int8))
    s = b.add(Soma(name="s", inputs=(r,), weights=(w,), forms=("matmul",), scale_in=0.1, scale_w=(1.0,),
                   type=_code((2, 4))))
    t = b.add(Soma(name="t", inputs=(r, s), weights=(w, w), forms=("matmul", "matmul"), scale_in=0.1,
                   scale_w=(1.0,), type=_code((2, 4))))
    return b.graph([t])


def test_no_edit_returns_the_same_graph_object():
    g = mlp_graph(layers=2, width=4, batch=1)
    assert GraphEditor(g).finish() is g


def test_replace_all_uses_erase_and_finish():
    g = _chain()
    text = g.text()
    ed = GraphEditor(g)
    assert [n.name for n in ed.users("r")] == ["s", "t"] and ed.use_count("r") == 2
    assert ed.replace_all_uses("r", "e") == 2
    assert ed.users("r") == [] and [n.name for n in ed.users("e")] == ["r", "s", "t"]
    ed.erase("r")
    g2 = ed.finish().verify()
    assert [n.name for n in g2.nodes] == ["x", "e", "s", "t"]
    assert g2.node("t").inputs == ("e", "s")
    assert g.text() == text  # the input graph is untouched
    assert g2.node("s") is not g.node("s") and g2.node("x") is g.node("x")  # unchanged nodes are shared


def test_erase_refuses_a_value_still_read_or_an_output():
    ed = GraphEditor(_chain())
    with pytest.raises(ValueError, match="still read by %s, %t"):
        ed.erase("r")
    with pytest.raises(ValueError, match="graph output"):
        ed.erase("t")


def test_finish_prunes_dead_nodes_and_constants_and_restores_order():
    g = _chain()
    ed = GraphEditor(g)
    # t reads r twice over; rewire it to e only: s becomes dead, and so does its weight if unused
    ed.set_inputs("t", ("e", "e"))
    # a node added at the end but read by an earlier one: finish re-sorts it into place
    ed.add(Reshape(name="r2", inputs=("e",), type=_code((2, 4))))
    ed.set_inputs("t", ("r2", "e"))
    g2 = ed.finish().verify()
    assert [n.name for n in g2.nodes] == ["x", "e", "r2", "t"]
    assert set(g2.constants) == {"w1"}
    g3 = GraphEditor(g).finish(prune_nodes=False)
    assert g3 is g


def test_outputs_are_rewired_only_when_asked():
    ed = GraphEditor(_chain())
    ed.replace_all_uses("t", "s")
    assert ed.outputs == ("t",)
    ed.replace_all_uses("t", "s", outputs=True)
    assert ed.outputs == ("s",)
    assert [n.name for n in ed.finish().nodes] == ["x", "e", "r", "s"]


def test_fresh_constant_names():
    ed = GraphEditor(_chain())
    assert ed.add_constant("w1", np.zeros(2, np.int8)) == "w1.2"
    with pytest.raises(ValueError, match="taken"):
        ed.add_constant("w1", np.zeros(2, np.int8), exact=True)


@pytest.mark.parametrize("seed", range(10))
def test_analyses_agree_with_graph_methods(seed):
    g = random_graph(seed)
    assert g.users() is g.users()  # cached on the immutable graph
    assert {k: list(v) for k, v in g.users().items()} == g.consumers()
    assert analysis.live_nodes(g) <= {n.name for n in g.nodes}
    assert analysis.topological_order(list(reversed(g.nodes)))[0].op == "input"
    assert analysis.critical_path(g) == max(analysis.latency_steps(g)[o] for o in g.outputs)
