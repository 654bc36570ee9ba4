"""Signed (bidirectional) spike encoding: SDLLM's insight on lasercc's unsigned codes.

Symmetric tensors (residual streams, attention scores, projections) are quantized with the zero
point in the middle of the code range, so their codes cluster around it -- where BSE is at its
most expensive (code 127 = seven spikes at zp = 128). The ``signed`` encoding
(:class:`lasercc.ir.types.CodeType` ``encoding``) sends the offset code - zero_point as a ternary
sign + magnitude train instead: a value at its zero point emits no spike, one near it very few.
Codes, timing and every output bit are unchanged; only the spikes (and the synaptic events they
cause) change.

The pass marks *groups* of values: data movement (reshape, transpose, slice, concat, take, mask)
and the winner-take-all forward trains untouched, so a value and everything moved out of it must
share one encoding (``CodeType.same_quant`` checks it). A group is marked when

* every member is a per-tensor code (signed encoding has one zero point per tensor),
* every node reading a member has a spiking implementation that accepts signed trains
  (kinds with ``traits.reads_signed``; ``skip_consumers`` names more op kinds to avoid, e.g. for a backend
  that has not implemented them), and
* signed spikes are expected to be fewer: by default when the zero point is at least
  ``min_zero_point_fraction`` of the range away from both edges (a zero point at an edge makes
  |code - zp| = code or hi - code: nothing to gain), or with ``measure=true`` when the real spike
  counts on ``sample_inputs`` (an ``.npz`` of graph inputs, run in the NumPy codes mode) are lower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lasercc.backends.numpy_ref import NumpyCodes
from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Input, Node
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, option, register_pass
from lasercc.semantics.bse import popcount, signed_popcount


def _groups(graph: Graph) -> list[list[str]]:
    """Code values that must share an encoding, as groups (union-find over nodes whose kind is ``linked``)."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for n in graph.nodes:
        if not isinstance(n.type, CodeType):
            continue
        find(n.name)
        if n.kind_traits().linked:
            for i in n.inputs:
                parent[find(i)] = find(n.name)
    groups: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.name in parent:
            groups.setdefault(find(n.name), []).append(n.name)
    return list(groups.values())


def _emits_spikes(node: Node) -> bool:
    """Values whose spikes are counted (stats.node_stats): inputs, gathers and the spiking kinds."""
    return node.kind_traits().emits_spikes


class _SpikeMeter(NumpyCodes):
    """NumPy codes mode that tallies, per value, the spikes under both encodings."""

    def __init__(self) -> None:
        super().__init__(collect_stats=False)
        self.bse: dict[str, int] = {}
        self.signed: dict[str, int] = {}

    def _tally(self, node: Node, codes: np.ndarray) -> None:
        t = node.type
        if isinstance(t, CodeType) and t.per_tensor:
            self.bse[node.name] = self.bse.get(node.name, 0) + popcount(codes)
            self.signed[node.name] = self.signed.get(node.name, 0) + signed_popcount(codes, t.zero_point[0])

    def feed(self, node: Input, array: np.ndarray) -> np.ndarray:
        self._tally(node, array)
        return array

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        self._tally(node, output)


def measure_spikes(graph: Graph, sample_inputs: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, int]]:
    """Spikes per value (BSE, signed) on these inputs: (bse, signed) dicts keyed by value name."""
    from lasercc.backends.run import run_graph  # imports the backends; keep pass import light

    meter = _SpikeMeter()
    run_graph(graph, sample_inputs, executor=meter, collect_stats=False)
    return meter.bse, meter.signed


@register_pass
@dataclass(frozen=True)
class SignedEncode(Pass):
    """Carry symmetric code values as signed (ternary sign + magnitude) spike trains: fewer spikes, same bits."""

    name: ClassVar[str] = "signed-encode"

    min_zero_point_fraction: float = option(0.25, "mark when the zero point is at least this fraction of the "
                                                  "code range away from both edges (heuristic mode)")
    measure: bool = option(False, "decide by real spike counts on sample_inputs instead of the heuristic")
    sample_inputs: str = option("", "path of an .npz of graph inputs (for measure=true)")
    skip_consumers: tuple[str, ...] = option((), "op kinds whose readers must keep BSE trains (e.g. a backend "
                                                 "without signed support)")

    def run(self, graph: Graph) -> PassResult:
        if not 0.0 <= self.min_zero_point_fraction <= 0.5:
            raise InputError(f"signed-encode: min_zero_point_fraction must be in [0, 0.5], "
                             f"got {self.min_zero_point_fraction}")
        measured: tuple[dict[str, int], dict[str, int]] | None = None
        if self.measure:
            measured = measure_spikes(graph, self._load_samples())
        consumers = graph.users()
        nodes = {n.name: n for n in graph.nodes}
        to_mark: set[str] = set()
        skipped: dict[str, int] = {}
        before = after = 0
        for group in _groups(graph):
            types = [nodes[v].type for v in group]
            why = self._blocked(group, types, nodes, consumers)  # type: ignore[arg-type]
            spiking = [v for v in group if _emits_spikes(nodes[v])]
            if measured is not None:
                b = sum(measured[0].get(v, 0) for v in spiking)
                s = sum(measured[1].get(v, 0) for v in spiking)
                already = all(t.signed for t in types)  # type: ignore[union-attr]
                if why is None and (already or s < b):
                    before, after = before + b, after + s
                else:
                    before, after = before + b, after + b
                    why = why or "no fewer spikes measured"
            elif why is None and not self._worth_it(types[0]):  # type: ignore[arg-type]
                why = "zero point at the range edge"
            if why is not None:
                skipped[why] = skipped.get(why, 0) + len(group)
                continue
            to_mark.update(v for v, t in zip(group, types) if not t.signed)  # type: ignore[union-attr]
        new_nodes = tuple(n.replace(type=n.type.with_encoding("signed")) if n.name in to_mark else n  # type: ignore[union-attr]
                          for n in graph.nodes)
        g = graph.replace(nodes=new_nodes) if to_mark else graph
        info: dict[str, Any] = {"values_marked": len(to_mark), "marked": sorted(to_mark), "skipped": skipped}
        if measured is not None:
            info.update(spikes_before=before, spikes_after=after)
        return PassResult(g, bool(to_mark), info)

    def _blocked(self, group: list[str], types: list[CodeType], nodes: dict[str, Node],
                 consumers: Mapping[str, tuple[Node, ...]]) -> str | None:
        """Why a group cannot be signed, or None when it can."""
        if not all(isinstance(t, CodeType) and t.per_tensor for t in types):
            return "per-axis quantization"
        for v in group:
            if not nodes[v].kind_traits().writes_signed:
                return f"produced by {nodes[v].op}"
            for c in consumers.get(v, ()):
                if not c.kind_traits().reads_signed or c.op in self.skip_consumers:
                    return f"read by {c.op}"
        return None

    def _worth_it(self, t: CodeType) -> bool:
        zp, hi = t.zero_point[0], t.hi
        return min(zp, hi - zp) >= self.min_zero_point_fraction * hi

    def _load_samples(self) -> dict[str, np.ndarray]:
        if not self.sample_inputs:
            raise InputError("signed-encode: measure=true needs sample_inputs=<path of an .npz of graph inputs>")
        try:
            with np.load(self.sample_inputs) as z:
                return {k: z[k] for k in z.files}
        except OSError as e:
            raise InputError(f"signed-encode: cannot read sample_inputs {self.sample_inputs!r}: {e}") from None
