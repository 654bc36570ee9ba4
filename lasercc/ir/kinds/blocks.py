"""Building blocks shared by several kinds: the weighted sum (Soma, SomaASNC) and the segment table
(ASNCSegment, SomaASNC). Each block holds its fields, its part of ``check`` and the cost rules that
follow from it, so the fused kind is the two blocks put together, not a copy of either."""

from __future__ import annotations

import numpy as np

from lasercc.ir.bounds import abs_max, check_requant_scales, column_abs_sum_max
from lasercc.ir.kinds.base import (
    ACC_LIMIT_BITS,
    ASNC_LIMIT_BITS,
    ConstantView,
    Footprint,
    Form,
    GraphView,
    Node,
    RequantMode,
    _broadcast,
    _require_int,
    code_bits,
    elements,
    spike_counts,
)
from lasercc.ir.types import CodeType, ValueType


class WeightedSum(Node):
    """``acc = sum_j term_j + bias`` over raw input codes (term_j: ``x_j @ W_j`` or ``x_j * W_j``),
    requantized with ``scale_in * scale_w / scale_out`` in mode ``requant``."""

    weights: tuple[str, ...]
    forms: tuple[Form, ...]
    bias: str | None = None
    scale_in: float
    scale_w: tuple[float, ...]
    requant: RequantMode = "ort"

    def _check_soma(self, in_types: list[ValueType], consts: ConstantView) -> int:
        """Validate the weighted-sum part; return the bound on |acc| (0 when weights are shape-only)."""
        codes = self._codes_in(in_types)
        out = self._expect_code()
        if not (len(self.weights) == len(self.forms) == len(codes)):
            raise ValueError(f"soma needs one weight and one form per input ({len(codes)} inputs, "
                             f"{len(self.weights)} weights, {len(self.forms)} forms)")
        shapes = []
        bound = 0
        for x, w, form in zip(codes, self.weights, self.forms):
            _, ws = _require_int(consts, w, "weight", 2 if form == "matmul" else None)
            if form == "matmul":
                if not x.shape or x.shape[-1] != ws[0]:
                    raise ValueError(f"matmul of input {list(x.shape)} with weight @{w} {list(ws)}: "
                                     "inner dimensions differ")
                shapes.append(tuple(x.shape[:-1]) + (ws[1],))
            else:
                shapes.append(_broadcast(x.shape, ws))
            data = consts.data(w)
            if data is not None and data.size:  # exact Python ints (lasercc.ir.bounds: INT64_MIN, wrap-around)
                bound += x.hi * (column_abs_sum_max(data) if form == "matmul" else abs_max(data))
        shape = _broadcast(*shapes)
        if self.bias is not None:
            _, bs = _require_int(consts, self.bias, "bias")
            _broadcast(shape, bs)
            b = consts.data(self.bias)
            if b is not None and b.size:
                bound += abs_max(b)
        self._expect_shape(shape)
        if bound >= 1 << ACC_LIMIT_BITS:
            raise ValueError(f"accumulator can reach {bound} >= 2^{ACC_LIMIT_BITS}; split the layer or "
                             "use fewer input bits")
        _check_scales(self.scale_in, self.scale_w, out)
        return bound

    # cost rules of the weighted sum (docs/contract.md section 4)
    def neuron_updates(self, graph: GraphView) -> int:
        """Every output neuron integrates for as many steps as its widest input has bits."""
        return self._out_elements() * max(code_bits(graph, i) for i in self.inputs)

    def macs(self, graph: GraphView) -> int:
        return 0

    def synaptic_events(self, graph: GraphView, in_codes: list[np.ndarray | None]) -> int:
        """Each input spike reaches its fan-out: the nonzero weights of its row (matmul) or 1 (mul)."""
        events = 0
        for x, xname, wname, form in zip(in_codes, self.inputs, self.weights, self.forms):
            w = graph.constants[wname]
            if not isinstance(w, np.ndarray):
                continue
            pc = spike_counts(x, graph.type_of(xname))  # type: ignore[arg-type]
            nz = (np.asarray(w) != 0).astype(np.int64)
            fo = nz.sum(axis=1) if form == "matmul" else nz
            if form == "matmul":
                events += int(pc.reshape(-1, pc.shape[-1]).sum(axis=0) @ fo)
            else:
                events += int((pc * fo).sum())
        return events

    def expected_synaptic_events(self, graph: GraphView, density: float) -> float:
        """Every weight nonzero: an input spike reaches the N outputs of a matmul weight, 1 of a mul."""
        ev = 0.0
        for x, wname, form in zip(self.inputs, self.weights, self.forms):
            w = graph.constants.get(wname)
            if w is None:
                continue
            fanout = int(w.shape[1]) if form == "matmul" and len(w.shape) == 2 else 1
            ev += elements(graph, x) * code_bits(graph, x) * density * fanout
        return ev

    def _weight_macs(self, graph: GraphView) -> int:
        """Dense multiply-adds of the weight terms on a conventional processor."""
        out, macs = self._out_elements(), 0
        for wname, form in zip(self.weights, self.forms):
            w = graph.constants.get(wname)
            if w is None or not hasattr(w, "shape") or not hasattr(w, "dtype"):
                continue
            macs += out * (int(w.shape[0]) if form == "matmul" else 1)
        return macs

    def _synapse_footprint(self, graph: GraphView, table_entries: int = 0) -> Footprint:
        """One synapse per weight row per neuron; a mul term takes one axon per neuron."""
        syn, k, matmul = [], 0, False
        for w, form in zip(self.weights, self.forms):
            c = graph.constants[w]
            bits = int(np.dtype(c.dtype).itemsize * 8)
            rows = int(c.shape[0]) if form == "matmul" else 1
            matmul = matmul or form == "matmul"
            syn.append((rows, bits))
            k += rows
        return Footprint(k=k, matmul=matmul, synapses=tuple(syn), table_entries=table_entries,
                         axons_per_neuron=0 if matmul else len(self.forms))


