"""Spike statistics and latency, defined once for every backend (DESIGN.md section 4).

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
from lasercc.ir.nodes import ASNCSegment, BSEEncode, DecodeMAC, Gather, Input, Node, Soma, SomaASNC, WTAMax

# the latency model is an IR analysis (passes and the artifact report it too); re-exported here
__all__ = ["NodeStats", "bit_counts", "critical_path", "latency_steps", "node_stats", "spike_counts", "summarize",
           "value_spikes"]
from lasercc.ir.types import CodeType
from lasercc.semantics.bse import popcount, signed_popcount


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


def bit_counts(codes: np.ndarray) -> np.ndarray:
    """Per-element popcount (spikes each neuron emits), int64."""
    c = np.asarray(codes).astype(np.uint64, copy=False)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(c).astype(np.int64)
    out = np.zeros(c.shape, dtype=np.int64)
    x = c.copy()
    while x.any():
        out += (x & np.uint64(1)).astype(np.int64)
        x >>= np.uint64(1)
    return out


def spike_counts(codes: np.ndarray, t: CodeType) -> np.ndarray:
    """Per-element spikes of codes of type ``t``: popcount(code), or popcount(|code - zp|) if signed."""
    if t.signed:
        return bit_counts(np.abs(np.asarray(codes, dtype=np.int64) - np.int64(t.zero_point[0])))
    return bit_counts(codes)


def value_spikes(codes: np.ndarray, t: CodeType) -> int:
    """Total spikes of a value of type ``t`` (the rule of :func:`spike_counts`), as a Python int."""
    return signed_popcount(codes, t.zero_point[0]) if t.signed else popcount(codes)


def _fanout(w: np.ndarray, form: str) -> np.ndarray:
    nz = (np.asarray(w) != 0).astype(np.int64)
    return nz.sum(axis=1) if form == "matmul" else nz


def node_stats(node: Node, graph: Graph, in_codes: list[np.ndarray | None], out_codes: np.ndarray | None,
               spikes: int | None = None) -> NodeStats:
    """Statistics of one execution of ``node`` from its input and output codes.

    ``spikes`` may be given by a backend that counted real spike trains (the spiking simulator);
    it must equal the spike count of ``out_codes`` under the value's encoding.
    """
    st = NodeStats(op=node.op)
    if isinstance(node.type, CodeType) and (isinstance(node, (Gather, Input)) or node.is_compute):
        st.spikes = value_spikes(out_codes, node.type) if spikes is None else spikes
    if isinstance(node, (Soma, SomaASNC)):  # a fused SomaASNC integrates exactly as a Soma
        steps = max(t.bits for t in (graph.type_of(i) for i in node.inputs))  # type: ignore[union-attr]
        st.neuron_updates = int(np.prod(node.type.shape)) * steps
        for x, xname, wname, form in zip(in_codes, node.inputs, node.weights, node.forms):
            w = graph.constants[wname]
            if not isinstance(w, np.ndarray):
                continue
            pc = spike_counts(x, graph.type_of(xname))  # type: ignore[arg-type]
            fo = _fanout(w, form)
            if form == "matmul":
                st.synaptic_events += int(pc.reshape(-1, pc.shape[-1]).sum(axis=0) @ fo)
            else:
                st.synaptic_events += int((pc * fo).sum())
    elif isinstance(node, DecodeMAC):
        a, b = (graph.type_of(i) for i in node.inputs)
        st.neuron_updates = int(np.prod(node.type.shape))
        k = a.shape[-1] if node.form == "matmul" else 1
        st.macs = int(np.prod(node.type.shape)) * k
    elif isinstance(node, ASNCSegment):
        st.neuron_updates = int(np.prod(node.type.shape)) * graph.type_of(node.inputs[0]).bits  # type: ignore[union-attr]
    elif isinstance(node, (BSEEncode, WTAMax)):
        st.neuron_updates = int(np.prod(node.type.shape)) * node.type.bits  # type: ignore[union-attr]
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
