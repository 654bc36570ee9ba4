"""The ``signed-encode`` pass: outputs bit-identical in every mode, spikes counted by the signed rule.

Equivalence habit (QONNX/FINN): run, transform, run again, compare -- on random graphs that use
every node kind, in NumPy codes and spikes modes and torch codes and spikes modes.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.errors import InputError
from lasercc.ir import Graph
from lasercc.ir.nodes import BSEEncode, Input, Reshape, Soma
from lasercc.ir.text import parse_graph, print_graph
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes import run_passes
from lasercc.passes.signed import SignedEncode
from lasercc.runtime import run_graph
from lasercc.testing import mlp_graph, random_graph, random_inputs

MARK_ALL = SignedEncode(min_zero_point_fraction=0.0)


def _check_same_outputs(g: Graph, g2: Graph, inputs: dict, backends=(("numpy", "spikes"), ("torch", "spikes"))):
    ref = run_graph(g, inputs, mode="codes")
    for backend, mode in (("numpy", "codes"),) + tuple(backends):
        got = run_graph(g2, inputs, backend=backend, mode=mode)
        for o in g.outputs:
            assert np.array_equal(ref.codes[o], got.codes[o]), (backend, mode, o)
        yield backend, mode, got


@pytest.mark.parametrize("seed", range(30))
def test_bit_identical_on_random_graphs_all_modes(seed):
    g = random_graph(seed)
    res = MARK_ALL.run(g)
    g2 = res.graph.verify()
    inputs = random_inputs(g, seed)
    stats = {(b, m): r.stats["nodes"] for b, m, r in _check_same_outputs(g, g2, inputs, (
        ("numpy", "spikes"), ("torch", "codes"), ("torch", "spikes")))}
    # spikes counted on real ternary trains equal the codes-mode rule popcount(|code - zp|)
    assert stats[("numpy", "spikes")] == stats[("numpy", "codes")] == stats[("torch", "spikes")]
    assert parse_graph(print_graph(g2), g2.constants.arrays()) == g2


def test_random_graphs_exercise_every_signed_reader():
    """The parametrized seeds above really send signed trains into every node kind that reads them."""
    readers = set()
    for seed in range(30):
        g2 = MARK_ALL.run(random_graph(seed)).graph
        for n in g2.nodes:
            if any(isinstance(t := g2.type_of(i), CodeType) and t.signed for i in n.inputs):
                readers.add(n.op)
    assert {"soma", "decode_mac", "asnc", "wta_max", "mask", "concat", "slice", "take", "transpose",
            "reshape"} <= readers


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 2))
def test_bit_identical_hypothesis(seed, rows):
    g = random_graph(seed)
    g2 = MARK_ALL.run(g).graph
    for _ in _check_same_outputs(g, g2, random_inputs(g, seed, rows=rows), (("numpy", "spikes"),)):
        pass


def test_spike_and_synaptic_counts_follow_the_signed_rule():
    g = mlp_graph(layers=2, width=16, batch=4)
    g2 = MARK_ALL.run(g).graph
    inputs = random_inputs(g, 3)
    for mode in ("codes", "spikes"):
        st_ = run_graph(g2, inputs, mode=mode).stats["nodes"]
        x_name = g2.node("fc0").inputs[0]
        xt = g2.type_of(x_name)
        assert xt.signed
        x = run_graph(g2.replace(outputs=(x_name,)), inputs).codes[x_name]
        zp = xt.zero_point[0]
        # independent count: one spike per set bit of |code - zp|
        assert st_[x_name]["spikes"] == sum(bin(abs(int(c) - zp)).count("1") for c in x.ravel())
        w = g2.constants[g2.node("fc0").weights[0]]
        want = sum(bin(abs(int(c) - zp)).count("1") * int((w[i] != 0).sum()) for row in x for i, c in enumerate(row))
        assert st_["fc0"]["synaptic_events"] == want


def test_heuristic_marks_mid_zero_points_only():
    x = Input(name="x", type=TensorType(dtype="f32", shape=(2, 4)))
    mid = BSEEncode(name="mid", inputs=("x",), type=CodeType.per_tensor_type(8, 0.1, 128, (2, 4)))
    edge = BSEEncode(name="edge", inputs=("x",), type=CodeType.per_tensor_type(8, 0.1, 3, (2, 4)))
    r = Reshape(name="r", inputs=("mid",), type=mid.type.with_shape((8,)))
    g = Graph("h", (x, mid, edge, r), ("r", "edge"), {}).verify()
    res = SignedEncode().run(g)
    assert res.changed and res.info["marked"] == ["mid", "r"]  # the reshape follows its source
    assert not res.graph.type_of("edge").signed and not isinstance(res.graph.type_of("x"), CodeType)
    # idempotent, and a strict threshold marks nothing
    assert not SignedEncode().run(res.graph).changed
    assert not SignedEncode(min_zero_point_fraction=0.5).run(g).changed
    # the edited graph still runs to the same bits
    for _ in _check_same_outputs(g, res.graph, {"x": np.linspace(-20, 20, 8, dtype=np.float32).reshape(2, 4)}):
        pass


def test_skip_consumers_and_per_axis_block_marking():
    g = mlp_graph(layers=1, width=8, batch=2)
    assert MARK_ALL.run(g).changed
    blocked = SignedEncode(min_zero_point_fraction=0.0, skip_consumers=("soma",)).run(g)
    assert not blocked.graph.type_of(g.node("fc0").inputs[0]).signed
    assert any(k.startswith("read by soma") for k in blocked.info["skipped"])
    with pytest.raises(ValueError, match="per-tensor"):
        CodeType(bits=8, scale=(0.1, 0.2), zero_point=(1, 2), shape=(2, 2), axis=1, encoding="signed")


def test_measure_mode_counts_real_spikes(tmp_path):
    g = random_graph(7)
    inputs = random_inputs(g, 7)
    path = tmp_path / "x.npz"
    np.savez(path, **inputs)
    res = SignedEncode(measure=True, sample_inputs=str(path)).run(g)
    before = run_graph(g, inputs).stats["total"]["spikes"]
    after = run_graph(res.graph, inputs).stats["total"]["spikes"]
    assert res.info["spikes_before"] == before and res.info["spikes_after"] == after
    assert after <= before
    # marking everything can only do as well as measuring (measure marks exactly the winning groups)
    assert after <= run_graph(MARK_ALL.run(g).graph, inputs).stats["total"]["spikes"]
    for _ in _check_same_outputs(g, res.graph, inputs):
        pass
    with pytest.raises(InputError, match="sample_inputs"):
        SignedEncode(measure=True).run(g)


def test_pipeline_text_and_soma_reading_two_signed_inputs():
    g = random_graph(3)
    g2 = run_passes(g, "signed-encode{min_zero_point_fraction=0.0}")
    assert g2 == MARK_ALL.run(g).graph
    two = [n for s in range(30) for g3 in [MARK_ALL.run(random_graph(s)).graph] for n in g3.nodes
           if isinstance(n, Soma) and len(n.inputs) == 2 and all(g3.type_of(i).signed for i in n.inputs)]
    assert two  # residual adds (two mul-form signed inputs, zp * W folded per input) are among the seeds


@pytest.mark.parametrize("plan", [("fp16", "fp32"), ("int8", "i64"), ("fp32", None)])
def test_gpu_matmul_plans_on_ternary_spikes(plan):
    """Ternary spikes reach the Soma matmul as -1/0/1 operands: the GPU plans (fp16/fp32 operands,
    int8 x int8) must stay exact on them; their slicing runs here with exact CPU kernels."""
    from lasercc.backends.torch_exec import torch_executor

    for seed in range(8):
        g = random_graph(seed)
        g2 = MARK_ALL.run(g).graph
        inputs = random_inputs(g, seed)
        ex = torch_executor(mode="spikes")
        ex.engine, ex.run_as = plan
        ref = run_graph(g, inputs)
        got = run_graph(g2, inputs, executor=ex, collect_stats=False)
        for o in g.outputs:
            assert np.array_equal(ref.codes[o], got.codes[o]), (seed, o)


def test_text_form_of_signed_types():
    g = MARK_ALL.run(mlp_graph(layers=1, width=4, batch=2)).graph
    text = print_graph(g)
    assert ", signed>[" in text
    assert ", signed>" not in print_graph(mlp_graph(layers=1, width=4, batch=2))  # the default prints as before
    assert parse_graph(text, g.constants.arrays()) == g
    # "signed" as a plain string attribute is quoted, so it can never be read as the encoding keyword
    r = next(MARK_ALL.run(random_graph(s)).graph for s in range(30)
             if any(n.op == "asnc" for n in random_graph(s).nodes))
    odd = r.replace(nodes=tuple(n.replace(function="signed") if n.op == "asnc" else n for n in r.nodes))
    assert 'function = "signed"' in print_graph(odd)
    assert parse_graph(print_graph(odd), odd.constants.arrays()) == odd
