"""Expected event counts of a graph from its shapes and a spike density, for graphs too big to run.

A LLaMA-7B-shaped graph holds shape-only weights (``ConstSpec``): it can be partitioned but not run,
so its events cannot be counted. This module gives the *expected* counts of the rules in
:mod:`lasercc.backends.stats` when every code of ``b`` bits carries ``density x b`` spikes on
average (``density`` = the fraction of set bits, measured on a model that does run) and every
weight is nonzero:

* spikes of a value = elements x bits x density;
* a Soma (or fused SomaASNC) integrates every input bit: neuron updates = outputs x max input
  bits; each input spike reaches its fan-out: the N outputs of a ``matmul`` weight [K, N], one
  output of a ``mul`` weight;
* a DecodeMAC does outputs x K multiply-adds (``matmul``) or outputs (``mul``) and one update per
  output; an ASNC segment reads every input bit; BSE encoders and WTA max read their output bits.

For dense weights and a value whose measured density is ``density``, the expected synaptic
events equal the counted ones exactly (the fan-out is the same for every input element); in
general they match in expectation.
"""

from __future__ import annotations

import numpy as np

from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNCSegment, BSEEncode, DecodeMAC, Gather, Input, Node, Soma, SomaASNC, WTAMax
from lasercc.ir.types import CodeType


def _elements(graph: Graph, name: str) -> int:
    return int(np.prod(graph.type_of(name).shape, dtype=np.int64))


def _bits(graph: Graph, name: str) -> int:
    t = graph.type_of(name)
    return t.bits if isinstance(t, CodeType) else 0


def expected_events(node: Node, graph: Graph, density: float) -> dict[str, float]:
    """Expected spikes, synaptic events, neuron updates and MACs of one execution of ``node``."""
    ev = {"spikes": 0.0, "synaptic_events": 0.0, "neuron_updates": 0.0, "macs": 0.0}
    if not isinstance(node.type, CodeType):
        return ev
    out = int(np.prod(node.type.shape, dtype=np.int64))
    if isinstance(node, (Gather, Input)) or node.is_compute:
        ev["spikes"] = out * node.type.bits * density
    if isinstance(node, (Soma, SomaASNC)):
        ev["neuron_updates"] = out * max(_bits(graph, i) for i in node.inputs)
        for x, wname, form in zip(node.inputs, node.weights, node.forms):
            w = graph.constants.get(wname)
            if w is None:
                continue
            fanout = int(w.shape[1]) if form == "matmul" and len(w.shape) == 2 else 1
            ev["synaptic_events"] += _elements(graph, x) * _bits(graph, x) * density * fanout
    elif isinstance(node, DecodeMAC):
        a = graph.type_of(node.inputs[0])
        ev["neuron_updates"] = out
        ev["macs"] = out * (a.shape[-1] if node.form == "matmul" else 1)
    elif isinstance(node, ASNCSegment):
        ev["neuron_updates"] = out * _bits(graph, node.inputs[0])
    elif isinstance(node, (BSEEncode, WTAMax)):
        ev["neuron_updates"] = out * node.type.bits
    return ev


def measured_density(stats: dict, graph: Graph) -> float:
    """Spikes over code bits of the spiking values of a counted run (``run_graph(...).stats``)."""
    spikes, bits = 0, 0
    batches = int(stats.get("batches", 1))
    for name, st in stats.get("nodes", {}).items():
        n = graph.node(name)
        if isinstance(n.type, CodeType) and (isinstance(n, (Gather, Input)) or n.is_compute):
            spikes += int(st.get("spikes", 0))
            bits += int(np.prod(n.type.shape, dtype=np.int64)) * n.type.bits * batches
    return spikes / bits if bits else 0.0
