"""Lowering a spiking IR graph to a Lava network plan: neuron groups, synapse matrices, index maps, schedule.

This module is pure NumPy (no Lava import), so the compiler can emit and inspect a plan from the main
environment; :mod:`lasercc.backends.lava.network` turns a plan into real Lava processes in ``.venv-lava``.

What becomes what
-----------------
* Every value that *emits spikes* -- code graph inputs, ``bse_encode``, ``gather`` (embedding rows, a
  host-side table lookup), ``soma``, ``asnc``, ``decode_mac``, ``wta_max`` -- is one Lava process: a group
  of neurons that emits its N-bit codes MSB first, one bit per timestep.
* A ``gather`` indexed by a *code computed in the network* (RoBERTa/OPT position ids) cannot be looked up
  on the host: it is a ``gather_by_code`` process, a collector like ASNC that Horner-decodes the index
  train, reads the table rows once the last index bit is in, and emits them like a host gather would.
* Data movement (reshape, transpose, slice, concat, take, mask) emits nothing: it is folded into *index
  maps* at lowering time. Every element of a consumer's logical input is (source group, flat index) or a
  constant code (``mask`` fills). The data-movement rules are the NumPy reference's own implementations
  applied to index arrays, so the folding cannot drift from what the reference does.
* A Soma reads each distinct source group through one *synapse slot*: an integer matrix
  ``M[n_out, n_src]`` that composes the index map with the weights (matmul or broadcasting ``mul``), the
  standard Lava ``Dense`` where every entry fits 8 bits, else an exact integer synapse. Constant inputs
  fold into the integer bias (``W * fill`` is what Horner accumulation of a constant train yields).
* ASNC, DecodeMAC, WTA, gathers by code and output sinks read their inputs' raw spikes directly (no
  synapse) and decode them Horner-style per slot, then gather their logical input through the index map.

Schedule (docs/contract.md section 4; same T as :func:`lasercc.backends.stats.latency_steps` except WTA)
----------------------------------------------------------------------------------------------
Steps are 1-based within one sample of ``period`` steps. A source emits bits on steps 1..N (T = N). A
consumer of sources with last-bit steps T_k computes at ``fire = max T_k + 1`` -- a Soma receives its last
weighted bit then, because ``Dense`` delays by one step -- and emits its N bits on ``fire+1 .. fire+N``
(T = max T_k + 1 + N). A gather by code is such a consumer (T = T_index + 1 + N, as ``latency_steps``
counts it); a host gather is a source (T = N). The winner-take-all here decides after the last bit
(T = T_in + 1 + N, not the bit-pipelined T_in + 1 of the latency model): a documented simplification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lasercc.errors import LasercError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import (
    ASNCSegment,
    BSEEncode,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Node,
    Soma,
    SomaASNC,
    WTAMax,
)
from lasercc.ir.types import CodeType

MAX_SLOTS = 8  # input ports per process (Lava ports are declared statically, so the count is bounded)
DENSE_MIN, DENSE_MAX = -128, 127  # Lava Dense: 8-bit signed weights (passed as 2*W with weight_exp=-1)
MAX_DENSE_ELEMENTS = 1 << 25  # one synapse matrix at most this many entries (memory of the simulator)

@dataclass
class View:
    """A logical input of shape ``shape`` as a map into the process's slots: element i is
    ``slot[i], index[i]`` or, where ``slot[i] == -1``, the constant code ``const[i]``."""

    shape: tuple[int, ...]
    slot: np.ndarray
    index: np.ndarray
    const: np.ndarray


@dataclass
class Slot:
    """One source group feeding a process: its name, bits, first emit step, and (Somas) the synapses."""

    source: str
    bits: int
    start: int
    size: int
    matrix: np.ndarray | None = None  # Soma: int64 [n_out, size]

    @property
    def last(self) -> int:
        return self.start + self.bits - 1

    @property
    def dense_fits(self) -> bool:
        m = self.matrix
        return m is not None and (m.size == 0 or (int(m.min()) >= DENSE_MIN and int(m.max()) <= DENSE_MAX))


@dataclass
class ProcPlan:
    """One Lava process: kind, output size/shape/bits, schedule and parameters."""

    name: str
    kind: str  # code_source | encoder | gather | gather_by_code | soma | asnc | decode_mac | wta | sink
    shape: tuple[int, ...]
    bits: int  # output bits (0 for sinks)
    start: int  # first emit step (sources: 1; others: fire + 1)
    fire: int  # step at which the output code is computed (sources: 0)
    slots: list[Slot] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    host_input: str | None = None  # graph input this process reads from the host

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def last(self) -> int:
        return self.start + self.bits - 1 if self.bits else self.fire


@dataclass
class NetworkPlan:
    """A whole lowered graph: processes in topological order, sinks last, and the period of one sample."""

    name: str
    procs: list[ProcPlan]
    period: int
    outputs: dict[str, str]  # graph output name -> sink process name

    def proc(self, name: str) -> ProcPlan:
        return next(p for p in self.procs if p.name == name)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (what ``lava/network.json`` in an artifact holds)."""
        procs = []
        for p in self.procs:
            procs.append({
                "name": p.name, "kind": p.kind, "shape": list(p.shape), "bits": p.bits, "emit_steps":
                [p.start, p.last] if p.bits else None, "fire_step": p.fire,
                "slots": [{"source": s.source, "bits": s.bits, "arrives": [s.start + int(p.kind == "soma"),
                                                                          s.last + int(p.kind == "soma")],
                           "synapse": None if s.matrix is None else ("lava.proc.dense.Dense" if s.dense_fits
                                                                     else "IntDense")}
                          for s in p.slots]})
        return {"graph": self.name, "period_steps": self.period, "outputs": self.outputs, "processes": procs,
                "counts": _counts(self.procs)}


