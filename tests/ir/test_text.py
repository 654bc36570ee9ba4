"""The textual IR: parse(print(g)) == g on examples and random graphs; parse errors are located."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasercc.errors import ParseError
from lasercc.ir import CodeType, parse_graph, print_graph
from lasercc.testing import mlp_graph, random_graph

ROOT = Path(__file__).resolve().parents[2]


@given(seed=st.integers(0, 2**32 - 1))
def test_roundtrip_random_graphs(seed):
    g = random_graph(seed)
    text = print_graph(g)
    g2 = parse_graph(text, g.constants.arrays())
    assert g2 == g
    assert print_graph(g2) == text
    g2.verify()


def test_roundtrip_examples():
    graphs = [mlp_graph(layers=2, width=8, batch=2)]
    for lir in sorted(ROOT.glob("examples/**/*.lir")):
        graphs.append(parse_graph(lir.read_text()))
    assert len(graphs) >= 2
    for g in graphs:
        assert parse_graph(print_graph(g)) == g


def test_floats_survive_exactly():
    t = CodeType(bits=8, scale=(0.1 + 0.2, 1e-37, 3.4028234663852886e38), zero_point=(0, 1, 2), shape=(1, 3), axis=1)
    g = mlp_graph(layers=1, width=3, batch=1)
    n = g.nodes[1].replace(type=t.with_shape((1, 3), axis=1))
    g = g.replace(nodes=(g.nodes[0], n, *g.nodes[2:]))
    assert parse_graph(print_graph(g)).nodes[1].type.scale == t.scale


def test_constants_bind_and_must_match():
    g = mlp_graph(layers=1, width=4, batch=1)
    arrays = g.constants.arrays()
    g2 = parse_graph(print_graph(g), arrays)
    assert all(np.array_equal(g2.constants[k], v) for k, v in arrays.items())
    bad = dict(arrays)
    k = next(iter(bad))
    bad[k] = bad[k].astype(np.int16)
    with pytest.raises(ParseError, match="declared"):
        parse_graph(print_graph(g), bad)


@pytest.mark.parametrize(
    ("mutate", "line", "token"),
    [
        (lambda t: t.replace("soma(", "soma[(", 1), 6, "["),
        (lambda t: t.replace("= bse_encode", "= bse_encodx", 1), 5, "bse_encodx"),
        (lambda t: t.replace("code<8", "code<40", 1), 5, None),
        (lambda t: t.replace("output", "outptu", 1), None, None),
    ],
)
def test_parse_errors_have_line_and_column(mutate, line, token):
    text = print_graph(mlp_graph(layers=1, width=4, batch=1))
    with pytest.raises(ParseError) as e:
        parse_graph(mutate(text))
    err = e.value
    assert err.line is not None and err.column is not None
    assert f"line {err.line}, column {err.column}" in str(err)
    if line is not None:
        assert err.line == line
    if token is not None:
        assert err.token == token and repr(token) in str(err)
