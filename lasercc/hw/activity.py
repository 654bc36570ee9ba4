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
from lasercc.ir.nodes import Node
from lasercc.ir.types import CodeType


def expected_events(node: Node, graph: Graph, density: float) -> dict[str, float]:
    """Expected spikes, synaptic events, neuron updates and MACs of one execution of ``node``."""
    ev = {"spikes": 0.0, "synaptic_events": 0.0, "neuron_updates": 0.0, "macs": 0.0}
    if not isinstance(node.type, CodeType):
        return ev
    out = int(np.prod(node.type.shape, dtype=np.int64))
    if node.counts_spikes:
        ev["spikes"] = out * node.type.bits * density
    # each kind's rules (lasercc.ir.kinds): the same neuron updates and MACs as a counted run
    ev["neuron_updates"] += node.neuron_updates(graph)
    ev["macs"] += node.macs(graph)
    ev["synaptic_events"] += node.expected_synaptic_events(graph, density)
    return ev


def measured_density(stats: dict, graph: Graph) -> float:
    """Spikes over code bits of the spiking values of a counted run (``run_graph(...).stats``)."""
    spikes, bits = 0, 0
    batches = int(stats.get("batches", 1))
    for name, st in stats.get("nodes", {}).items():
        n = graph.node(name)
        if n.counts_spikes:
            spikes += int(st.get("spikes", 0))
            bits += int(np.prod(n.type.shape, dtype=np.int64)) * n.type.bits * batches
    return spikes / bits if bits else 0.0
