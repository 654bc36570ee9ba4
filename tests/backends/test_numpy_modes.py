"""The NumPy reference: ``codes`` and ``spikes`` modes agree exactly (codes and statistics) on
random graphs, and spiking nodes equal their integer definitions."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lasercc import bse_encode
from lasercc.backends.numpy_ref import NumpySpikes
from lasercc.backends.stats import bit_counts, critical_path
from lasercc.ir import WTAMax
from lasercc.runtime import run_graph
from lasercc.semantics import requantize
from lasercc.testing import mlp_graph, random_graph, random_inputs


@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 3))
def test_codes_and_spikes_modes_agree(seed, rows):
    g = random_graph(seed)
    inputs = random_inputs(g, seed, rows=rows)
    a = run_graph(g, inputs, mode="codes")
    b = run_graph(g, inputs, mode="spikes")
    for o in g.outputs:
        assert np.array_equal(a.codes[o], b.codes[o]), o
    assert a.stats["nodes"] == b.stats["nodes"]


def test_soma_over_spikes_is_the_integer_matmul():
    g = mlp_graph(layers=1, width=32, batch=4)
    inputs = random_inputs(g, 1)
    x_codes = run_graph(g.replace(outputs=("x_q",)), inputs).codes["x_q"]
    soma = g.node("fc0")
    w = g.constants[soma.weights[0]].astype(np.int64)
    acc = x_codes @ w + g.constants[soma.bias].astype(np.int64)
    want = requantize(acc, soma.scale_in, soma.scale_w, soma.type.scale[0], soma.type.zero_point[0], 8, soma.requant)
    assert np.array_equal(run_graph(g, inputs, mode="spikes").codes["fc0"], want)
    # synaptic events = sum over input spikes of the nonzero fan-out (counted independently here)
    st = run_graph(g, inputs).stats["nodes"]["fc0"]
    expect = sum(int(bin(int(c)).count("1")) * int((w[i] != 0).sum())
                 for row in x_codes for i, c in enumerate(row))
    assert st["synaptic_events"] == expect
    assert st["spikes"] == int(bit_counts(want).sum())


def test_wta_is_bit_serial_max():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(5, 9))
    ex = NumpySpikes()
    node = WTAMax(name="m", inputs=("x",), axis=1,
                  type={"bits": 8, "scale": (1.0,), "zero_point": (0,), "shape": (5, 1)})
    out = ex.wta_max(node, bse_encode(codes, 8))
    assert np.array_equal(out, bse_encode(codes.max(axis=1, keepdims=True), 8))


def test_latency_counts_bits_per_layer():
    g = mlp_graph(layers=3, width=8, batch=1, bits=8)
    # encoder emits 8 bits; each layer fires one step after its last input bit and emits 8 bits
    assert critical_path(g) == 8 + 3 * (1 + 8)


def test_batch_chunking_matches_single_rows():
    g = random_graph(5, batch=2)
    inputs = random_inputs(g, 5, rows=3)
    whole = run_graph(g, inputs).codes
    for c in range(3):
        part = run_graph(g, {k: v[2 * c:2 * c + 2] for k, v in inputs.items()}).codes
        for o in g.outputs:  # each batch's outputs are stacked on axis 0
            n = part[o].shape[0]
            assert np.array_equal(whole[o][n * c:n * (c + 1)], part[o])
