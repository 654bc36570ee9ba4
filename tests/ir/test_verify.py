"""The verifier rejects malformed graphs, naming the node and printing its IR text."""

import numpy as np
import pytest

from lasercc.errors import VerifyError
from lasercc.ir import CodeType, Graph, Input, Soma, TensorType
from lasercc.testing import mlp_graph


def _g():
    return mlp_graph(layers=2, width=4, batch=2)


def _swap(g, i, node):
    nodes = list(g.nodes)
    nodes[i] = node
    return g.replace(nodes=tuple(nodes))


def test_valid_graph_passes():
    _g().verify()


def test_unknown_constant():
    g = _g()
    bad = _swap(g, 2, g.nodes[2].replace(weights=("nope",)))
    with pytest.raises(VerifyError, match="unknown constant @nope") as e:
        bad.verify()
    assert e.value.node_name == "fc0" and "%fc0 = soma(" in str(e.value)


def test_type_mismatch_shape():
    g = _g()
    t = g.nodes[2].type
    bad = _swap(g, 2, g.nodes[2].replace(type=t.with_shape((2, 5))))
    with pytest.raises(VerifyError, match=r"result shape should be \[2, 4\]"):
        bad.verify()


def test_real_input_into_soma_is_a_type_error():
    g = _g()
    bad = _swap(g, 2, g.nodes[2].replace(inputs=("x",)))
    with pytest.raises(VerifyError, match="must be a code"):
        bad.verify()


def test_bits_out_of_range():
    with pytest.raises(ValueError, match="bits must be in"):
        CodeType(bits=33, scale=(1.0,), zero_point=(0,), shape=(1,))
    with pytest.raises(ValueError, match="bits must be in"):
        CodeType(bits=1, scale=(1.0,), zero_point=(0,), shape=(1,))


def test_dangling_value():
    g = _g()
    bad = _swap(g, 2, g.nodes[2].replace(inputs=("ghost",)))
    with pytest.raises(VerifyError, match="dangling"):
        bad.verify()


def test_cycle_is_named():
    g = _g()
    n1, n2 = g.nodes[2], g.nodes[3]
    bad = g.replace(nodes=(g.nodes[0], g.nodes[1], n1.replace(inputs=("fc1",)), n2))
    with pytest.raises(VerifyError, match="cycle through"):
        bad.verify()


def test_duplicate_names_and_outputs():
    g = _g()
    with pytest.raises(VerifyError, match="more than once"):
        g.replace(nodes=g.nodes + (g.nodes[-1],)).verify()
    with pytest.raises(VerifyError, match="not defined"):
        g.replace(outputs=("nothing",)).verify()


def test_accumulator_bound():
    g = Graph("big", (
        Input(name="x", type=CodeType.per_tensor_type(32, 1.0, 0, (1, 4096))),
        Soma(name="y", inputs=("x",), weights=("w",), forms=("matmul",), scale_in=1.0, scale_w=(1.0,),
             type=CodeType.per_tensor_type(8, 1.0, 0, (1, 1))),
    ), ("y",), {"w": np.full((4096, 1), 127, np.int8)})
    with pytest.raises(VerifyError, match="accumulator can reach"):
        g.verify()


def test_float_constants_rejected():
    with pytest.raises(ValueError, match="not allowed"):
        Graph("f", (Input(name="x", type=TensorType(dtype="f32", shape=(1,))),), ("x",), {"w": np.zeros(2, np.float32)})


def test_nodes_are_immutable():
    n = _g().nodes[2]
    with pytest.raises(ValueError):  # pydantic ValidationError for frozen models
        n.scale_in = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        _g().constants["w1"][0, 0] = 1
