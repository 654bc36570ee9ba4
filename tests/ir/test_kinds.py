"""Every node kind through every registry: a kind that lacks a rule fails here, never counts 0.

Two checks per registry. Statically: every kind in ``NODE_KINDS`` defines every rule of
``lasercc.ir.kinds.base.RULES`` below ``Node`` (whose defaults raise ``MissingRule``), and every
executor class has an implementation for every kind. Dynamically: graphs that together hold every
kind (the Lava test's seeds) run through every executor in every mode with identical codes and
statistics, and through the expected-event, GPU, partition, signed-encoding and Lava-lowering
sites. A kind declared without rules is then shown to stop each generic site with ``MissingRule``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from lasercc.backends.lava.lower import LOWERINGS, lower
from lasercc.backends.numpy_f32 import NumpyCodesF32
from lasercc.backends.numpy_ref import NumpyCodes, NumpySpikes
from lasercc.backends.stats import node_stats
from lasercc.hw.activity import expected_events
from lasercc.hw.energy import active_updates, gpu_node_ops
from lasercc.ir.analysis import latency_steps
from lasercc.ir.kinds import NODE_KINDS, RULES, Footprint, GpuWork, MissingRule, Node, Traits
from lasercc.ir.types import CodeType
from lasercc.passes.fuse import FuseAsnc
from lasercc.passes.partition import _layer, partition_graph
from lasercc.passes.signed import SignedEncode
from lasercc.runtime import run_graph
from lasercc.testing import random_graph, random_inputs

torch = pytest.importorskip("torch")
from lasercc.backends.torch_exec import TorchCodes, TorchSpikes  # noqa: E402
from lasercc.backends.torch_ste import SteExecutor, SteModel  # noqa: E402

SEEDS = (0, 2, 3, 5, 8, -6)  # tests/lava/test_lava_bitexact.py: together every node kind
EXECUTORS = (NumpyCodes, NumpySpikes, NumpyCodesF32, TorchCodes, TorchSpikes, SteExecutor)


def _graph(seed: int):
    g = random_graph(abs(seed), requant="fixed")
    if seed < 0:
        res = FuseAsnc()(g)
        g = getattr(res, "graph", res)
    return g


GRAPHS = {s: _graph(s) for s in SEEDS}


def test_the_graphs_hold_every_kind():
    assert {n.op for g in GRAPHS.values() for n in g.nodes} == set(NODE_KINDS)


@pytest.mark.parametrize("kind", sorted(NODE_KINDS))
def test_every_kind_defines_every_rule(kind):
    cls = NODE_KINDS[kind]
    assert isinstance(cls.kind_traits(), Traits)
    for rule in RULES[1:]:
        assert getattr(cls, rule) is not getattr(Node, rule), f"{cls.__name__} inherits the missing {rule!r}"
    if cls.kind_traits().spiking:
        assert cls.kind_traits().emits_spikes, "a spiking kind emits spikes"


def test_every_kind_is_exported_from_nodes():
    from lasercc.ir import kinds, nodes

    for cls in NODE_KINDS.values():
        assert cls.__name__ in kinds.__all__ and getattr(nodes, cls.__name__) is cls


@pytest.mark.parametrize("executor", EXECUTORS, ids=lambda c: c.__name__)
def test_every_executor_implements_every_kind(executor):
    missing = sorted(op for op, cls in NODE_KINDS.items() if op != "input" and cls not in executor._table)
    assert not missing


def test_lava_lowers_every_kind():
    for op, cls in NODE_KINDS.items():
        t = cls.kind_traits()
        assert (cls in LOWERINGS) == t.emits_spikes or (t.data_movement and not t.emits_spikes), op


@pytest.mark.parametrize("seed", SEEDS)
def test_every_executor_and_mode_agree_on_codes_and_stats(seed):
    """NumpyCodes (reference), NumpyCodesF32 (the default numpy codes path), both spikes modes, torch
    codes, and the STE forward: identical codes, and identical statistics where they are counted."""
    g = GRAPHS[seed]
    x = random_inputs(g, abs(seed), rows=2)
    ref = run_graph(g, x, executor=NumpyCodes())  # the int64 reference, one batch per walk
    runs = [run_graph(g, x, backend=b, mode=m) for b, m in (("numpy", "codes"), ("numpy", "spikes"),
                                                           ("torch", "codes"), ("torch", "spikes"))]
    for r in runs:
        for o in g.outputs:
            np.testing.assert_array_equal(r.codes[o], ref.codes[o])
        assert r.stats["total"] == ref.stats["total"]
    x1 = random_inputs(g, abs(seed))  # the STE model runs one batch
    ste, ref1 = SteModel(g)(x1), run_graph(g, x1, collect_stats=False)
    for o in g.outputs:
        np.testing.assert_array_equal(ste[o].detach().cpu().numpy(), ref1.codes[o])
    # every spiking kind costs something in the counted run (no silent 0)
    for n in g.nodes:
        if n.is_compute and np.prod(n.type.shape):
            assert ref.stats["nodes"][n.name]["neuron_updates"] > 0, n.op


@pytest.mark.parametrize("seed", SEEDS)
def test_every_generic_site_answers_for_every_node(seed):
    g = GRAPHS[seed]
    t = latency_steps(g)
    parts = partition_graph(g)
    placed = {lay.name for lay in parts.layers}
    for n in g.nodes:
        tr = n.kind_traits()
        assert t[n.name] >= max([t[i] for i in n.inputs] + [0])
        ev = expected_events(n, g, 0.25)
        ops = gpu_node_ops(n, g)
        fp = n.core_footprint(g)
        assert (fp is not None) == tr.spiking, n.op
        if tr.spiking:
            assert ev["neuron_updates"] > 0 and ops and ops["macs"] + ops["nonlinear_elements"] + ops["adds"] > 0
            assert _layer(n, g, _spec(), {}) is not None
            assert n.name in placed
        if tr.data_movement:
            assert ops == {} and ev["neuron_updates"] == ev["synaptic_events"] == 0 and t[n.name] == max(
                t[i] for i in n.inputs)
        if isinstance(n.type, CodeType):
            active_updates(n.op, {"neuron_updates": 4, "synaptic_events": 1, "spikes": 1})
    SignedEncode()(g)
    lower(g)


def _spec():
    from lasercc.hw.loihi2 import load_spec

    return load_spec(None)


class Bogus(Node):
    """A kind that declares its traits and nothing else."""

    op: ClassVar[str] = "bogus"
    traits: ClassVar[Traits] = Traits(spiking=True, emits_spikes=True)


class NoTraits(Node):
    op: ClassVar[str] = "no_traits"


def test_a_kind_without_rules_stops_every_generic_site():
    g = GRAPHS[0]
    src = next(n for n in g.nodes if isinstance(n.type, CodeType))
    b = Bogus(name="b", inputs=(src.name,), type=src.type)
    codes = np.zeros(src.type.shape, np.int64)
    for call in (lambda: node_stats(b, g, [codes], codes), lambda: expected_events(b, g, 0.5),
                 lambda: gpu_node_ops(b, g), lambda: _layer(b, g, _spec(), {}),
                 lambda: b.latency([1], [src.type])):
        with pytest.raises(MissingRule, match="Bogus"):
            call()
    with pytest.raises(MissingRule, match="traits"):
        _ = NoTraits(name="c", inputs=(src.name,), type=src.type).is_compute


def test_rule_records_are_plain_data():
    assert GpuWork().macs == 0 and Footprint().axons_per_neuron == 1