def _counts(procs: list[ProcPlan]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in procs:
        out[p.kind] = out.get(p.kind, 0) + 1
        for s in p.slots:
            if s.matrix is not None:
                k = "dense" if s.dense_fits else "int_dense"
                out[k] = out.get(k, 0) + 1
    return out


# ------------------------------------------------------------------------------------------------
# index views through data movement
# ------------------------------------------------------------------------------------------------


@dataclass
class _ElemView:
    """Per element of a value: emitting group id (-1: constant), flat index in it, constant code."""

    src: np.ndarray
    idx: np.ndarray
    const: np.ndarray


def _move(node: Node, views: list[_ElemView]) -> _ElemView:
    """Apply a data-movement node to index arrays with the NumPy reference's own implementation."""
    from lasercc.backends.numpy_ref import NumpyCodes

    ex = NumpyCodes(collect_stats=False)
    if isinstance(node, Mask):
        raise AssertionError("mask is handled by the caller")
    method = getattr(ex, NumpyCodes._table[type(node)])
    return _ElemView(*(np.asarray(method(node, *[getattr(v, f) for v in views]))
                       for f in ("src", "idx", "const")))


def _views(graph: Graph, ids: dict[str, int]) -> dict[str, _ElemView]:
    out: dict[str, _ElemView] = {}
    for n in graph.nodes:
        if not isinstance(n.type, CodeType):
            continue
        shape = tuple(n.type.shape)
        if n.name in ids:
            size = int(np.prod(shape, dtype=np.int64))
            ar = np.arange(size, dtype=np.int64).reshape(shape)
            out[n.name] = _ElemView(np.full(shape, ids[n.name], np.int64), ar,
                                    np.zeros(shape, np.int64))
        elif isinstance(n, Mask):
            v = out[n.inputs[0]]
            m = np.broadcast_to(np.asarray(graph.constants[n.mask], bool), shape)
            out[n.name] = _ElemView(np.where(m, -1, v.src), np.where(m, 0, v.idx), np.where(m, n.fill, v.const))
        elif n.kind_traits().data_movement:
            out[n.name] = _move(n, [out[i] for i in n.inputs])
        else:  # pragma: no cover - every code-typed kind emits spikes or moves data
            raise LasercError(f"the lava backend cannot lower node kind {n.op!r} (%{n.name})")
    return out


# ------------------------------------------------------------------------------------------------
# lowering
# ------------------------------------------------------------------------------------------------


def lower(graph: Graph) -> NetworkPlan:
    """Lower ``graph`` to a :class:`NetworkPlan` (raises LasercError for what Lava cannot run)."""
    _reject_signed(graph)
    ids: dict[str, int] = {}
    order: list[str] = []
    for n in graph.nodes:
        if n.counts_spikes:
            ids[n.name] = len(order)
            order.append(n.name)
    views = _views(graph, ids)
    plans: dict[str, ProcPlan] = {}
    procs: list[ProcPlan] = []
    for n in graph.nodes:
        if n.name not in ids:
            continue
        p = _lower_node(graph, n, views, order, plans)
        plans[n.name] = p
        procs.append(p)
    outputs: dict[str, str] = {}
    for o in graph.outputs:
        sink = _collector(f"sink:{o}", "sink", graph.type_of(o), [views[o]], order, plans)  # type: ignore[arg-type]
        sink.bits = 0
        sink.start = sink.fire
        procs.append(sink)
        outputs[o] = sink.name
    period = max(p.last for p in procs) + 1
    return NetworkPlan(graph.name, procs, period, outputs)


def _reject_signed(graph: Graph) -> None:
    """Signed (ternary) spike trains are not modelled here: the processes emit and integrate unsigned
    BSE bits only, so a signed value would silently decode wrong. Say so before building anything."""
    for n in graph.nodes:
        if isinstance(n.type, CodeType) and n.type.encoding == "signed":
            raise LasercError(f"%{n.name} uses the signed (ternary) spike encoding, which the lava backend does "
                              "not support yet; compile without the signed-encode pass")


def _lower_input(graph: Graph, n: Input, views: dict[str, _ElemView], order: list[str],
                 plans: dict[str, ProcPlan]) -> ProcPlan:
    t: CodeType = n.type  # type: ignore[assignment]
    return ProcPlan(n.name, "code_source", tuple(t.shape), t.bits, 1, 0, host_input=n.name)


def _lower_encoder(graph: Graph, n: BSEEncode, views: dict[str, _ElemView], order: list[str],
                   plans: dict[str, ProcPlan]) -> ProcPlan:
    t: CodeType = n.type  # type: ignore[assignment]
    return ProcPlan(n.name, "encoder", tuple(t.shape), t.bits, 1, 0, host_input=n.inputs[0],
                    params={"scale": np.asarray(t.scale, np.float32), "zero_point": np.asarray(t.zero_point, np.int64),
                            "axis": t.axis})


def _lower_gather(graph: Graph, n: Gather, views: dict[str, _ElemView], order: list[str],
                  plans: dict[str, ProcPlan]) -> ProcPlan:
    t: CodeType = n.type  # type: ignore[assignment]
    table = np.asarray(graph.constants[n.table], np.int64)
    if isinstance(graph.type_of(n.inputs[0]), CodeType):
        # the index is a spike train computed in the network: decode it, then look the rows up
        p = _collector(n.name, "gather_by_code", t, [views[n.inputs[0]]], order, plans)
        p.params = {"table": table}
        return p
    if not isinstance(graph.node(n.inputs[0]), Input):  # pragma: no cover - the verifier allows only these
        raise LasercError(f"%{n.name}: a gather by token ids needs them as a graph input")
    # token ids: the lookup runs on the host as the spikes are emitted (a source, T = N)
    return ProcPlan(n.name, "gather", tuple(t.shape), t.bits, 1, 0, host_input=n.inputs[0], params={"table": table})


def _lower_asnc(graph: Graph, n: ASNCSegment, views: dict[str, _ElemView], order: list[str],
                plans: dict[str, ProcPlan]) -> ProcPlan:
    p = _collector(n.name, "asnc", n.type, [views[i] for i in n.inputs], order, plans)  # type: ignore[arg-type]
    p.params = {k: np.asarray(graph.constants[getattr(n, k)], np.int64) for k in ("thresholds", "slopes", "intercepts")}
    p.params["shift"] = n.shift
    return p


def _lower_decode_mac(graph: Graph, n: DecodeMAC, views: dict[str, _ElemView], order: list[str],
                      plans: dict[str, ProcPlan]) -> ProcPlan:
    t: CodeType = n.type  # type: ignore[assignment]
    p = _collector(n.name, "decode_mac", t, [views[i] for i in n.inputs], order, plans)
    ta, tb = (graph.type_of(i) for i in n.inputs)
    p.params = {"form": n.form, "requant": n.requant, "scale_a": ta.scale[0], "scale_b": tb.scale[0],  # type: ignore
                "zp_a": ta.zero_point[0], "zp_b": tb.zero_point[0],  # type: ignore[union-attr]
                "scale_out": t.scale_array(), "zp_out": t.zero_point_array()}
    return p


def _lower_wta(graph: Graph, n: WTAMax, views: dict[str, _ElemView], order: list[str],
               plans: dict[str, ProcPlan]) -> ProcPlan:
    p = _collector(n.name, "wta", n.type, [views[i] for i in n.inputs], order, plans)  # type: ignore[arg-type]
    p.params = {"axis": n.axis, "in_bits": graph.type_of(n.inputs[0]).bits}  # type: ignore[union-attr]
    return p


def _lower_node(graph: Graph, n: Node, views: dict[str, _ElemView], order: list[str],
                plans: dict[str, ProcPlan]) -> ProcPlan:
    fn = LOWERINGS.get(type(n))
    if fn is None:  # tests/ir/test_kinds.py checks that every kind that emits spikes has one
        raise LasercError(f"the lava backend cannot lower node kind {n.op!r} (%{n.name})")
    return fn(graph, n, views, order, plans)


def _slots_for(srcs: np.ndarray, order: list[str], plans: dict[str, ProcPlan], what: str) -> dict[int, int]:
    """Group ids that feed a process -> slot numbers, in first-use order."""
    used = [int(s) for s in dict.fromkeys(np.asarray(srcs).reshape(-1).tolist()) if s >= 0]
    if len(used) > MAX_SLOTS:
        raise LasercError(f"%{what} reads {len(used)} distinct spike sources; the lava backend supports at most "
                          f"{MAX_SLOTS} per process (add a concat-free intermediate Soma)")
    return {g: k for k, g in enumerate(used)}


def _make_slot(gid: int, order: list[str], plans: dict[str, ProcPlan]) -> Slot:
    src = plans[order[gid]]
    return Slot(src.name, src.bits, src.start, src.size)


def _collector(name: str, kind: str, t: CodeType, in_views: list[_ElemView], order: list[str],
               plans: dict[str, ProcPlan]) -> ProcPlan:
    allsrc = np.concatenate([v.src.reshape(-1) for v in in_views]) if in_views else np.zeros(0, np.int64)
    slot_of = _slots_for(allsrc, order, plans, name)
    slots = [_make_slot(g, order, plans) for g in slot_of]
    views = []
    for v in in_views:
        flat_src = v.src.reshape(-1)
        slot = np.array([slot_of.get(int(s), -1) for s in flat_src], np.int64) if flat_src.size else flat_src.copy()
        views.append(View(tuple(v.src.shape), slot, v.idx.reshape(-1).astype(np.int64),
                          v.const.reshape(-1).astype(np.int64)))
    fire = max([s.last for s in slots] + [0]) + 1
    return ProcPlan(name, kind, tuple(t.shape), t.bits, fire + 1, fire, slots, views)


def _lower_soma(graph: Graph, n: Soma | SomaASNC, views: dict[str, _ElemView], order: list[str],
                plans: dict[str, ProcPlan]) -> ProcPlan:
    t: CodeType = n.type  # type: ignore[assignment]
    out_shape = tuple(t.shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    out_idx = np.arange(n_out, dtype=np.int64).reshape(out_shape)
    allsrc = np.concatenate([views[i].src.reshape(-1) for i in n.inputs])
    slot_of = _slots_for(allsrc, order, plans, n.name)
    slots = [_make_slot(g, order, plans) for g in slot_of]
    for s in slots:
        if n_out * s.size > MAX_DENSE_ELEMENTS:
            raise LasercError(f"%{n.name}: a {n_out} x {s.size} synapse matrix is too large for the Lava simulator "
                              "(partition the layer first)")
        s.matrix = np.zeros((n_out, s.size), np.int64)
    bias = np.zeros(out_shape, np.int64)
    if n.bias is not None:
        bias = bias + np.asarray(graph.constants[n.bias], np.int64)
    bias = np.array(np.broadcast_to(bias, out_shape), dtype=np.int64)

    def add(src: np.ndarray, idx: np.ndarray, const: np.ndarray, w: np.ndarray) -> None:
        """Out element o gets w[o] * (source element or constant) for every o (all arrays out-shaped)."""
        nonlocal bias
        src, idx, const, w = (np.broadcast_to(a, out_shape).reshape(-1) for a in (src, idx, const, w))
        rows = out_idx.reshape(-1)
        c = src < 0
        if c.any():
            np.add.at(bias.reshape(-1), rows[c], w[c] * const[c])
        for g, k in slot_of.items():
            sel = src == g
            if sel.any():
                np.add.at(slots[k].matrix, (rows[sel], idx[sel]), w[sel])

    for x, wname, form in zip(n.inputs, n.weights, n.forms):
        v = views[x]
        w = np.asarray(graph.constants[wname], np.int64)
        if form == "matmul":
            for k in range(w.shape[0]):
                sl = (Ellipsis, slice(k, k + 1))
                add(v.src[sl], v.idx[sl], v.const[sl], w[k])
        else:
            add(v.src, v.idx, v.const, w)
    sw = np.broadcast_to(np.asarray(n.scale_w, np.float32), out_shape).reshape(-1)
    params = {"bias": bias.reshape(-1), "scale_in": n.scale_in, "scale_w": np.ascontiguousarray(sw),
              "scale_out": np.ascontiguousarray(np.broadcast_to(t.scale_array(), out_shape).reshape(-1)),
              "zp_out": np.ascontiguousarray(np.broadcast_to(t.zero_point_array(), out_shape).reshape(-1)),
              "requant": n.requant}
    if isinstance(n, SomaASNC):  # requant->ASNC fusion: the comparator bank reads the accumulator itself
        params.update({k: np.asarray(graph.constants[getattr(n, k)], np.int64)
                       for k in ("thresholds", "slopes", "intercepts")}, shift=n.shift)
    fire = max([s.last for s in slots] + [0]) + 1  # the Dense delay puts the last weighted bit at max T + 1
    return ProcPlan(n.name, "soma", out_shape, t.bits, fire + 1, fire, slots, [], params)


# One process per node of a kind that emits spikes (``Node.counts_spikes``); data-movement kinds need
# no entry (``_views`` maps them through the NumPy reference's own implementation, Mask excepted).
LOWERINGS: dict[type[Node], Callable[..., ProcPlan]] = {
    Input: _lower_input, BSEEncode: _lower_encoder, Gather: _lower_gather, Soma: _lower_soma, SomaASNC: _lower_soma,
    ASNCSegment: _lower_asnc, DecodeMAC: _lower_decode_mac, WTAMax: _lower_wta,
}
