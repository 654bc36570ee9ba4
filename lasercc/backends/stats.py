"""Spike statistics and latency, defined once for every backend (docs/contract.md section 4).

* spikes of a value = popcount of its codes (BSE emits one spike per set bit); for a value in
  the ``signed`` encoding, popcount(|code - zero_point|) (one spike, of either polarity, per
  nonzero ternary digit of the offset -- see :func:`lasercc.semantics.bse.bse_encode_signed`);
* synaptic events of a Soma = sum over input spikes of the fan-out (nonzero weights) receiving
  them; for a ``mul`` term the fan-out of an input is 1 where its weight is nonzero; a signed
  input's spikes are counted by the signed rule above (a -1 spike costs a synaptic event too);
* neuron updates = output neurons x timesteps they integrate (input bits);
* dense MACs = the multiply-accumulates a DecodeMAC performs after decoding;
* latency (:func:`lasercc.ir.analysis.latency_steps`, re-exported here): T(v), the step at which the
  last bit of value v has been emitted. An encoder or a
  constant source emits N bits from step 0 (T = N); a spiking node integrates until its last
  input bit, fires one pipeline step later and emits N_out bits: T = max T(in) + 1 + N_out; the
  winner-take-all max is bit-pipelined (T = T(in) + 1); data movement is free (T = T(in)). A gather
  by token ids is a source (T = N_out); a gather indexed by a code computed in the network decodes
  that code's train first, so it is a spiking node (T = T(index) + 1 + N_out).
  A fused SomaASNC is one spiking node (T = max T(in) + 1 + N_out): against Soma -> ASNC it saves
  the intermediate N_mid-bit train and its pipeline step, N_mid + 1 steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lasercc.ir.analysis import critical_path, latency_steps
from lasercc.ir.graph import Graph
from lasercc.ir.kinds import bit_counts, spike_counts, value_spikes
from lasercc.ir.nodes import Node

# the latency model is an IR analysis (passes and the artifact report it too); re-exported here
__all__ = ["NodeStats", "bit_counts", "critical_path", "latency_steps", "node_stats", "spike_counts", "summarize",
           "value_spikes"]


@dataclass
class NodeStats:
    op: str
    spikes: int = 0
    synaptic_events: int = 0
    neuron_updates: int = 0
    macs: int = 0

    def add(self, other: NodeStats) -> None:
        self.spikes += other.spikes
        self.synaptic_events += other.synaptic_events
        self.neuron_updates += other.neuron_updates
        self.macs += other.macs

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def node_stats(node: Node, graph: Graph, in_codes: list[np.ndarray | None], out_codes: np.ndarray | None,
               spikes: int | None = None) -> NodeStats:
    """Statistics of one execution of ``node`` from its input and output codes.

    ``spikes`` may be given by a backend that counted real spike trains (the spiking simulator);
    it must equal the spike count of ``out_codes`` under the value's encoding.
    """
    st = NodeStats(op=node.op)
    if node.counts_spikes:
        st.spikes = value_spikes(out_codes, node.type) if spikes is None else spikes  # type: ignore[arg-type]
    # each kind's rules (lasercc.ir.kinds); a kind without them raises MissingRule, never counts 0
    st.neuron_updates = node.neuron_updates(graph)
    st.macs = node.macs(graph)
    st.synaptic_events = node.synaptic_events(graph, in_codes)
    return st


def summarize(per_node: dict[str, NodeStats], graph: Graph) -> dict[str, object]:
    total = NodeStats(op="total")
    by_kind: dict[str, NodeStats] = {}
    for s in per_node.values():
        total.add(s)
        by_kind.setdefault(s.op, NodeStats(op=s.op)).add(s)
    return {
        "total": total.as_dict(),
        "by_kind": {k: v.as_dict() for k, v in sorted(by_kind.items())},
        "nodes": {k: v.as_dict() for k, v in per_node.items()},
        "latency_steps": critical_path(graph),
    }