def _check_scales(scale_in: float, scale_w: tuple[float, ...], out: CodeType) -> None:
    for s in (scale_in, *scale_w):
        if not (np.isfinite(s) and s > 0):
            raise ValueError(f"scales must be finite and positive, got {s}")
    check_requant_scales(scale_in, scale_w, out.scale)  # in float32, as used (lasercc.ir.bounds)
    n = out.shape[-1] if out.shape else 1
    if len(scale_w) not in (1, n):
        raise ValueError(f"scale_w needs 1 or {n} (output channels) entries, got {len(scale_w)}")
    if not out.per_tensor and out.axis != len(out.shape) - 1:
        raise ValueError("a per-axis result scale must be on the last axis")


class SegmentTable(Node):
    """A piecewise-affine integer map: ``thresholds`` (K-1 interior breakpoints), ``slopes`` and
    ``intercepts`` (K each), ``shift``; ``function`` and ``params`` name the real function it
    approximates (so passes can refit it); ``histogram`` optionally names calibration counts."""

    function: str
    thresholds: str
    slopes: str
    intercepts: str
    shift: int = 0
    params: tuple[float, ...] = ()
    histogram: str | None = None

    def _check_table(self, consts: ConstantView, x_bound: int) -> None:
        """Validate the segment table for inputs with |x| <= ``x_bound``."""
        if not 0 <= self.shift <= 62:
            raise ValueError(f"shift must be in [0, 62], got {self.shift}")
        _, ts = _require_int(consts, self.thresholds, "thresholds", 1)
        _, ss = _require_int(consts, self.slopes, "slopes", 1)
        _, cs = _require_int(consts, self.intercepts, "intercepts", 1)
        if not (ss[0] == cs[0] == ts[0] + 1):
            raise ValueError(f"{ts[0]} thresholds need {ts[0] + 1} slopes and intercepts, got {ss[0]} and {cs[0]}")
        t = consts.data(self.thresholds)
        if t is not None and t.size > 1 and not np.all(np.diff(t.astype(np.int64)) > 0):
            raise ValueError("thresholds must be strictly increasing")
        s, c = consts.data(self.slopes), consts.data(self.intercepts)
        if s is not None and c is not None and s.size:
            bound = abs_max(s) * x_bound + abs_max(c)
            if bound >= 1 << ASNC_LIMIT_BITS:
                raise ValueError(f"|a*x + c| can reach 2^{bound.bit_length() - 1}; must stay below 2^{ASNC_LIMIT_BITS}")

    def _table_entries(self, graph: GraphView) -> int:
        """Entries of the table (one per segment), held once per core."""
        return int(graph.constants[self.thresholds].shape[0] + 1)
